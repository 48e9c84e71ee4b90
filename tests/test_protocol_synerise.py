"""Synerise server-side REST events (v4): ``/v4/events/custom``, ``/v4/events/batch``, the
predefined ``/v4/events/<type>`` endpoints and ``/v4/transactions``; written from the spec
(reference/synerise_engagelab_segment.md 1.1 and seeds/001-003), not from the adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from seeds import SEED_ACTION, SEED_LABEL, SEED_PARAMS
from tally.catalog import NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

CLIENT_IP = "198.51.100.7"  # the in-process transport's client address (conftest)
ERROR_KEYS = {"error", "message", "path", "status", "timestamp", "errors"}
ERROR_ITEM_KEYS = {"code", "field", "message", "rejectedValue"}


PREDEFINED = {
    "logged-in": "client.login",
    "logged-out": "client.logout",
    "registered": "client.register",
    "added-to-cart": "product.addToCart",
    "removed-from-cart": "product.removeFromCart",
    "added-to-favorites": "product.addToFavorite",
    "product-view": "product.view",
    "searched": "client.search",
    "shared": "client.shared",
    "visited-screen": "screen.view",
    "application-started": "client.applicationStarted",
    "appeared-in-location": "client.appearedInLocation",
    "hit-timer": "client.hitTimer",
    "cancelled-transaction": "transaction.cancel",
    "assigned-to-company": "client.assignedToCompany",
    "item-search-click": "item.search.click",
    "push/received": "push.receive",
    "push/viewed": "push.view",
    "push/clicked": "push.click",
    "push/cancelled": "push.cancel",
}


def auth(new_app: NewApp) -> tuple[str, str]:
    # Basic base64(<workspace GUID>:<API key>): the app's api_key is the GUID, its secret the key.
    return (new_app.app.api_key, new_app.api_secret)


def event(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "page.visit",
        "label": "Visited page Home",
        "client": {"customId": "cust-1"},
    }
    body.update(fields)
    return body


async def events_of(services: Services, new_app: NewApp, **filters: str) -> list[dict]:
    """Stored, non-internal events (internal bookkeeping events, if any, are not asserted on)."""
    stored = await services.store.fetch_events(
        EventQuery(app_id=new_app.app.id, limit=1000, **filters)
    )
    return [e for e in stored if not e["internal"]]


def failed(services: Services) -> list[tuple[int | None, str, str]]:
    return (
        services.store.loaded()
        .conn.execute(  # type: ignore[attr-defined]
            "SELECT event_index, reason, message FROM failed_events ORDER BY event_index"
        )
        .fetchall()
    )


def assert_error_body(response: httpx.Response, status: int, reason: str, path: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == reason
    assert isinstance(body["message"], str) and body["message"]
    assert body["path"] == path
    assert body["status"] == status
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    assert isinstance(body["errors"], list)
    for item in body["errors"]:
        assert set(item) == ERROR_ITEM_KEYS
        assert isinstance(item["code"], int)
        assert item["field"] is None or isinstance(item["field"], str)
        assert isinstance(item["message"], str) and item["message"]
    return body


def assert_accepted(response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    assert response.content == b""


# --- /v4/events/custom ---------------------------------------------------------------------------


async def test_the_seed_custom_event_as_a_rest_body(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "action": SEED_ACTION,
        "params": SEED_PARAMS,
        "label": SEED_LABEL,
        "client": {"customId": "shopper-198"},
    }
    before = datetime.now(UTC)
    response = await client.post("/v4/events/custom", json=body, auth=auth(new_app))
    after = datetime.now(UTC)
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert stored["name"] == "entries.count"
    assert stored["label"] == "Entries count"
    assert stored["protocol"] == "synerise"
    assert stored["user_id"] == "shopper-198"
    # "time" is a reserved param: dropped from properties, and not the event time (no body time).
    expected = {k: v for k, v in SEED_PARAMS.items() if k != "time"}
    assert stored["properties"] == expected
    assert before - timedelta(seconds=1) <= stored["time"] <= after + timedelta(seconds=1)
    assert stored["ip"] == CLIENT_IP
    assert failed(services) == []


@pytest.mark.parametrize(
    "action",
    ["context.activity", "page.visit", "entries.count", "a" * 32, "Snake_case-and.Dots-09"],
)
async def test_valid_actions_are_accepted(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, action: str
) -> None:
    response = await client.post("/v4/events/custom", json=event(action=action), auth=auth(new_app))
    assert_accepted(response)
    assert [e["name"] for e in await events_of(services, new_app)] == [action]


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("entries count", "invalid_name"),  # a space
        ("a" * 33, "invalid_name"),  # 33 characters
        ("page/visit", "invalid_name"),
        ("zażółć.gęślą", "invalid_name"),
    ],
    ids=["space", "33-chars", "slash", "diacritics"],
)
async def test_bad_actions_are_rejected_and_kept_as_failed(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, action: str, reason: str
) -> None:
    response = await client.post("/v4/events/custom", json=event(action=action), auth=auth(new_app))
    body = assert_error_body(response, 400, "Bad Request", "/v4/events/custom")
    assert [e["field"] for e in body["errors"]] == ["action"]
    assert body["errors"][0]["rejectedValue"] == action
    assert await events_of(services, new_app) == []
    assert [(i, r) for i, r, _ in failed(services)] == [(0, reason)]


async def test_missing_action_is_missing_name(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = event()
    del body["action"]
    response = await client.post("/v4/events/custom", json=body, auth=auth(new_app))
    body = assert_error_body(response, 400, "Bad Request", "/v4/events/custom")
    assert [e["field"] for e in body["errors"]] == ["action"]
    assert await events_of(services, new_app) == []
    assert [(i, r) for i, r, _ in failed(services)] == [(0, "missing_name")]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"label": None}, "label", "invalid_event"),  # None = remove the key
        ({"label": ""}, "label", "invalid_event"),
        ({"client": None}, "client", "missing_identity"),
        ({"client": {}}, "client", "missing_identity"),
        ({"client": {"firstName": "Ann"}}, "client", "missing_identity"),
    ],
    ids=["no-label", "empty-label", "no-client", "empty-client", "client-without-identifier"],
)
async def test_label_and_client_are_required(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    change: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    body = event()
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    response = await client.post("/v4/events/custom", json=body, auth=auth(new_app))
    reply = assert_error_body(response, 400, "Bad Request", "/v4/events/custom")
    assert [e["field"] for e in reply["errors"]] == [field]
    assert await events_of(services, new_app) == []
    assert [(i, r) for i, r, _ in failed(services)] == [(0, reason)]


@pytest.mark.parametrize("content", [b"{", b"not json", b""], ids=["truncated", "text", "empty"])
async def test_invalid_json_is_400_with_the_error_body(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, content: bytes
) -> None:
    response = await client.post(
        "/v4/events/custom",
        content=content,
        headers={"content-type": "application/json"},
        auth=auth(new_app),
    )
    assert_error_body(response, 400, "Bad Request", "/v4/events/custom")
    assert await events_of(services, new_app) == []


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v4/events/custom", "/v4/events/batch", "/v4/events/logged-in", "/v4/transactions"]
)
@pytest.mark.parametrize("credentials", ["none", "wrong-secret", "unknown", "bearer", "app-key"])
async def test_missing_or_wrong_credentials_are_401(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    path: str,
    credentials: str,
) -> None:
    kwargs: dict[str, Any] = {}
    if credentials == "wrong-secret":
        kwargs["auth"] = (new_app.app.api_key, new_app.api_secret + "x")
    elif credentials == "unknown":
        kwargs["auth"] = ("00000000-0000-0000-0000-000000000000", "nope")
    elif credentials == "bearer":
        kwargs["headers"] = {"authorization": f"Bearer {new_app.api_secret}"}
    elif credentials == "app-key":
        kwargs["auth"] = (new_app.app.app_key, "")
    body: Any = [event()] if path.endswith("batch") else event()
    response = await client.post(path, json=body, **kwargs)
    assert_error_body(response, 401, "Unauthorized", path)
    assert await events_of(services, new_app) == []


# --- mapping --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_body", "user_id", "device_id"),
    [
        (
            {"customId": "c-1", "email": "a@example.com", "id": 42, "uuid": "u-1"},
            "c-1",
            "u-1",
        ),
        ({"email": "a@example.com", "id": 42}, "a@example.com", None),
        ({"id": 42}, "42", None),
        ({"uuid": "u-07243772"}, None, "u-07243772"),
    ],
    ids=["customId-wins", "email-over-id", "id-as-string", "uuid-only"],
)
async def test_client_identifiers_map_to_user_and_device(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    client_body: dict[str, Any],
    user_id: str | None,
    device_id: str | None,
) -> None:
    response = await client.post(
        "/v4/events/custom", json=event(client=client_body), auth=auth(new_app)
    )
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert (stored["user_id"], stored["device_id"]) == (user_id, device_id)


async def test_an_event_with_custom_id_and_uuid_links_them_both_ways(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    uuid = "5b102148-0d28-4a6a-8658-483f7d1c735e"
    sends = [
        event(action="page.visit", client={"uuid": uuid}),  # before the link
        event(action="client.login", client={"customId": "cust-9", "uuid": uuid}),
        event(action="product.view", client={"uuid": uuid}),  # after the link
    ]
    for body in sends:
        assert_accepted(await client.post("/v4/events/custom", json=body, auth=auth(new_app)))
    other = event(action="page.visit", client={"uuid": "someone-else"})
    assert_accepted(await client.post("/v4/events/custom", json=other, auth=auth(new_app)))
    names = sorted(e["name"] for e in await events_of(services, new_app, user="cust-9"))
    assert names == ["client.login", "page.visit", "product.view"]


async def test_reserved_params_are_dropped(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = {
        "modifiedBy": "someone",
        "apiKey": "stolen",
        "eventUUID": "e3c4a2b8-0000-0000-0000-000000000000",
        "ip": "10.9.8.7",
        "time": "2020-01-01T00:00:00Z",
        "businessProfileId": 12345,
        "url": "https://shop.example/",
        "nested": {"ip": "stays", "time": 1},
    }
    response = await client.post("/v4/events/custom", json=event(params=params), auth=auth(new_app))
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert stored["properties"] == {
        "url": "https://shop.example/",
        "nested": {"ip": "stays", "time": 1},
    }
    assert stored["ip"] == CLIENT_IP
    assert stored["time"].year != 2020


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00.250-05:30", datetime(2024, 5, 1, 17, 30, 0, 250000, tzinfo=UTC)),
    ],
    ids=["z", "plus-offset", "minus-offset-ms"],
)
async def test_body_time_is_the_event_time(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    sent: str,
    expected: datetime,
) -> None:
    response = await client.post("/v4/events/custom", json=event(time=sent), auth=auth(new_app))
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert stored["time"] == expected
    assert "snr-original-time" not in stored["properties"]


async def test_no_time_is_receipt_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    before = datetime.now(UTC)
    assert_accepted(await client.post("/v4/events/custom", json=event(), auth=auth(new_app)))
    after = datetime.now(UTC)
    [stored] = await events_of(services, new_app)
    assert before - timedelta(seconds=1) <= stored["time"] <= after + timedelta(seconds=1)
    assert stored["properties"] == {}


async def test_a_future_time_becomes_receipt_time_and_is_kept_as_snr_original_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = datetime.now(UTC)
    response = await client.post(
        "/v4/events/custom",
        json=event(time=future, params={"k": "v"}),
        auth=auth(new_app),
    )
    after = datetime.now(UTC)
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert before - timedelta(seconds=1) <= stored["time"] <= after + timedelta(seconds=1)
    assert stored["properties"] == {"k": "v", "snr-original-time": future}
    assert failed(services) == []


async def test_event_salt_is_the_id_and_a_resend_is_stored_once(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    salt = "3f2c1a9e-7b1d-4c55-9a0e-2d8f6b4e1c07"
    first = event(eventSalt=salt, time="2024-05-01T12:00:00Z", params={"v": 1})
    second = event(eventSalt=salt, time="2024-05-01T12:00:00Z", params={"v": 2})
    assert_accepted(await client.post("/v4/events/custom", json=first, auth=auth(new_app)))
    assert_accepted(await client.post("/v4/events/custom", json=second, auth=auth(new_app)))
    [stored] = await events_of(services, new_app)
    assert stored["id"] == salt
    # Tally keeps the first (Synerise would overwrite it: a documented difference).
    assert stored["properties"] == {"v": 1}


async def test_without_a_salt_every_send_is_a_new_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    for _ in range(2):
        assert_accepted(await client.post("/v4/events/custom", json=event(), auth=auth(new_app)))
    stored = await events_of(services, new_app)
    assert len(stored) == 2 and stored[0]["id"] != stored[1]["id"]


# --- predefined endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "action"), list(PREDEFINED.items()))
async def test_predefined_endpoints_store_their_own_action(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    endpoint: str,
    action: str,
) -> None:
    body = event(action="custom.other", params={"sku": "SKU-1"}, client={"customId": "c-7"})
    response = await client.post(f"/v4/events/{endpoint}", json=body, auth=auth(new_app))
    assert_accepted(response)
    [stored] = await events_of(services, new_app)
    assert stored["name"] == action
    assert stored["label"] == "Visited page Home"
    assert stored["user_id"] == "c-7"
    assert stored["properties"] == {"sku": "SKU-1"}
    assert stored["protocol"] == "synerise"


async def test_predefined_endpoint_without_or_with_an_invalid_body_action(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    no_action = event()
    del no_action["action"]
    bad_action = event(action="not a valid action at all, and far too long")
    for body in (no_action, bad_action):
        response = await client.post("/v4/events/logged-in", json=body, auth=auth(new_app))
        assert_accepted(response)
    names = [e["name"] for e in await events_of(services, new_app)]
    assert names == ["client.login", "client.login"]
    assert failed(services) == []


async def test_predefined_endpoints_still_require_label_and_client(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await client.post(
        "/v4/events/product-view", json={"client": {"uuid": "u"}}, auth=auth(new_app)
    )
    body = assert_error_body(response, 400, "Bad Request", "/v4/events/product-view")
    assert [e["field"] for e in body["errors"]] == ["label"]
    response = await client.post(
        "/v4/events/push/clicked", json={"label": "Push clicked"}, auth=auth(new_app)
    )
    body = assert_error_body(response, 400, "Bad Request", "/v4/events/push/clicked")
    assert [e["field"] for e in body["errors"]] == ["client"]
    assert await events_of(services, new_app) == []
    assert [r for _, r, _ in failed(services)] == ["invalid_event", "missing_identity"]


# --- /v4/events/batch -----------------------------------------------------------------------------


async def test_batch_stores_every_valid_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = [
        {
            "action": SEED_ACTION,
            "params": SEED_PARAMS,
            "label": SEED_LABEL,
            "client": {"uuid": "u-1"},
            "time": "2024-05-01T12:00:00Z",
        },
        event(action="page.visit", time="2024-05-01T12:00:01Z", params={"url": "/a"}),
    ]
    response = await client.post("/v4/events/batch", json=body, auth=auth(new_app))
    assert_accepted(response)
    stored = {e["name"]: e for e in await events_of(services, new_app)}
    assert set(stored) == {"entries.count", "page.visit"}
    assert stored["entries.count"]["device_id"] == "u-1"
    assert stored["entries.count"]["time"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert stored["entries.count"]["properties"]["entries"] == 27
    assert "time" not in stored["entries.count"]["properties"]
    assert stored["page.visit"]["properties"] == {"url": "/a"}
    assert stored["page.visit"]["time"] == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert {e["protocol"] for e in stored.values()} == {"synerise"}


async def test_batch_partial_success_is_202_and_rejects_are_kept(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    no_action = event(label="no action")
    del no_action["action"]
    body = [
        event(action="good.one"),
        event(action="bad action"),
        event(action="good.two", label=""),
        no_action,
        event(action="good.three", client={"email": "b@example.com"}),
        event(action="x" * 33),
    ]
    response = await client.post("/v4/events/batch", json=body, auth=auth(new_app))
    assert_accepted(response)
    names = sorted(e["name"] for e in await events_of(services, new_app))
    assert names == ["good.one", "good.three"]
    assert [(i, r) for i, r, _ in failed(services)] == [
        (1, "invalid_name"),
        (2, "invalid_event"),
        (3, "missing_name"),
        (5, "invalid_name"),
    ]


async def test_batch_with_nothing_stored_is_400_with_one_error_per_item(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = [
        event(action="bad action"),
        event(client={}),
        event(label=""),
        event(action="y" * 33),
    ]
    response = await client.post("/v4/events/batch", json=body, auth=auth(new_app))
    reply = assert_error_body(response, 400, "Bad Request", "/v4/events/batch")
    assert [e["field"] for e in reply["errors"]] == [
        "[0].action",
        "[1].client",
        "[2].label",
        "[3].action",
    ]
    assert reply["errors"][0]["rejectedValue"] == "bad action"
    assert reply["errors"][3]["rejectedValue"] == "y" * 33
    assert await events_of(services, new_app) == []
    assert [(i, r) for i, r, _ in failed(services)] == [
        (0, "invalid_name"),
        (1, "missing_identity"),
        (2, "invalid_event"),
        (3, "invalid_name"),
    ]


async def test_batch_of_only_duplicates_is_202(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = [event(eventSalt="salt-a"), event(eventSalt="salt-b")]
    assert_accepted(await client.post("/v4/events/batch", json=body, auth=auth(new_app)))
    assert_accepted(await client.post("/v4/events/batch", json=body, auth=auth(new_app)))
    ids = sorted(e["id"] for e in await events_of(services, new_app))
    assert ids == ["salt-a", "salt-b"]


async def test_batch_of_1000_is_accepted_and_1001_rejected_whole(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    too_many = [event(action="bulk.item", params={"n": i}) for i in range(1001)]
    response = await client.post("/v4/events/batch", json=too_many, auth=auth(new_app))
    assert_error_body(response, 400, "Bad Request", "/v4/events/batch")
    assert await events_of(services, new_app) == []

    response = await client.post("/v4/events/batch", json=too_many[:1000], auth=auth(new_app))
    assert_accepted(response)
    assert len(await events_of(services, new_app)) == 1000


@pytest.mark.parametrize("content", [b"[", b'{"action": "page.visit"}', b"5"])
async def test_batch_must_be_a_json_array(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, content: bytes
) -> None:
    response = await client.post(
        "/v4/events/batch",
        content=content,
        headers={"content-type": "application/json"},
        auth=auth(new_app),
    )
    assert_error_body(response, 400, "Bad Request", "/v4/events/batch")
    assert await events_of(services, new_app) == []


# --- /v4/transactions -----------------------------------------------------------------------------

TRANSACTION: dict[str, Any] = {
    "client": {"customId": "buyer-1", "uuid": "dev-1"},
    "orderId": "ORD-2024-0001",
    "recordedAt": "2024-05-01T12:00:00Z",
    "value": {"amount": 150.0, "currency": "PLN"},
    "revenue": {"amount": 120.0, "currency": "PLN"},
    "products": [
        {
            "sku": "SKU-1",
            "name": "Mug",
            "quantity": 2,
            "finalUnitPrice": {"amount": 25.0, "currency": "PLN"},
            "categories": ["kitchen"],
        },
        {
            "sku": "SKU-2",
            "quantity": 1,
            "finalUnitPrice": {"amount": 100.0, "currency": "PLN"},
        },
    ],
    "metadata": {"channel": "web", "coupon": "SPRING"},
}


async def test_a_transaction_is_a_charge_plus_one_product_buy_per_product(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await client.post("/v4/transactions", json=TRANSACTION, auth=auth(new_app))
    assert_accepted(response)
    stored = await events_of(services, new_app)
    assert sorted(e["name"] for e in stored) == ["product.buy", "product.buy", "transaction.charge"]
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for e in stored:
        assert e["time"] == when
        assert (e["user_id"], e["device_id"]) == ("buyer-1", "dev-1")
        assert e["protocol"] == "synerise"
    [charge] = [e for e in stored if e["name"] == "transaction.charge"]
    assert charge["properties"] == {
        "orderId": "ORD-2024-0001",
        "value": {"amount": 150.0, "currency": "PLN"},
        "revenue": {"amount": 120.0, "currency": "PLN"},
        "products": TRANSACTION["products"],
        "metadata": {"channel": "web", "coupon": "SPRING"},
    }
    buys = sorted(
        (e["properties"] for e in stored if e["name"] == "product.buy"), key=lambda p: p["sku"]
    )
    assert buys == [
        {"orderId": "ORD-2024-0001", **TRANSACTION["products"][0]},
        {"orderId": "ORD-2024-0001", **TRANSACTION["products"][1]},
    ]
    assert len({e["id"] for e in stored}) == 3


async def test_transactions_batch(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    second = {
        "client": {"email": "c@example.com"},
        "orderId": "ORD-2",
        "recordedAt": "2024-05-02T08:30:00+02:00",
        "value": {"amount": 10, "currency": "EUR"},
        "products": [
            {"sku": "SKU-9", "quantity": 1, "finalUnitPrice": {"amount": 10, "currency": "EUR"}}
        ],
    }
    response = await client.post(
        "/v4/transactions/batch", json=[TRANSACTION, second], auth=auth(new_app)
    )
    assert_accepted(response)
    stored = await events_of(services, new_app)
    assert sorted((e["name"], e["properties"]["orderId"]) for e in stored) == [
        ("product.buy", "ORD-2"),
        ("product.buy", "ORD-2024-0001"),
        ("product.buy", "ORD-2024-0001"),
        ("transaction.charge", "ORD-2"),
        ("transaction.charge", "ORD-2024-0001"),
    ]
    ord2 = [e for e in stored if e["properties"]["orderId"] == "ORD-2"]
    for e in ord2:
        assert e["time"] == datetime(2024, 5, 2, 6, 30, tzinfo=UTC)
        assert e["user_id"] == "c@example.com"
    [charge2] = [e for e in ord2 if e["name"] == "transaction.charge"]
    assert charge2["properties"] == {
        "orderId": "ORD-2",
        "value": {"amount": 10, "currency": "EUR"},
        "products": second["products"],
    }


async def test_a_resent_transaction_with_the_same_salt_charges_once(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {**TRANSACTION, "eventSalt": "order-salt-1"}
    for _ in range(2):
        assert_accepted(await client.post("/v4/transactions", json=body, auth=auth(new_app)))
    names = [e["name"] for e in await events_of(services, new_app)]
    assert names.count("transaction.charge") == 1
