"""Segment's HTTP Tracking API (``/v1/track`` ... ``/v1/batch``), in-process against real DuckDB
and SQLite.

Written from the protocol reference (``synerise_engagelab_segment.md`` sections 3 and 5), Segment's
HTTP API documentation (whose example calls are used verbatim, with the write key filled in) and
the Segment-to-Tally mapping in docs/protocols.md, not from the adapter.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tally.catalog import NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

SUCCESS = {"success": True}
CLIENT_IP = "198.51.100.7"  # the ASGI client address set in conftest.py
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CALLS = ("track", "identify", "page", "screen", "group", "alias")
SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
"""analytics.js's short paths (``/v1/<first letter of the type>``; a batch goes to ``/v1/b``)."""
AJS_LIBRARY = {"name": "analytics.js", "version": "npm:next-1.84.3"}
AJS_METADATA = {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []}
AJS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


# --- helpers ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """The form Segment's libraries send: ISO 8601 with milliseconds and a Z."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic(key: str, *, colon: bool = True) -> dict[str, str]:
    token = base64.b64encode(f"{key}{':' if colon else ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def post(client: httpx.AsyncClient, call: str, body: Any, **kwargs: Any) -> httpx.Response:
    return await client.post(f"/v1/{call}", json=body, **kwargs)


async def stored(services: Services, app_id: str, **query: Any) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=app_id, limit=1000, **query))


async def stored_one(services: Services, app_id: str) -> dict:
    events = await stored(services, app_id)
    assert len(events) == 1, [e["name"] for e in events]
    return events[0]


async def stored_by_name(services: Services, app_id: str) -> dict[str, dict]:
    events = await stored(services, app_id)
    by_name = {e["name"]: e for e in events}
    assert len(by_name) == len(events), sorted(e["name"] for e in events)
    return by_name


def failed(services: Services) -> list[tuple]:
    """(reason, message, payload, event_index) of every failed event, in arrival order."""
    db = services.store.loaded()  # type: ignore[attr-defined]
    return db.conn.execute(
        "SELECT reason, message, payload, event_index FROM failed_events "
        "ORDER BY received_at, event_index"
    ).fetchall()


def count_events(services: Services) -> int:
    db = services.store.loaded()  # type: ignore[attr-defined]
    return db.conn.execute("SELECT count(*) FROM events").fetchone()[0]


def error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) == {"success", "code", "message"}
    return body


async def post_text(client: httpx.AsyncClient, path: str, body: Any, key: str) -> httpx.Response:
    """As analytics.js posts: the JSON body as ``text/plain``, the write key in the body and as the
    Basic user name."""
    headers = {**basic(key), "Content-Type": "text/plain"}
    return await client.post(path, content=json.dumps(body).encode(), headers=headers)


def ajs_context(url: str = "https://shop.example/checkout?step=2") -> dict[str, Any]:
    """The context analytics.js (@segment/analytics-next 1.84.3) sends with every call."""
    return {
        "page": {
            "path": "/checkout",
            "referrer": "https://search.example/",
            "search": "?step=2",
            "title": "Checkout",
            "url": url,
        },
        "userAgent": AJS_UA,
        "userAgentData": {"brands": [{"brand": "Chromium", "version": "131"}], "mobile": False},
        "locale": "en-US",
        "library": AJS_LIBRARY,
        "timezone": "Europe/Amsterdam",
    }


def ajs_message(key: str, call: str, seq: int, **fields: Any) -> dict[str, Any]:
    """One analytics.js message as its Segment.io plugin sends it to ``/v1/<letter>``."""
    return {
        "timestamp": iso(T0 + timedelta(seconds=seq)),
        "integrations": {},
        "type": call,
        "context": ajs_context(),
        "messageId": f"ajs-next-1772359200000-{seq:04d}-5f7c0a52-6f1b-4c57-9a7e-1d3b2f0c9e8a",
        "anonymousId": "5c1e2a7b-7f1d-4a4e-9b0e-3f2a1c0d9e8f",
        "userId": None,
        **fields,
        "writeKey": key,
        "sentAt": iso(T0 + timedelta(seconds=seq, milliseconds=5)),
        "_metadata": AJS_METADATA,
    }


def rejected_codes(response: httpx.Response) -> list[tuple[int, str]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return [(r["index"], r["code"]) for r in body.get("rejected", [])]


# --- the documentation's example calls, one per endpoint --------------------------------------


async def test_track_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "userId": "019mr8mf4r",
        "event": "Item Purchased",
        "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:12.984Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "track", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "Item Purchased"
    assert event["user_id"] == "019mr8mf4r"
    assert event["device_id"] is None
    assert event["properties"] == {"name": "Leap to Conclusions Mat", "revenue": 14.99}
    assert event["time"] == datetime(2012, 12, 2, 0, 30, 12, 984000, tzinfo=UTC)
    assert event["ip"] == "24.5.68.47"
    assert event["protocol"] == "segment"
    assert event["internal"] is False
    assert event["count"] == 1


async def test_identify_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "userId": "019mr8mf4r",
        "traits": {
            "email": "pgibbons@example.com",
            "name": "Peter Gibbons",
            "industry": "Technology",
        },
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:08.276Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "identify", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "identity.identify"
    assert event["internal"] is True
    assert event["user_id"] == "019mr8mf4r"
    assert event["properties"] == body["traits"]
    assert event["time"] == datetime(2012, 12, 2, 0, 30, 8, 276000, tzinfo=UTC)
    assert event["ip"] == "24.5.68.47"


async def test_page_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "userId": "019mr8mf4r",
        "name": "Tracking HTTP API",
        "timestamp": "2012-12-02T00:31:29.738Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "page", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["label"], event["internal"]) == (
        "page.visit",
        "Tracking HTTP API",
        False,
    )
    assert event["properties"] == {}
    assert event["time"] == datetime(2012, 12, 2, 0, 31, 29, 738000, tzinfo=UTC)


async def test_screen_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "userId": "019mr8mf4r",
        "name": "Tracking HTTP API",
        "timestamp": "2012-12-02T00:31:29.738Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "screen", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["label"], event["internal"]) == (
        "screen.view",
        "Tracking HTTP API",
        False,
    )


async def test_group_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "userId": "019mr8mf4r",
        "groupId": "8e9df332ac",
        "traits": {"name": "Initech", "industry": "Technology", "employees": 420},
        "timestamp": "2012-12-02T00:31:38.208Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "group", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "identity.group"
    assert event["internal"] is True
    assert event["label"] == "8e9df332ac"
    assert event["properties"] == {"groupId": "8e9df332ac", "traits": body["traits"]}
    assert event["user_id"] == "019mr8mf4r"


async def test_alias_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "previousId": "39239-239239-239239-23923",
        "userId": "019mr8mf4r",
        "timestamp": "2012-12-02T00:31:29.738Z",
        "writeKey": new_app.app.app_key,
    }
    response = await post(client, "alias", body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "identity.link"
    assert event["internal"] is True
    assert event["user_id"] == "019mr8mf4r"
    assert event["properties"] == {"previous_id": "39239-239239-239239-23923"}


async def test_batch_as_in_the_docs(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The docs' batch, verbatim. Its last two items carry ``2015-2-02T...`` (a one-digit month),
    which is not ISO 8601: those two are rejected with ``invalid_time`` and kept as failed events,
    the first two are stored, and the top-level context reaches each of them."""
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": "019mr8mf4r",
                "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
                "timestamp": "2012-12-02T00:30:08.276Z",
            },
            {
                "type": "track",
                "userId": "019mr8mf4r",
                "event": "Song Played",
                "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
                "timestamp": "2012-12-02T00:30:12.984Z",
            },
            {
                "type": "identify",
                "userId": "971mj8mk7p",
                "traits": {"email": "cindy@example.com", "name": "Cindy Gonzalez", "age": 23},
                "timestamp": "2015-2-02T00:30:08.276Z",
            },
            {
                "type": "track",
                "userId": "971mj8mk7p",
                "event": "Song Played",
                "properties": {"name": "Get Right", "artist": "Jennifer Lopez"},
                "timestamp": "2015-2-02T00:30:12.984Z",
            },
        ],
        "writeKey": new_app.app.app_key,
        "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
    }
    response = await post(client, "batch", body)
    assert rejected_codes(response) == [(2, "invalid_time"), (3, "invalid_time")]
    events = await stored_by_name(services, new_app.app.id)
    assert set(events) == {"identity.identify", "Song Played"}
    assert events["Song Played"]["properties"]["artist"] == "Dierks Bentley"
    assert events["identity.identify"]["properties"]["name"] == "Jake Peterson"
    assert {e["device_type"] for e in events.values()} == {"phone"}
    assert [(r[0], r[3]) for r in failed(services)] == [("invalid_time", 2), ("invalid_time", 3)]
    assert json.loads(failed(services)[0][2])["traits"]["name"] == "Cindy Gonzalez"


async def test_every_reply_carries_cors_headers_and_options_answers_the_preflight(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    """analytics.js sends ``Authorization`` on every request and ``X-Retry-Count`` on retries, so
    the browser asks first; both must be allowed, on the short paths as on the long ones."""
    for call in (*CALLS, "batch", *SHORT, "b"):
        preflight = await client.options(
            f"/v1/{call}",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
            },
        )
        assert preflight.status_code == 204, call
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-retry-count"} <= allowed
    response = await post(client, "track", {"event": "x", "userId": "u"})
    assert response.headers["access-control-allow-origin"] == "*"
    response = await post(client, "t", {"event": "x", "userId": "u"})  # refused: no write key
    assert response.headers["access-control-allow-origin"] == "*"


async def test_other_methods_are_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/track")
    error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, OPTIONS"


# --- authentication ----------------------------------------------------------------------------


async def test_the_write_key_as_basic_user_name_authenticates(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"userId": "u1", "event": "Signed Up"}
    response = await post(client, "track", body, headers=basic(new_app.app.app_key))
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert (await stored_one(services, new_app.app.id))["name"] == "Signed Up"


async def test_a_basic_write_key_without_the_colon_is_still_accepted(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The docs: encoding the write key without a colon works, for backward compatibility."""
    headers = basic(new_app.app.app_key, colon=False)
    response = await post(client, "track", {"userId": "u1", "event": "x"}, headers=headers)
    assert (response.status_code, response.json()) == (200, SUCCESS)


async def test_basic_authentication_on_a_batch(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"batch": [{"type": "track", "userId": "u1", "event": "x"}]}
    response = await post(client, "batch", body, headers=basic(new_app.app.app_key))
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert len(await stored(services, new_app.app.id)) == 1


async def test_a_bearer_token_is_ignored_and_the_body_write_key_used(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """Segment's OAuth sends a Bearer token with the writeKey in the body; Tally has no OAuth and
    goes by the write key."""
    body = {"userId": "u1", "event": "x", "writeKey": new_app.app.app_key}
    headers = {"Authorization": "Bearer some-access-token"}
    response = await post(client, "track", body, headers=headers)
    assert (response.status_code, response.json()) == (200, SUCCESS)


async def test_a_missing_write_key_is_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    for call in (*CALLS, "batch"):
        body = {"batch": []} if call == "batch" else {"userId": "u1", "event": "x"}
        error(await post(client, call, body), 401, "missing_app_key")
    assert count_events(services) == 0


async def test_an_unknown_write_key_is_refused_in_the_body_or_the_header(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"userId": "u1", "event": "x"}
    error(await post(client, "track", {**body, "writeKey": "nope"}), 401, "unknown_app_key")
    error(await post(client, "track", body, headers=basic("nope")), 401, "unknown_app_key")
    batch = {"batch": [{"type": "track", **body}], "writeKey": "nope"}
    error(await post(client, "batch", batch), 401, "unknown_app_key")
    assert count_events(services) == 0


# --- mapping ---------------------------------------------------------------------------------


async def test_track_maps_ids_and_context(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "anonymousId": "anon-1",
        "messageId": "msg-0001",
        "properties": {"total": 30.5, "currency": "EUR", "items": [1, 2]},
        "timestamp": iso(T0),
        "context": {
            "ip": "203.0.113.50",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
            "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "locale": "nl-NL",
            "timezone": "Europe/Amsterdam",
            "page": {"url": "https://shop.example/checkout", "referrer": "https://search.example/"},
            "library": {"name": "analytics.js", "version": "5.2.1"},
            "os": {"name": "iOS", "version": "17.0"},
            "device": {"type": "ios", "model": "iPhone15,2"},
        },
        "integrations": {"All": False, "Mixpanel": True},
    }
    assert (await post(client, "track", body)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["id"] == "msg-0001"
    assert (event["user_id"], event["device_id"]) == ("user-1", "anon-1")
    assert event["properties"] == {"total": 30.5, "currency": "EUR", "items": [1, 2]}
    assert event["time"] == T0
    assert event["ip"] == "203.0.113.50"
    assert event["user_agent"].startswith("Mozilla/5.0 (iPhone")
    assert event["browser"]  # parsed from the user agent
    assert (event["locale"], event["timezone"]) == ("nl-NL", "Europe/Amsterdam")
    assert event["url"] == "https://shop.example/checkout"
    assert event["referrer"] == "https://search.example/"
    assert (event["sdk_name"], event["sdk_version"]) == ("analytics.js", "5.2.1")
    assert (event["os"], event["device_type"]) == ("iOS", "ios")


async def test_without_context_the_connection_address_and_user_agent_are_used(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "userId": "u1", "event": "x"}
    headers = {"User-Agent": "analytics-python/2.3.6"}
    assert (await post(client, "track", body, headers=headers)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["ip"] == CLIENT_IP
    assert event["user_agent"] == "analytics-python/2.3.6"
    assert event["sdk_name"] is None


async def test_numeric_ids_are_stored_as_strings(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "userId": 42, "anonymousId": 7.5, "event": "x"}
    assert (await post(client, "track", body)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["user_id"], event["device_id"]) == ("42", "7.5")


async def test_page_url_and_referrer_come_from_properties_else_context_page(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    from_properties = {
        "writeKey": key,
        "anonymousId": "a1",
        "name": "Pricing",
        "category": "Docs",
        "properties": {"url": "https://example.com/pricing", "referrer": "https://a.example/"},
        "context": {"page": {"url": "https://ignored.example/", "referrer": "https://b.example/"}},
        "timestamp": iso(T0),
    }
    from_context = {
        "writeKey": key,
        "anonymousId": "a1",
        "name": "Home",
        "context": {"page": {"url": "https://example.com/", "referrer": "https://c.example/"}},
        "timestamp": iso(T0 + timedelta(minutes=1)),
    }
    assert (await post(client, "page", from_properties)).json() == SUCCESS
    assert (await post(client, "page", from_context)).json() == SUCCESS
    home, pricing = await stored(services, new_app.app.id)  # newest first
    assert (pricing["name"], pricing["label"]) == ("page.visit", "Pricing")
    assert pricing["url"] == "https://example.com/pricing"
    assert pricing["referrer"] == "https://a.example/"
    assert pricing["properties"]["category"] == "Docs"
    assert (home["label"], home["url"], home["referrer"]) == (
        "Home",
        "https://example.com/",
        "https://c.example/",
    )


async def test_screen_properties_are_kept(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "anonymousId": "a1",
        "name": "Settings",
        "properties": {"tab": "privacy"},
    }
    assert (await post(client, "screen", body)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["label"], event["properties"]) == (
        "screen.view",
        "Settings",
        {"tab": "privacy"},
    )


async def test_the_body_type_does_not_override_the_path(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "type": "page", "userId": "u1", "event": "x"}
    assert (await post(client, "track", body)).json() == SUCCESS
    assert (await stored_one(services, new_app.app.id))["name"] == "x"


# --- per-message rejections: 200, listed in `rejected`, kept as failed events ----------------


async def test_a_message_without_user_id_or_anonymous_id_is_rejected(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "event": "Signed Up", "userId": "", "context": {}}
    response = await post(client, "track", body)
    assert rejected_codes(response) == [(0, "missing_identity")]
    assert count_events(services) == 0
    [(reason, message, payload, index)] = failed(services)
    assert (reason, index) == ("missing_identity", 0)
    assert "anonymousId" in message
    assert json.loads(payload)["event"] == "Signed Up"


async def test_missing_identity_in_a_batch_rejects_only_that_message(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "batch": [
            {"type": "track", "event": "a", "userId": "u1"},
            {"type": "identify", "traits": {"plan": "pro"}},
            {"type": "alias", "previousId": "old"},
            {"type": "track", "event": "b", "anonymousId": "a1"},
        ],
    }
    response = await post(client, "batch", body)
    assert rejected_codes(response) == [(1, "missing_identity"), (2, "missing_identity")]
    assert set(await stored_by_name(services, new_app.app.id)) == {"a", "b"}


async def test_invalid_messages_are_rejected_one_by_one(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "batch": [
            {"type": "track", "event": "kept", "userId": "u1"},
            {"type": "purchase", "event": "x", "userId": "u1"},  # unknown type
            {"event": "x", "userId": "u1"},  # no type
            "not an object",
            {"type": "track", "userId": "u1"},  # no event name
            {"type": "track", "event": "x", "userId": "u1", "properties": [1]},
            {"type": "group", "userId": "u1", "traits": {}},  # no groupId
            {"type": "track", "event": "x", "userId": {"id": 1}},
            {"type": "track", "event": "x", "userId": "u1", "timestamp": "yesterday"},
        ],
    }
    response = await post(client, "batch", body)
    assert rejected_codes(response) == [
        (1, "invalid_event"),
        (2, "invalid_event"),
        (3, "invalid_event"),
        (4, "missing_name"),
        (5, "invalid_event"),
        (6, "invalid_event"),
        (7, "invalid_event"),
        (8, "invalid_time"),
    ]
    assert set(await stored_by_name(services, new_app.app.id)) == {"kept"}
    assert len(failed(services)) == 8


async def test_a_message_id_of_more_than_100_characters_is_rejected(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "batch": [
            {"type": "track", "event": "ok", "userId": "u1", "messageId": "m" * 100},
            {"type": "track", "event": "long", "userId": "u1", "messageId": "m" * 101},
        ],
    }
    response = await post(client, "batch", body)
    assert rejected_codes(response) == [(1, "invalid_id")]
    assert (await stored_one(services, new_app.app.id))["id"] == "m" * 100


# --- deduplication -----------------------------------------------------------------------------


async def test_a_resent_message_is_stored_once(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "userId": "u1",
        "event": "Order Completed",
        "messageId": "ajs-next-1f2e3d4c",
        "timestamp": iso(T0),
    }
    first = await post(client, "track", body)
    again = await post(client, "track", body)
    assert first.json() == again.json() == SUCCESS
    # The same message inside a batch, and twice within one batch: still one event.
    batch = {"writeKey": new_app.app.app_key, "batch": [{**body, "type": "track"}] * 2}
    assert (await post(client, "batch", batch)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["id"] == "ajs-next-1f2e3d4c"
    assert failed(services) == []


async def test_messages_without_message_id_each_get_their_own_id(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "userId": "u1", "event": "x"}
    await post(client, "track", body)
    await post(client, "track", body)
    events = await stored(services, new_app.app.id)
    assert len({e["id"] for e in events}) == 2


# --- time --------------------------------------------------------------------------------------


async def test_without_sent_at_the_timestamp_is_the_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """A historical import: the timestamp is taken as is."""
    body = {"writeKey": new_app.app.app_key, "userId": "u1", "event": "x", "timestamp": iso(T0)}
    await post(client, "track", body)
    assert (await stored_one(services, new_app.app.id))["time"] == T0


async def test_sent_at_corrects_the_timestamp_for_clock_skew(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """timestamp = receivedAt - (sentAt - originalTimestamp): a device whose clock is two days
    ahead sent, 30 s after the event happened, an event stamped two days in the future."""
    device_now = datetime.now(UTC) + timedelta(days=2)
    body = {
        "writeKey": new_app.app.app_key,
        "userId": "u1",
        "event": "x",
        "timestamp": iso(device_now - timedelta(seconds=30)),
        "sentAt": iso(device_now),
    }
    assert (await post(client, "track", body)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == event["received_at"] - timedelta(seconds=30)


async def test_original_timestamp_is_used_without_timestamp_and_corrected_by_sent_at(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "sentAt": iso(T0 + timedelta(minutes=5)),
        "batch": [
            {"type": "track", "userId": "u1", "event": "x", "originalTimestamp": iso(T0)},
        ],
    }
    assert (await post(client, "batch", body)).json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == event["received_at"] - timedelta(minutes=5)


async def test_without_any_time_the_receipt_time_is_the_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "userId": "u1", "event": "x", "sentAt": iso(T0)}
    await post(client, "track", body)
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == event["received_at"]


async def test_a_future_timestamp_without_sent_at_is_clamped_to_the_receipt_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    future = datetime.now(UTC) + timedelta(days=3)
    body = {"writeKey": new_app.app.app_key, "userId": "u1", "event": "x", "timestamp": iso(future)}
    await post(client, "track", body)
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == event["received_at"]


async def test_an_unreadable_sent_at_only_turns_skew_correction_off(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "userId": "u1",
        "event": "x",
        "timestamp": iso(T0),
        "sentAt": "not a time",
    }
    assert (await post(client, "track", body)).json() == SUCCESS
    assert (await stored_one(services, new_app.app.id))["time"] == T0


# --- batch -------------------------------------------------------------------------------------


async def test_batch_context_is_merged_into_each_message_and_the_message_wins(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "context": {
            "library": {"name": "analytics-node", "version": "2.1.0"},
            "locale": "en-US",
            "ip": "192.0.2.1",
        },
        "integrations": {"All": True},
        "batch": [
            {"type": "track", "event": "a", "userId": "u1", "timestamp": iso(T0)},
            {
                "type": "page",
                "name": "Home",
                "userId": "u1",
                "timestamp": iso(T0 + timedelta(seconds=1)),
                "context": {"locale": "de-DE", "page": {"url": "https://example.com/"}},
                "integrations": {"Mixpanel": False},
            },
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"plan": "pro"},
                "timestamp": iso(T0 + timedelta(seconds=2)),
                "context": "not an object",
            },
        ],
    }
    assert (await post(client, "batch", body)).json() == SUCCESS
    events = await stored_by_name(services, new_app.app.id)
    track, page, identify = events["a"], events["page.visit"], events["identity.identify"]
    assert (track["locale"], track["ip"], track["sdk_name"]) == (
        "en-US",
        "192.0.2.1",
        "analytics-node",
    )
    assert (page["locale"], page["ip"], page["sdk_version"]) == ("de-DE", "192.0.2.1", "2.1.0")
    assert page["url"] == "https://example.com/"
    assert identify["locale"] == "en-US"
    assert identify["properties"] == {"plan": "pro"}


async def test_a_batch_of_every_call_type(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    messages = [
        {"type": "track", "event": "Clicked", "anonymousId": "a1"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"name": "Ann"}},
        {"type": "page", "name": "Home", "userId": "u1"},
        {"type": "screen", "name": "Feed", "userId": "u1"},
        {"type": "group", "groupId": 77, "userId": "u1", "traits": {"name": "Acme"}},
        {"type": "alias", "previousId": "old-1", "userId": "u1"},
    ]
    stamped = [{**m, "timestamp": iso(T0 + timedelta(seconds=i))} for i, m in enumerate(messages)]
    assert (await post(client, "batch", {"writeKey": key, "batch": stamped})).json() == SUCCESS
    events = await stored_by_name(services, new_app.app.id)
    assert set(events) == {
        "Clicked",
        "identity.identify",
        "page.visit",
        "screen.view",
        "identity.group",
        "identity.link",
    }
    assert events["identity.group"]["properties"] == {"groupId": "77", "traits": {"name": "Acme"}}
    assert events["identity.link"]["properties"] == {"previous_id": "old-1"}
    internal = {name for name, e in events.items() if e["internal"]}
    assert internal == {"identity.identify", "identity.group", "identity.link"}


async def test_an_empty_batch_is_success(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await post(client, "batch", {"writeKey": new_app.app.app_key, "batch": []})
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert count_events(services) == 0


async def test_a_gzipped_batch_is_accepted(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """Segment's libraries' ``gzip`` option: the body is gzipped, Content-Encoding says so."""
    body = {"batch": [{"type": "track", "event": "zipped", "userId": "u1"}]}
    headers = {**basic(new_app.app.app_key), "Content-Encoding": "gzip"}
    headers["Content-Type"] = "application/json"
    response = await client.post(
        "/v1/batch", content=gzip.compress(json.dumps(body).encode()), headers=headers
    )
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert (await stored_one(services, new_app.app.id))["name"] == "zipped"


# --- identity ----------------------------------------------------------------------------------


async def test_alias_links_the_previous_id_to_the_user_for_reads_by_user(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    app_id = new_app.app.id
    before = {"writeKey": key, "anonymousId": "anon-77", "event": "Viewed Pricing"}
    after = {"writeKey": key, "userId": "user-77", "event": "Upgraded"}
    other = {"writeKey": key, "userId": "someone-else", "event": "Upgraded"}
    for body in (before, after, other):
        assert (await post(client, "track", body)).json() == SUCCESS
    by_user = await stored(services, app_id, user="user-77")
    assert {e["name"] for e in by_user} == {"Upgraded"}

    alias = {"writeKey": key, "previousId": "anon-77", "userId": "user-77"}
    assert (await post(client, "alias", alias)).json() == SUCCESS
    for user in ("user-77", "anon-77"):
        events = await stored(services, app_id, user=user)
        assert sorted(e["name"] for e in events) == [
            "Upgraded",
            "Viewed Pricing",
            "identity.link",
        ], user
        assert {e["user_id"] for e in events if e["name"] == "Upgraded"} == {"user-77"}


async def test_identify_with_both_ids_links_the_anonymous_history(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    await post(client, "track", {"writeKey": key, "anonymousId": "a-9", "event": "Browsed"})
    identify = {"writeKey": key, "anonymousId": "a-9", "userId": "u-9", "traits": {"plan": "pro"}}
    assert (await post(client, "identify", identify)).json() == SUCCESS
    events = await stored(services, new_app.app.id, user="u-9")
    assert sorted(e["name"] for e in events) == ["Browsed", "identity.identify"]


# --- analytics.js: short paths, text/plain, its body shape -------------------------------------


@pytest.mark.parametrize(("short", "call"), sorted(SHORT.items()))
async def test_each_short_path_takes_its_call_as_text_plain(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, short: str, call: str
) -> None:
    fields: dict[str, Any] = {
        "track": {"event": "Clicked", "properties": {"button": "buy"}},
        "identify": {"userId": "u-1", "traits": {"plan": "pro"}},
        "page": {"name": "Home", "properties": {"title": "Home"}},
        "screen": {"name": "Feed", "properties": {"tab": "new"}},
        "group": {"groupId": "g-1", "traits": {"name": "Acme"}},
        "alias": {"userId": "u-1", "previousId": "old-1"},
    }[call]
    key = new_app.app.app_key
    response = await post_text(client, f"/v1/{short}", ajs_message(key, call, 0, **fields), key)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    assert response.headers["access-control-allow-origin"] == "*"
    event = await stored_one(services, new_app.app.id)
    assert (
        event["name"]
        == {
            "track": "Clicked",
            "identify": "identity.identify",
            "page": "page.visit",
            "screen": "screen.view",
            "group": "identity.group",
            "alias": "identity.link",
        }[call]
    )
    assert event["protocol"] == "segment"
    assert (event["sdk_name"], event["sdk_version"]) == ("analytics.js", "npm:next-1.84.3")
    assert event["id"].startswith("ajs-next-")
    assert event["device_id"] == "5c1e2a7b-7f1d-4a4e-9b0e-3f2a1c0d9e8f"


async def test_a_short_path_goes_by_the_path_not_the_body_type(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    body = ajs_message(key, "page", 0, event="Clicked")
    assert (await post_text(client, "/v1/t", body, key)).json() == SUCCESS
    assert (await stored_one(services, new_app.app.id))["name"] == "Clicked"


async def test_analytics_js_track_page_and_identify_map_as_on_the_long_paths(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The bodies analytics.js sends, in full: its ``_metadata``, ``integrations`` and
    ``userAgentData`` are ignored, ``userId: null`` counts as missing, ``sentAt`` corrects the
    time, and a page's properties carry the page context analytics.js copies into them."""
    key = new_app.app.app_key
    page_properties = {
        "path": "/checkout",
        "referrer": "https://search.example/",
        "search": "?step=2",
        "title": "Checkout",
        "url": "https://shop.example/checkout?step=2",
        "name": "Checkout",
    }
    track = ajs_message(key, "track", 0, event="Order Completed", properties={"total": 30.5})
    page = ajs_message(key, "page", 1, name="Checkout", properties=page_properties)
    identify = ajs_message(key, "identify", 2, userId="user-7", traits={"email": "a@example.com"})
    for path, body in (("/v1/t", track), ("/v1/p", page), ("/v1/i", identify)):
        response = await post_text(client, path, body, key)
        assert (response.status_code, response.json()) == (200, SUCCESS), path
    events = await stored_by_name(services, new_app.app.id)
    assert set(events) == {"Order Completed", "page.visit", "identity.identify"}
    anonymous = track["anonymousId"]
    order = events["Order Completed"]
    assert (order["user_id"], order["device_id"]) == (None, anonymous)
    assert order["properties"] == {"total": 30.5}
    assert order["id"] == track["messageId"]
    assert order["time"] == order["received_at"] - timedelta(milliseconds=5)
    assert (order["url"], order["referrer"]) == (
        "https://shop.example/checkout?step=2",
        "https://search.example/",
    )
    assert (order["locale"], order["timezone"]) == ("en-US", "Europe/Amsterdam")
    assert order["user_agent"] == AJS_UA
    visit = events["page.visit"]
    assert visit["label"] == "Checkout"
    assert visit["properties"] == page_properties
    assert visit["url"] == "https://shop.example/checkout?step=2"
    who = events["identity.identify"]
    assert (who["user_id"], who["device_id"]) == ("user-7", anonymous)
    assert who["properties"] == {"email": "a@example.com"}
    assert failed(services) == []
    # identify with both ids links the anonymous history to the user.
    by_user = await stored(services, new_app.app.id, user="user-7")
    assert {e["name"] for e in by_user} == set(events)


async def test_the_analytics_js_batch_on_the_short_path(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The ``batching`` delivery strategy: ``{writeKey, batch, sentAt}`` to ``/v1/b``, each message
    without its own ``sentAt``."""
    key = new_app.app.app_key
    messages = [
        ajs_message(key, "page", 0, name="Home", properties={"url": "https://shop.example/"}),
        ajs_message(key, "track", 1, event="Added To Cart", properties={"sku": "A-1"}),
        ajs_message(key, "identify", 2, userId="user-8", traits={"plan": "pro"}),
    ]
    for message in messages:
        del message["sentAt"]
    body = {"writeKey": key, "batch": messages, "sentAt": iso(T0 + timedelta(seconds=3))}
    response = await post_text(client, "/v1/b", body, key)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    events = await stored_by_name(services, new_app.app.id)
    assert set(events) == {"page.visit", "Added To Cart", "identity.identify"}
    assert events["Added To Cart"]["properties"] == {"sku": "A-1"}
    # One sentAt for the whole batch: the messages keep their spacing.
    assert events["Added To Cart"]["time"] == events["page.visit"]["time"] + timedelta(seconds=1)
    assert events["identity.identify"]["time"] == events["identity.identify"]["received_at"] - (
        timedelta(seconds=1)
    )


async def test_short_paths_refuse_as_the_long_ones(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    error(await client.post("/v1/t", content=b'{"event":'), 400, "invalid_json")
    error(
        await post(client, "b", {"batch": [{"type": "track", "event": "x"}]}),
        401,
        "missing_app_key",
    )
    error(await post(client, "i", {"userId": "u", "writeKey": "nope"}), 401, "unknown_app_key")
    response = await client.get("/v1/p")
    error(response, 405, "method_not_allowed")
    body = {"writeKey": new_app.app.app_key, "event": "x"}  # neither userId nor anonymousId
    assert rejected_codes(await post(client, "t", body)) == [(0, "missing_identity")]
    assert count_events(services) == 0


# --- traits --------------------------------------------------------------------------------------


async def test_identify_reads_context_traits_when_traits_are_absent_or_empty(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    only_context = {
        "writeKey": key,
        "userId": "u-1",
        "context": {"traits": {"email": "one@example.com"}},
        "timestamp": iso(T0),
    }
    empty_top = {
        "writeKey": key,
        "userId": "u-2",
        "traits": {},
        "context": {"traits": {"email": "two@example.com"}},
        "timestamp": iso(T0 + timedelta(seconds=1)),
    }
    both = {
        "writeKey": key,
        "userId": "u-3",
        "traits": {"email": "three@example.com"},
        "context": {"traits": {"email": "old@example.com", "plan": "free"}},
        "timestamp": iso(T0 + timedelta(seconds=2)),
    }
    for body in (only_context, empty_top, both):
        assert (await post(client, "identify", body)).json() == SUCCESS
    stored_traits = {e["user_id"]: e["properties"] for e in await stored(services, new_app.app.id)}
    assert stored_traits == {
        "u-1": {"email": "one@example.com"},
        "u-2": {"email": "two@example.com"},
        "u-3": {"email": "three@example.com"},  # the top-level traits win, whole
    }


async def test_identify_in_a_batch_reads_the_batch_context_traits(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "writeKey": new_app.app.app_key,
        "context": {"traits": {"plan": "pro"}},
        "batch": [{"type": "identify", "userId": "u-1"}],
    }
    assert (await post(client, "batch", body)).json() == SUCCESS
    assert (await stored_one(services, new_app.app.id))["properties"] == {"plan": "pro"}


async def test_context_traits_of_other_calls_are_not_stored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """A track, page or screen keeps its own properties; ``context.traits`` (the user's traits,
    sent when the caller passes them) is context, and only identify stores traits."""
    key = new_app.app.app_key
    context = {"traits": {"email": "a@example.com"}, "locale": "en-GB"}
    calls = [
        ("track", {"event": "Clicked", "properties": {"button": "buy"}}),
        ("page", {"name": "Home", "properties": {"title": "Home"}}),
        ("screen", {"name": "Feed"}),
    ]
    for seq, (call, fields) in enumerate(calls):
        body = {
            "writeKey": key,
            "anonymousId": "a-1",
            "context": context,
            "timestamp": iso(T0 + timedelta(seconds=seq)),
            **fields,
        }
        assert (await post(client, call, body)).json() == SUCCESS
    events = await stored_by_name(services, new_app.app.id)
    assert {name: e["properties"] for name, e in events.items()} == {
        "Clicked": {"button": "buy"},
        "page.visit": {"title": "Home"},
        "screen.view": {},
    }
    assert {e["locale"] for e in events.values()} == {"en-GB"}


async def test_context_traits_of_the_wrong_type_are_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "userId": "u-1", "context": {"traits": ["x"]}}
    assert (await post(client, "identify", body)).json() == SUCCESS
    assert (await stored_one(services, new_app.app.id))["properties"] == {}


# --- refused requests --------------------------------------------------------------------------


async def test_invalid_json_is_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    for call in ("track", "batch"):
        response = await client.post(
            f"/v1/{call}",
            content=b'{"userId": "u1", "event": ',
            headers={**basic(new_app.app.app_key), "Content-Type": "application/json"},
        )
        error(response, 400, "invalid_json")
    # With the write key in the header, the unreadable body is kept as a failed request.
    assert [r[0] for r in failed(services)] == ["invalid_body", "invalid_body"]


async def test_a_body_of_the_wrong_shape_is_refused(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    headers = basic(new_app.app.app_key)
    error(await post(client, "track", [{"userId": "u1"}], headers=headers), 400, "invalid_body")
    error(await post(client, "batch", {"messages": []}, headers=headers), 400, "invalid_body")
    error(
        await post(client, "batch", {"batch": {"type": "track"}}, headers=headers),
        400,
        "invalid_body",
    )


async def test_a_batch_over_500_kb_is_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    message = {"type": "track", "event": "x", "userId": "u1", "properties": {"pad": "p" * 20_000}}
    body = {"writeKey": new_app.app.app_key, "batch": [message] * 26}  # about 520 KB
    assert len(json.dumps(body)) > 500 * 1024
    error(await post(client, "batch", body), 400, "batch_too_large")
    assert count_events(services) == 0
    [(reason, why, payload, _)] = failed(services)  # kept for the app its writeKey names
    assert reason == "invalid_body"
    assert str(500 * 1024) in why
    assert len(payload) > 500 * 1024
    # A batch under the limit with the same messages goes through.
    body["batch"] = [message] * 24
    assert (await post(client, "batch", body)).json() == SUCCESS
    assert count_events(services) == 24


async def test_a_batch_of_more_than_2500_messages_is_refused_whole(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    message = {"type": "track", "event": "x", "userId": "u1"}
    body = {"writeKey": new_app.app.app_key, "batch": [message] * 2501}
    error(await post(client, "batch", body), 400, "too_many_events")
    assert count_events(services) == 0
    [(reason, _, payload, _)] = failed(services)  # the request is kept for its app
    assert reason == "too_many_events"
    assert len(json.loads(payload)["batch"]) == 2501
    body["batch"] = [message] * 2500
    assert (await post(client, "batch", body)).json() == SUCCESS
    assert count_events(services) == 2500


async def test_a_message_over_32_kb_is_refused_alone_or_rejected_in_a_batch(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    big = {"type": "track", "event": "big", "userId": "u1", "properties": {"pad": "p" * 33_000}}
    key = new_app.app.app_key
    error(await post(client, "track", {**big, "writeKey": key}), 400, "event_too_large")
    batch = {"writeKey": key, "batch": [big, {"type": "track", "event": "small", "userId": "u1"}]}
    response = await post(client, "batch", batch)
    assert rejected_codes(response) == [(0, "event_too_large")]
    assert set(await stored_by_name(services, new_app.app.id)) == {"small"}
    assert [r[0] for r in failed(services)] == ["event_too_large", "event_too_large"]


async def test_a_body_over_the_server_limit_is_refused_with_400(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = {"writeKey": new_app.app.app_key, "batch": [], "pad": "p" * 1_100_000}
    error(await post(client, "batch", body), 400, "body_too_large")


@pytest.mark.parametrize("encoding", ["br", "gzip"])
async def test_a_body_that_cannot_be_decompressed_is_refused(
    client: httpx.AsyncClient, new_app: NewApp, encoding: str
) -> None:
    headers = {**basic(new_app.app.app_key), "Content-Encoding": encoding}
    response = await client.post("/v1/track", content=b'{"userId":"u1"}', headers=headers)
    error(response, 400, "invalid_body")
