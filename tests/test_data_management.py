"""Data management (issue 4) through the HTTP API, in-process: event definitions and permissions on
the Synerise tracker path, customer and workspace JWTs, definitions on first sight, property types,
label templates, allow/deny lists and traffic filters, aliases, failed events and their replay, and
catalog changes reaching another worker without a restart.

Every test checks the HTTP reply and what was stored, read back through the read API
(``GET /api/v1/apps/{id}/events``) and the failed-events API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from seeds import SEED_ACTION, SEED_LABEL, SEED_PARAMS
from tally.catalog import Catalog, NewApp
from tally.http.app import TallyApp
from tally.http.services import Services

CLIENT_IP = "198.51.100.7"  # the in-process transport's client address (conftest)
DEVICE = "2f5a6c1e-5b1d-4a0e-9c3f-7d1e2a3b4c5d"
CUSTOM = "/v4/events/custom"
ERROR_KEYS = {"error", "message", "path", "status", "timestamp", "errors"}
ERROR_ITEM_KEYS = {"code", "field", "message", "rejectedValue"}
# adapters/synerise.py ERROR_CODES (Tally's numbers for Synerise's errors[].code)
CODES = {
    "invalid_name": 1005,
    "undefined_event": 1011,
    "forbidden_event": 1012,
    "reserved_event": 1013,
    "invalid_token": 1016,
}
EMPTY_REPLAY = {
    "replayed": 0,
    "stored": 0,
    "duplicates": 0,
    "discarded": 0,
    "still_failing": [],
    "not_replayable": [],
}
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

SEED_PROPERTIES = {k: v for k, v in SEED_PARAMS.items() if k != "time"}

TRANSACTION = {
    "client": {"customId": "cust-1"},
    "orderId": "order-1",
    "value": {"amount": 12.5, "currency": "PLN"},
    "products": [{"sku": "A1", "quantity": 1, "finalUnitPrice": {"amount": 12.5}}],
}


# --- helpers ---------------------------------------------------------------------------------


def api_auth(new_app: NewApp) -> tuple[str, str]:
    """HTTP Basic api_key:api_secret (management, read, and Synerise server-side)."""
    return (new_app.app.api_key, new_app.api_secret)


def base(new_app: NewApp) -> str:
    return f"/api/v1/apps/{new_app.app.id}"


def synerise_event(action: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": action,
        "label": f"{action} label",
        "client": {"uuid": DEVICE},
    }
    body.update(fields)
    return body


async def tracker(
    client: httpx.AsyncClient, new_app: NewApp, body: Any, *, bearer: str | None = None
) -> httpx.Response:
    """The browser path: the tracker key in ``?token=``, optionally a customer JWT."""
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return await client.post(
        CUSTOM, params={"token": new_app.app.app_key}, json=body, headers=headers
    )


async def native(
    client: httpx.AsyncClient,
    new_app: NewApp,
    *events: dict[str, Any],
    user_agent: str = FIREFOX,
) -> httpx.Response:
    return await client.post(
        "/api/v1/events",
        json={"events": list(events)},
        headers={"x-tally-key": new_app.app.app_key, "user-agent": user_agent},
    )


async def countly(
    client: httpx.AsyncClient, new_app: NewApp, events: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(
        "/i",
        data={
            "app_key": new_app.app.app_key,
            "device_id": DEVICE,
            "events": json.dumps(events),
        },
    )


async def stored(
    client: httpx.AsyncClient, new_app: NewApp, name: str | None = None
) -> list[dict[str, Any]]:
    """Stored events through the read API (internal SDK bookkeeping events left out)."""
    params = {"limit": "1000"}
    if name is not None:
        params["name"] = name
    response = await client.get(f"{base(new_app)}/events", params=params, auth=api_auth(new_app))
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if not e["internal"]]


async def failed_events(
    client: httpx.AsyncClient, new_app: NewApp, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{base(new_app)}/failed-events", params=params, auth=api_auth(new_app)
    )
    assert response.status_code == 200, response.text
    return response.json()["failed_events"]


async def replay(client: httpx.AsyncClient, new_app: NewApp, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"{base(new_app)}/failed-events/replay", json=body, auth=api_auth(new_app)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def discarded(client: httpx.AsyncClient, new_app: NewApp) -> dict[str, int]:
    response = await client.get(f"{base(new_app)}/discarded", auth=api_auth(new_app))
    assert response.status_code == 200, response.text
    return response.json()["totals"]


async def define(
    client: httpx.AsyncClient, new_app: NewApp, name: str, **fields: Any
) -> dict[str, Any]:
    response = await client.put(
        f"{base(new_app)}/definitions/{name}", json=fields, auth=api_auth(new_app)
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def definitions(client: httpx.AsyncClient, new_app: NewApp) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{base(new_app)}/definitions", auth=api_auth(new_app))
    assert response.status_code == 200, response.text
    return {d["name"]: d for d in response.json()["events"]}


async def patch_settings(client: httpx.AsyncClient, new_app: NewApp, **changes: Any) -> dict:
    response = await client.patch(f"{base(new_app)}/settings", json=changes, auth=api_auth(new_app))
    assert response.status_code == 200, response.text
    return response.json()["settings"]


def assert_accepted(response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    assert response.content == b""


def assert_synerise_error(response: httpx.Response, status: int, path: str = CUSTOM) -> dict:
    """Synerise's error body: error, message, path, status, timestamp, errors[]."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["status"] == status
    assert body["path"] == path
    assert body["error"] == {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}[status]
    assert isinstance(body["message"], str) and body["message"]
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    for item in body["errors"]:
        assert set(item) == ERROR_ITEM_KEYS
    return body


def assert_rejected(response: httpx.Response, status: int, reason: str, value: Any) -> dict:
    """One rejected event in Synerise's error body, with Tally's code for ``reason``."""
    body = assert_synerise_error(response, status)
    [error] = body["errors"]
    assert error["code"] == CODES[reason]
    assert error["field"] == "action"
    assert error["rejectedValue"] == value
    assert isinstance(error["message"], str) and error["message"]
    return error


def property_types(definition: dict[str, Any]) -> dict[str, str]:
    """Property name -> type; a property listed without a type has the default, string (see
    test_definitions_list_the_type_of_every_property)."""
    return {p["name"]: p.get("type", "string") for p in definition["properties"]}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- customer JWT keys -------------------------------------------------------------------------


def _rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[bytes, str]:
    """(private PEM, public PEM): the app's back end signs customer JWTs with the private key."""
    return _rsa_pair()


@pytest.fixture(scope="module")
def other_rsa_pair() -> tuple[bytes, str]:
    return _rsa_pair()


def customer_jwt(private: bytes, sub: str = "cust-42", expires_in: float = 300) -> str:
    exp = datetime.now(UTC) + timedelta(seconds=expires_in)
    return jwt.encode({"sub": sub, "exp": exp}, private, algorithm="RS256")


# --- 1. the seed on the tracker path -----------------------------------------------------------


async def test_an_undefined_seed_action_is_rejected_kept_and_replayed_once_defined(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = synerise_event(SEED_ACTION, params=SEED_PARAMS, label=SEED_LABEL)
    response = await tracker(client, new_app, body)
    error = assert_rejected(response, 400, "undefined_event", SEED_ACTION)
    assert SEED_ACTION in error["message"]
    assert await stored(client, new_app) == []

    [record] = await failed_events(client, new_app)
    assert record["reason"] == "undefined_event"
    assert record["name"] == SEED_ACTION
    assert record["protocol"] == "synerise"
    assert record["replayable"] is True
    assert record["replayed_at"] is None and record["replayed_as"] is None
    detail = await client.get(
        f"{base(new_app)}/failed-events/{record['id']}", auth=api_auth(new_app)
    )
    assert detail.status_code == 200
    assert detail.json()["payload_encoding"] == "utf-8"
    assert json.loads(detail.json()["payload"]) == body
    assert detail.json()["reason"] == "undefined_event"

    # Replaying before the catalog is fixed changes nothing.
    report = await replay(client, new_app)
    assert report["replayed"] == 0 and report["stored"] == 0
    assert [s["reason"] for s in report["still_failing"]] == ["undefined_event"]
    assert await stored(client, new_app) == []

    await define(
        client,
        new_app,
        SEED_ACTION,
        permission="anonymous",
        properties=[{"name": "entries", "type": "number"}],
    )
    report = await replay(client, new_app)
    assert report == {**EMPTY_REPLAY, "replayed": 1, "stored": 1}
    [event] = await stored(client, new_app)
    assert event["name"] == SEED_ACTION
    assert event["label"] == SEED_LABEL
    assert event["properties"] == SEED_PROPERTIES
    assert event["device"] == DEVICE
    assert event["id"] == record["id"]  # no client id: stored under the failed event's id
    assert sorted(event["undefined_properties"]) == sorted(set(SEED_PROPERTIES) - {"entries"})

    [record] = await failed_events(client, new_app, replayed="true")
    assert record["replayed_as"] == event["id"] and record["replayed_at"] is not None
    assert await failed_events(client, new_app, replayed="false") == []

    # Again: nothing left to replay, nothing stored twice.
    assert await replay(client, new_app) == EMPTY_REPLAY
    assert await replay(client, new_app, ids=[record["id"]]) == EMPTY_REPLAY
    assert len(await stored(client, new_app)) == 1


async def test_replaying_an_event_whose_id_is_already_stored_is_a_no_op(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = synerise_event(SEED_ACTION, params=SEED_PARAMS, eventSalt="salt-1")
    assert_rejected(await tracker(client, new_app, body), 400, "undefined_event", SEED_ACTION)
    await define(client, new_app, SEED_ACTION, permission="anonymous")
    # The client retries after the fix: stored under its own id.
    assert_accepted(await tracker(client, new_app, body))
    report = await replay(client, new_app)
    assert report == {**EMPTY_REPLAY, "replayed": 1, "duplicates": 1}
    [event] = await stored(client, new_app)
    assert event["id"] == "salt-1"


async def test_a_replayed_event_keeps_its_client_id(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = synerise_event(SEED_ACTION, params=SEED_PARAMS, eventSalt="salt-1")
    assert_rejected(await tracker(client, new_app, body), 400, "undefined_event", SEED_ACTION)
    await define(client, new_app, SEED_ACTION, permission="anonymous")
    assert (await replay(client, new_app))["stored"] == 1
    # The client's own retry arrives afterwards: the same event, already stored.
    assert_accepted(await tracker(client, new_app, body))
    [event] = await stored(client, new_app)
    assert event["id"] == "salt-1"


@pytest.mark.parametrize("action", ["page.visit", "session.start", "session.end"])
async def test_built_in_events_are_accepted_on_the_tracker_path_without_a_definition(
    client: httpx.AsyncClient, new_app: NewApp, action: str
) -> None:
    assert_accepted(await tracker(client, new_app, synerise_event(action)))
    [event] = await stored(client, new_app)
    assert event["name"] == action
    assert event["protocol"] == "synerise"
    assert await failed_events(client, new_app) == []
    listed = await definitions(client, new_app)
    assert listed[action]["built_in"] is True
    assert listed[action]["permission"] == "anonymous"


@pytest.mark.parametrize(
    "action", ["x." + "a" * 31, "entries count"], ids=["33-characters", "a-space"]
)
async def test_actions_breaking_the_synerise_rule_are_invalid_names(
    client: httpx.AsyncClient, new_app: NewApp, action: str
) -> None:
    response = await tracker(client, new_app, synerise_event(action))
    assert_rejected(response, 400, "invalid_name", action)
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert (record["reason"], record["name"]) == ("invalid_name", action)


async def test_a_parameter_not_defined_is_stored_and_marked(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    params = {"title": "Home", "url": "https://shop.test/", "utm_campaign": "spring"}
    body = synerise_event("page.visit", params=params)
    assert_accepted(await tracker(client, new_app, body))
    [event] = await stored(client, new_app)
    assert event["properties"] == params
    assert event["undefined_properties"] == ["utm_campaign"]


# --- 2. reserved events ------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["transaction.charge", "product.buy"])
async def test_a_reserved_event_sent_as_a_custom_event_says_where_to_send_it(
    client: httpx.AsyncClient, new_app: NewApp, action: str
) -> None:
    body = synerise_event(action, params={"orderId": "order-1"})
    response = await client.post(CUSTOM, json=body, auth=api_auth(new_app))
    error = assert_rejected(response, 400, "reserved_event", action)
    assert "/v4/transactions" in error["message"]
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert (record["reason"], record["name"]) == ("reserved_event", action)


async def test_a_transaction_is_accepted_through_the_transactions_endpoint(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    response = await client.post("/v4/transactions", json=TRANSACTION, auth=api_auth(new_app))
    assert_accepted(response)
    events = {e["name"]: e for e in await stored(client, new_app)}
    assert set(events) == {"transaction.charge", "product.buy"}
    assert events["transaction.charge"]["properties"]["orderId"] == "order-1"
    assert events["product.buy"]["properties"]["sku"] == "A1"
    assert await failed_events(client, new_app) == []


async def test_a_strict_app_still_accepts_transactions(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await patch_settings(client, new_app, strict=True)
    response = await client.post("/v4/transactions", json=TRANSACTION, auth=api_auth(new_app))
    assert_accepted(response)
    names = sorted(e["name"] for e in await stored(client, new_app))
    assert names == ["product.buy", "transaction.charge"]
    assert await failed_events(client, new_app) == []
    # Reserved events are never defined on first sight either.
    listed = await definitions(client, new_app)
    assert "transaction.charge" not in listed and "product.buy" not in listed


# --- 3. permissions and customer JWTs ----------------------------------------------------------


async def test_a_customer_event_needs_a_customer_jwt_on_the_tracker_path(
    client: httpx.AsyncClient, new_app: NewApp, rsa_pair: tuple[bytes, str]
) -> None:
    private, public = rsa_pair
    await define(client, new_app, "profile.update", permission="customer")
    body = synerise_event("profile.update", client={"customId": "somebody-else"})

    response = await tracker(client, new_app, body)
    assert_rejected(response, 403, "forbidden_event", "profile.update")
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert (record["reason"], record["name"]) == ("forbidden_event", "profile.update")

    settings = await patch_settings(client, new_app, customer_jwt_key=public)
    assert settings["customer_jwt_key"] == public
    response = await tracker(client, new_app, body, bearer=customer_jwt(private))
    assert_accepted(response)
    [event] = await stored(client, new_app)
    assert event["name"] == "profile.update"
    assert event["user"] == "cust-42"  # the token's sub, whatever the body says


async def test_expired_or_wrongly_signed_customer_jwts_are_invalid_tokens(
    client: httpx.AsyncClient,
    new_app: NewApp,
    rsa_pair: tuple[bytes, str],
    other_rsa_pair: tuple[bytes, str],
) -> None:
    private, public = rsa_pair
    await define(client, new_app, "profile.update", permission="customer")
    await patch_settings(client, new_app, customer_jwt_key=public)
    body = synerise_event("profile.update")
    for token in (
        customer_jwt(private, expires_in=-60),
        customer_jwt(other_rsa_pair[0]),
        "not-a-jwt",
    ):
        response = await tracker(client, new_app, body, bearer=token)
        error_body = assert_synerise_error(response, 401)
        assert [e["code"] for e in error_body["errors"]] == [CODES["invalid_token"]]
    assert await stored(client, new_app) == []


async def test_a_customer_jwt_with_no_key_configured_is_an_invalid_token(
    client: httpx.AsyncClient, new_app: NewApp, rsa_pair: tuple[bytes, str]
) -> None:
    await define(client, new_app, "profile.update", permission="customer")
    body = synerise_event("profile.update")
    response = await tracker(client, new_app, body, bearer=customer_jwt(rsa_pair[0]))
    error_body = assert_synerise_error(response, 401)
    assert [e["code"] for e in error_body["errors"]] == [CODES["invalid_token"]]
    assert await stored(client, new_app) == []


async def test_a_server_only_event_is_refused_even_with_a_customer_jwt(
    client: httpx.AsyncClient, new_app: NewApp, rsa_pair: tuple[bytes, str]
) -> None:
    private, public = rsa_pair
    await define(client, new_app, "invoice.issued", permission="server")
    await patch_settings(client, new_app, customer_jwt_key=public)
    body = synerise_event("invoice.issued")
    for bearer in (None, customer_jwt(private)):
        response = await tracker(client, new_app, body, bearer=bearer)
        assert_rejected(response, 403, "forbidden_event", "invoice.issued")
    assert await stored(client, new_app) == []
    assert [r["reason"] for r in await failed_events(client, new_app)] == ["forbidden_event"] * 2
    # Server credentials may send it.
    assert_accepted(await client.post(CUSTOM, json=body, auth=api_auth(new_app)))
    assert [e["name"] for e in await stored(client, new_app)] == ["invoice.issued"]


async def test_a_customer_jwt_event_needs_a_definition(
    client: httpx.AsyncClient, new_app: NewApp, rsa_pair: tuple[bytes, str]
) -> None:
    private, public = rsa_pair
    await patch_settings(client, new_app, customer_jwt_key=public)
    response = await tracker(
        client, new_app, synerise_event("wishlist.share"), bearer=customer_jwt(private)
    )
    assert_rejected(response, 400, "undefined_event", "wishlist.share")
    assert await stored(client, new_app) == []


# --- 4. workspace JWTs -------------------------------------------------------------------------


async def test_a_workspace_jwt_from_the_login_works_as_a_bearer_token(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    login = await client.post(
        "/v4/auth/login/profile",
        json={"apiKey": f"{new_app.app.api_key}:{new_app.api_secret}"},
    )
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    response = await client.post(
        CUSTOM,
        json=synerise_event("wishlist.share"),
        headers={"authorization": f"Bearer {token}"},
    )
    assert_accepted(response)  # server side: a new name is accepted (and defined)
    [event] = await stored(client, new_app)
    assert event["name"] == "wishlist.share"
    listed = await definitions(client, new_app)
    assert listed["wishlist.share"]["source"] == "first_seen"
    assert listed["wishlist.share"]["permission"] == "server"


async def test_a_login_with_the_wrong_secret_is_refused_in_synerise_shape(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    path = "/v4/auth/login/profile"
    response = await client.post(path, json={"apiKey": f"{new_app.app.api_key}:wrong"})
    body = assert_synerise_error(response, 401, path)
    assert "token" not in body
    assert [e["code"] for e in body["errors"]] == [CODES["invalid_token"]]


async def test_a_garbage_bearer_token_is_refused(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    response = await client.post(
        CUSTOM,
        json=synerise_event("wishlist.share"),
        headers={"authorization": "Bearer this.is.garbage"},
    )
    assert_synerise_error(response, 401)
    assert await stored(client, new_app) == []


# --- 5. definitions on first sight -------------------------------------------------------------


async def test_a_countly_event_is_defined_on_first_sight_with_its_property_types(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    segmentation = {"amount": 12.5, "sku": "A1", "gift": True}
    response = await countly(
        client, new_app, [{"key": "item purchase", "count": 1, "segmentation": segmentation}]
    )
    assert response.status_code == 200
    assert response.json() == {"result": "Success"}
    [event] = await stored(client, new_app)
    assert (event["name"], event["properties"]) == ("item purchase", segmentation)

    definition = (await definitions(client, new_app))["item purchase"]
    assert definition["source"] == "first_seen"
    assert definition["built_in"] is False
    assert definition["permission"] == "anonymous"  # sent with the public app key
    assert property_types(definition) == {"amount": "number", "sku": "string", "gift": "boolean"}

    # A later event with a new property adds it; existing ones keep their first-seen type.
    response = await countly(
        client,
        new_app,
        [{"key": "item purchase", "count": 1, "segmentation": {"amount": "7", "color": "red"}}],
    )
    assert response.json() == {"result": "Success"}
    newest = (await stored(client, new_app))[0]
    assert newest["properties"] == {"amount": 7, "color": "red"}  # "7" coerced to the number
    assert newest["coerced_properties"] == ["amount"]
    got = await client.get(f"{base(new_app)}/definitions/item purchase", auth=api_auth(new_app))
    assert got.status_code == 200
    assert property_types(got.json()) == {
        "amount": "number",
        "sku": "string",
        "gift": "boolean",
        "color": "string",
    }


async def test_definitions_list_the_type_of_every_property(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await countly(
        client, new_app, [{"key": "item purchase", "segmentation": {"amount": 1, "sku": "A1"}}]
    )
    properties = (await definitions(client, new_app))["item purchase"]["properties"]
    assert {p["name"]: p["type"] for p in properties} == {"amount": "number", "sku": "string"}
    assert all({"required", "on_mismatch"} <= set(p) for p in properties)


async def test_a_strict_app_rejects_an_undefined_countly_event(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    settings = await patch_settings(client, new_app, strict=True)
    assert settings["strict"] is True
    response = await countly(
        client, new_app, [{"key": "item purchase", "count": 1, "segmentation": {"sku": "A1"}}]
    )
    assert response.status_code == 200
    assert response.json() == {"result": "Success"}  # Countly's reply does not change
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert (record["reason"], record["name"], record["protocol"]) == (
        "undefined_event",
        "item purchase",
        "countly",
    )
    assert "item purchase" not in await definitions(client, new_app)

    # In a strict app the permission is checked too: the app key is a public key, so a
    # server-only definition (the default) still fails; one for anonymous profiles passes.
    await define(client, new_app, "item purchase", properties=[{"name": "sku"}])
    report = await replay(client, new_app)
    assert [s["reason"] for s in report["still_failing"]] == ["forbidden_event"]
    await define(
        client, new_app, "item purchase", permission="anonymous", properties=[{"name": "sku"}]
    )
    assert (await replay(client, new_app))["stored"] == 1
    [event] = await stored(client, new_app)
    assert (event["name"], event["undefined_properties"]) == ("item purchase", [])


async def test_a_strict_app_rejects_an_undefined_native_event(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await patch_settings(client, new_app, strict=True)
    response = await native(client, new_app, {"name": "video.play"})
    assert response.status_code == 400
    assert [r["code"] for r in response.json()["rejected"]] == ["undefined_event"]
    assert await stored(client, new_app) == []
    assert [r["reason"] for r in await failed_events(client, new_app)] == ["undefined_event"]


# --- 6. property types -------------------------------------------------------------------------


async def test_a_string_is_coerced_to_the_defined_number_type(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(client, new_app, SEED_ACTION, properties=[{"name": "entries", "type": "number"}])
    response = await native(
        client, new_app, {"name": SEED_ACTION, "properties": {"entries": "27", "shopId": "S198"}}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    # Segment's track call, with the write key (the app key) as the Basic user name.
    response = await client.post(
        "/v1/track",
        json={"userId": "u-1", "event": SEED_ACTION, "properties": {"entries": "27"}},
        auth=(new_app.app.app_key, ""),
    )
    assert response.status_code == 200, response.text
    events = await stored(client, new_app)
    assert sorted(e["protocol"] for e in events) == ["native", "segment"]
    for event in events:
        assert event["properties"]["entries"] == 27
        assert isinstance(event["properties"]["entries"], int)
        assert event["coerced_properties"] == ["entries"]
        # Not a tracker path and not strict: extra properties are not marked.
        assert event["undefined_properties"] == []


async def test_a_mismatch_is_rejected_when_the_definition_says_so(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(
        client,
        new_app,
        SEED_ACTION,
        properties=[{"name": "entries", "type": "number", "on_mismatch": "reject"}],
    )
    response = await native(client, new_app, {"name": SEED_ACTION, "properties": {"entries": "27"}})
    assert response.status_code == 400
    [rejected] = response.json()["rejected"]
    assert rejected["code"] == "invalid_property"
    assert "entries" in rejected["message"]
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert (record["reason"], record["name"]) == ("invalid_property", SEED_ACTION)


async def test_a_value_that_cannot_be_coerced_is_an_invalid_property(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(client, new_app, SEED_ACTION, properties=[{"name": "entries", "type": "number"}])
    response = await native(
        client, new_app, {"name": SEED_ACTION, "properties": {"entries": "many"}}
    )
    assert response.status_code == 400
    assert [r["code"] for r in response.json()["rejected"]] == ["invalid_property"]
    assert await stored(client, new_app) == []


async def test_a_missing_required_property_is_rejected(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(
        client,
        new_app,
        SEED_ACTION,
        properties=[{"name": "entries", "type": "number", "required": True}],
    )
    response = await native(client, new_app, {"name": SEED_ACTION, "properties": {"shopId": "S1"}})
    assert response.status_code == 400
    [rejected] = response.json()["rejected"]
    assert rejected["code"] == "missing_property"
    assert "entries" in rejected["message"]
    assert await stored(client, new_app) == []
    [record] = await failed_events(client, new_app)
    assert record["reason"] == "missing_property"

    # On the tracker path too, in Synerise's shape.
    await define(
        client,
        new_app,
        SEED_ACTION,
        permission="anonymous",
        properties=[{"name": "entries", "type": "number", "required": True}],
    )
    response = await tracker(client, new_app, synerise_event(SEED_ACTION, params={"x": 1}))
    body = assert_synerise_error(response, 400)
    assert [e["code"] for e in body["errors"]] == [1014]


# --- 7. label templates ------------------------------------------------------------------------


async def test_the_label_template_is_rendered_from_the_properties(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(
        client,
        new_app,
        "product.bought",
        label_template="Bought {{sku}}",
        properties=[{"name": "sku"}],
    )
    response = await native(
        client,
        new_app,
        {"name": "product.bought", "properties": {"sku": "A1"}},
        {"name": "product.bought", "label": "Own label", "properties": {"sku": "B2"}},
    )
    assert response.json()["accepted"] == 2
    labels = sorted(e["label"] for e in await stored(client, new_app))
    assert labels == ["Bought A1", "Own label"]


# --- 8. allow and deny lists, traffic filters --------------------------------------------------


async def test_a_denied_event_is_discarded_and_counted_not_failed(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    settings = await patch_settings(client, new_app, denylist=["debug.*"])
    assert settings["denylist"] == ["debug.*"]
    response = await native(
        client, new_app, {"name": "debug.click"}, {"name": "debug.hover"}, {"name": "cart.view"}
    )
    assert response.status_code == 200
    assert response.json()["rejected"] == []
    assert [e["name"] for e in await stored(client, new_app)] == ["cart.view"]
    assert await failed_events(client, new_app) == []
    assert await discarded(client, new_app) == {"denylist:debug.*": 2}
    # Nothing discarded is defined on first sight.
    assert "debug.click" not in await definitions(client, new_app)


async def test_an_allowlist_admits_only_matching_events(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await patch_settings(client, new_app, allowlist=["checkout.*"], denylist=["checkout.debug"])
    response = await native(
        client,
        new_app,
        {"name": "checkout.start"},
        {"name": "cart.view"},
        {"name": "checkout.debug"},
    )
    assert response.status_code == 200
    assert [e["name"] for e in await stored(client, new_app)] == ["checkout.start"]
    assert await failed_events(client, new_app) == []
    assert await discarded(client, new_app) == {"allowlist": 1, "denylist:checkout.debug": 1}


async def test_bots_are_discarded_when_filtered(client: httpx.AsyncClient, new_app: NewApp) -> None:
    await native(client, new_app, {"name": "page.visit"}, user_agent=GOOGLEBOT)
    assert len(await stored(client, new_app)) == 1  # not filtered by default
    await patch_settings(client, new_app, filter_bots=True)
    response = await native(client, new_app, {"name": "page.visit"}, user_agent=GOOGLEBOT)
    assert response.status_code == 200
    await native(client, new_app, {"name": "page.visit"}, user_agent=FIREFOX)
    assert len(await stored(client, new_app)) == 2
    assert await discarded(client, new_app) == {"bot": 1}
    assert await failed_events(client, new_app) == []


async def test_internal_traffic_is_discarded(client: httpx.AsyncClient, new_app: NewApp) -> None:
    await patch_settings(client, new_app, internal_ips=["203.0.113.0/24"])
    await native(client, new_app, {"name": "page.visit"})
    assert len(await stored(client, new_app)) == 1
    settings = await patch_settings(client, new_app, internal_ips=["198.51.100.0/24"])
    assert settings["internal_ips"] == ["198.51.100.0/24"]
    response = await native(client, new_app, {"name": "page.visit"})
    assert response.status_code == 200
    assert_accepted(await tracker(client, new_app, synerise_event("page.visit")))
    assert len(await stored(client, new_app)) == 1
    assert await discarded(client, new_app) == {"internal_ips:198.51.100.0/24": 2}
    assert await failed_events(client, new_app) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"internal_ips": ["not-an-address"]},
        {"internal_ips": ["10.0.0.0/33"]},
        {"denylist": [""]},
        {"customer_jwt_key": "not a PEM key"},
        {"strict": "yes"},
    ],
    ids=["ip", "cidr", "empty-pattern", "jwt-key", "strict-type"],
)
async def test_invalid_settings_are_refused(
    client: httpx.AsyncClient, new_app: NewApp, changes: dict[str, Any]
) -> None:
    response = await client.patch(f"{base(new_app)}/settings", json=changes, auth=api_auth(new_app))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_settings"
    current = await client.get(f"{base(new_app)}/settings", auth=api_auth(new_app))
    assert current.json()["settings"]["internal_ips"] == []
    assert current.json()["settings"]["denylist"] == []
    assert current.json()["settings"]["strict"] is False
    # Unchanged: traffic from the test client is still stored.
    await native(client, new_app, {"name": "page.visit"})
    assert len(await stored(client, new_app)) == 1


# --- 9. aliases --------------------------------------------------------------------------------


async def test_an_alias_renames_from_now_on_and_queries_see_both_names(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await native(client, new_app, {"name": "signup"}, {"name": "signup"})
    response = await client.put(
        f"{base(new_app)}/aliases/signup", json={"name": "account.created"}, auth=api_auth(new_app)
    )
    assert response.status_code == 200
    assert response.json() == {"alias": "signup", "name": "account.created"}
    listed = await client.get(f"{base(new_app)}/aliases", auth=api_auth(new_app))
    assert listed.json() == {"aliases": [{"alias": "signup", "name": "account.created"}]}

    response = await native(client, new_app, {"name": "signup"})
    assert response.json()["accepted"] == 1
    names = sorted(e["name"] for e in await stored(client, new_app))
    assert names == ["account.created", "signup", "signup"]
    for query in ("signup", "account.created"):
        got = await stored(client, new_app, name=query)
        assert sorted(e["name"] for e in got) == ["account.created", "signup", "signup"], query

    # Removing the alias: new "signup" events keep their name again.
    response = await client.delete(f"{base(new_app)}/aliases/signup", auth=api_auth(new_app))
    assert response.status_code == 204
    await native(client, new_app, {"name": "signup"})
    assert len(await stored(client, new_app, name="signup")) == 3


async def test_an_alias_may_not_point_at_another_alias(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    url = f"{base(new_app)}/aliases"
    auth = api_auth(new_app)
    assert (
        await client.put(f"{url}/signup", json={"name": "account.created"}, auth=auth)
    ).is_success
    response = await client.put(f"{url}/register", json={"name": "signup"}, auth=auth)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_alias"
    response = await client.put(f"{url}/same", json={"name": "same"}, auth=auth)
    assert response.status_code == 400


# --- 10. changes reach another worker without a restart ----------------------------------------


@pytest.fixture
async def other_worker(catalog: Catalog, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A second worker: its own Services (resolver caches) over the same catalog and store."""
    second = Services(catalog=catalog, store=services.store)
    app = TallyApp(second, close_services=False)
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 51001))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http


async def _poll(check: Any, within: float = 3.0) -> float:
    """Seconds until ``check()`` was true; fails after ``within``."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < within, f"the change did not apply within {within} s"
        await asyncio.sleep(0.1)


async def test_a_new_definition_applies_in_another_worker_within_a_second(
    client: httpx.AsyncClient, other_worker: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = synerise_event("promo.view")
    # Worker B has the app and its rules cached, and rejects the undefined event.
    assert_rejected(
        await tracker(other_worker, new_app, body), 400, "undefined_event", "promo.view"
    )
    await define(client, new_app, "promo.view", permission="anonymous")  # through worker A

    async def accepted_by_b() -> bool:
        return (await tracker(other_worker, new_app, body)).status_code == 202

    waited = await _poll(accepted_by_b)
    assert waited < 3.0
    assert [e["name"] for e in await stored(other_worker, new_app)] == ["promo.view"]


async def test_a_settings_change_applies_in_another_worker_within_a_second(
    client: httpx.AsyncClient, other_worker: httpx.AsyncClient, new_app: NewApp
) -> None:
    assert (await native(other_worker, new_app, {"name": "debug.click"})).json()["accepted"] == 1
    await patch_settings(client, new_app, denylist=["debug.*"])

    async def discarded_by_b() -> bool:
        reply = (await native(other_worker, new_app, {"name": "debug.click"})).json()
        return reply["accepted"] == 0

    await _poll(discarded_by_b)
    # From then on worker B discards it every time, and counts it.
    before = len(await stored(other_worker, new_app))
    assert (await native(other_worker, new_app, {"name": "debug.click"})).json()["accepted"] == 0
    assert len(await stored(client, new_app)) == before
    assert (await discarded(client, new_app))["denylist:debug.*"] == 2
    assert await failed_events(client, new_app) == []


async def test_a_deleted_definition_applies_in_another_worker(
    client: httpx.AsyncClient, other_worker: httpx.AsyncClient, new_app: NewApp
) -> None:
    await define(client, new_app, "promo.view", permission="anonymous")
    body = synerise_event("promo.view")
    assert_accepted(await tracker(other_worker, new_app, body))
    response = await client.delete(
        f"{base(new_app)}/definitions/promo.view", auth=api_auth(new_app)
    )
    assert response.status_code == 204

    async def rejected_by_b() -> bool:
        return (await tracker(other_worker, new_app, body)).status_code == 400

    await _poll(rejected_by_b)
    before = len(await stored(client, new_app))
    assert_rejected(
        await tracker(other_worker, new_app, body), 400, "undefined_event", "promo.view"
    )
    assert len(await stored(client, new_app)) == before


# --- 11. the management API's errors, failed-event filters -------------------------------------


async def test_management_credentials(
    client: httpx.AsyncClient, catalog: Catalog, new_app: NewApp
) -> None:
    other = catalog.create_app("Other app")
    url = f"{base(new_app)}/definitions"
    response = await client.get(url)
    assert response.status_code == 401
    response = await client.get(url, auth=(new_app.app.api_key, "wrong-secret"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    response = await client.get(url, auth=(new_app.app.app_key, new_app.api_secret))
    assert response.status_code == 401
    response = await client.get(url, auth=(other.app.api_key, other.api_secret))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    response = await client.put(
        f"{url}/promo.view", json={"permission": "anonymous"}, auth=api_auth(other)
    )
    assert response.status_code == 403
    response = await client.get(f"{base(new_app)}/failed-events", auth=api_auth(other))
    assert response.status_code == 403
    assert "promo.view" not in await definitions(client, new_app)


async def test_definition_crud(client: httpx.AsyncClient, new_app: NewApp) -> None:
    url = f"{base(new_app)}/definitions/video.play"
    auth = api_auth(new_app)
    body = {
        "display_name": "Video play",
        "description": "A video started.",
        "status": "deprecated",
        "permission": "customer",
        "properties": [{"name": "seconds", "type": "number", "required": True}],
    }
    response = await client.put(url, json=body, auth=auth)
    assert response.status_code == 201
    assert response.json()["source"] == "manual"
    got = (await client.get(url, auth=auth)).json()
    assert {k: got[k] for k in body if k != "properties"} == {
        k: v for k, v in body.items() if k != "properties"
    }
    # Properties are shown with every field, defaults included.
    assert got["properties"] == [
        {
            "name": "seconds",
            "type": "number",
            "required": True,
            "description": "",
            "on_mismatch": "coerce",
        }
    ]
    response = await client.put(url, json={**body, "status": "hidden"}, auth=auth)
    assert response.status_code == 200
    hidden = await client.get(f"{base(new_app)}/definitions?status=hidden", auth=auth)
    assert [d["name"] for d in hidden.json()["events"]] == ["video.play"]
    assert (await client.delete(url, auth=auth)).status_code == 204
    assert (await client.get(url, auth=auth)).status_code == 404


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("transaction.charge", {}, "invalid_definition"),
        ("product.buy", {}, "invalid_definition"),
        ("video.play", {"name": "video.pause"}, "invalid_body"),
        ("video.play", {"permission": "everyone"}, "invalid_definition"),
        ("video.play", {"properties": [{"name": "a"}, {"name": "a"}]}, "invalid_definition"),
        ("video.play", {"properties": [{"name": "a", "type": "money"}]}, "invalid_definition"),
        ("x" * 256, {}, "invalid_definition"),
    ],
    ids=["reserved", "reserved-product", "name-differs", "permission", "twice", "type", "long"],
)
async def test_invalid_definitions_are_refused(
    client: httpx.AsyncClient, new_app: NewApp, name: str, body: dict, code: str
) -> None:
    response = await client.put(
        f"{base(new_app)}/definitions/{name}", json=body, auth=api_auth(new_app)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    if code == "invalid_definition" and name in ("transaction.charge", "product.buy"):
        assert "/v4/transactions" in response.json()["error"]["message"]
    assert name not in {
        n for n, d in (await definitions(client, new_app)).items() if not d["built_in"]
    }


async def test_unknown_settings_and_missing_definitions(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    auth = api_auth(new_app)
    response = await client.patch(f"{base(new_app)}/settings", json={"stritc": True}, auth=auth)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_settings"
    assert "stritc" in response.json()["error"]["message"]
    response = await client.delete(f"{base(new_app)}/definitions/never.defined", auth=auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # A built-in event has no definition of the app's own to delete.
    response = await client.delete(f"{base(new_app)}/definitions/page.visit", auth=auth)
    assert response.status_code == 404
    response = await client.delete(f"{base(new_app)}/aliases/never", auth=auth)
    assert response.status_code == 404
    response = await client.get(f"{base(new_app)}/failed-events/nope", auth=auth)
    assert response.status_code == 404


async def test_failed_events_filter_by_reason_name_and_time(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    assert_rejected(
        await tracker(client, new_app, synerise_event("a.one")), 400, "undefined_event", "a.one"
    )
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    assert_rejected(
        await tracker(client, new_app, synerise_event("b.two")), 400, "undefined_event", "b.two"
    )
    assert_rejected(
        await tracker(client, new_app, synerise_event("bad name")), 400, "invalid_name", "bad name"
    )

    def names(records: list[dict[str, Any]]) -> list[str]:
        return sorted(r["name"] for r in records)

    assert names(await failed_events(client, new_app)) == ["a.one", "b.two", "bad name"]
    assert names(await failed_events(client, new_app, reason="undefined_event")) == [
        "a.one",
        "b.two",
    ]
    assert names(await failed_events(client, new_app, reason="invalid_name")) == ["bad name"]
    assert names(await failed_events(client, new_app, name="b.two")) == ["b.two"]
    assert names(await failed_events(client, new_app, since=iso(middle))) == ["b.two", "bad name"]
    assert names(await failed_events(client, new_app, until=iso(middle))) == ["a.one"]
    assert names(
        await failed_events(
            client, new_app, reason="undefined_event", since=iso(middle), name="b.two"
        )
    ) == ["b.two"]
    later = iso(datetime.now(UTC) + timedelta(hours=1))
    assert await failed_events(client, new_app, since=later) == []
    assert len(await failed_events(client, new_app, limit="1")) == 1
    response = await client.get(
        f"{base(new_app)}/failed-events", params={"since": "yesterday"}, auth=api_auth(new_app)
    )
    assert response.status_code == 400

    # Replay takes the same filters: only b.two, once it is defined.
    await define(client, new_app, "a.one", permission="anonymous")
    await define(client, new_app, "b.two", permission="anonymous")
    report = await replay(client, new_app, name="b.two")
    assert report == {**EMPTY_REPLAY, "replayed": 1, "stored": 1}
    assert [e["name"] for e in await stored(client, new_app)] == ["b.two"]
    report = await replay(client, new_app, until=iso(middle))
    assert report == {**EMPTY_REPLAY, "replayed": 1, "stored": 1}
    assert sorted(e["name"] for e in await stored(client, new_app)) == ["a.one", "b.two"]
    report = await replay(client, new_app)
    assert report["replayed"] == 0
    assert [s["reason"] for s in report["still_failing"]] == ["invalid_name"]
