"""Countly write API (``/i``, ``/i/bulk``, ``/o/sdk``), in-process against real DuckDB and SQLite.

Written from the protocol reference (``countly.md`` sections 1, 4 and 5) and the Countly-to-Tally
mapping, not from the adapter. Countly's own write tests (``test/3.api.write``) are ported where
they apply; session and event checks look at the stored records instead of Countly's aggregates.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from tally.adapters.countly import MISSING_KEYS
from tally.catalog import Catalog, NewApp
from tally.catalog.schema import apps
from tally.http.services import Services
from tally.store.query import EventQuery

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
SUCCESS = {"result": "Success"}
DUPLICATE = {"result": "Success", "info": "Request ignored: Duplicate request"}
MISSING_KEY_OR_DEVICE = {"result": 'Missing parameter "app_key" or "device_id"'}
NO_APP = {"result": "App does not exist"}
NULL_DEVICE = "00000000-0000-0000-0000-000000000000"
CLIENT_IP = "198.51.100.7"  # the ASGI client address set in conftest.py
DEVICE = "2f5a6c1e-5b1d-4a0e-9c3f-7d1e2a3b4c5d"

# 2026-03-01T10:00:00Z, a Sunday: in the past, so never clamped as a future time.
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def secs(moment: datetime) -> int:
    return int(moment.timestamp())


def millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


# Countly's "Event Tracking" doc, verbatim, including its missing backslash after the tz line.
SEED_CURL = r"""curl --request POST \
--url 'https://YOUR_SERVER/i' \
--header 'Accept: application/json' \
--header 'Content-Type: application/x-www-form-urlencoded' \
--data 'app_key=APP_KEY' \
--data 'device_id=DEVICE_ID' \
--data 'timestamp=TIMESTAMP' \
--data 'hour=HOUR' \
--data 'dow=DAYOFTHEWEEK' \
--data 'tz=TIMEZONE'
--data 'events=[{"key":"EVENT_NAME","count":EVENT_COUNT,"sum":EVENT_SUM,"dur":EVENT_DUR,"segmentation":EVENT_SEGMENTATION}]'"""  # noqa: E501

# The same doc's web SDK example: Countly.q.push(['add_event', <this object>]);
SEED_EVENT = """{
  "key": "item purchase",
  "count": 1,
  "sum": 0,
  "dur": 0,
  "segmentation": {
    "item_name": "rolex"
  }
}"""


# --- helpers ---------------------------------------------------------------------------------


async def stored(services: Services, app_id: str) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=app_id, limit=1000))


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
    db = services.store.loaded()  # type: ignore[attr-defined]
    return db.conn.execute(
        "SELECT reason, message, payload FROM failed_events ORDER BY event_index"
    ).fetchall()


def row_counts(services: Services) -> tuple[int, int]:
    """(rows in events, rows in failed_events), over every app."""
    db = services.store.loaded()  # type: ignore[attr-defined]
    events = db.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    failures = db.conn.execute("SELECT count(*) FROM failed_events").fetchone()[0]
    return events, failures


def base(new_app: NewApp, **extra: Any) -> dict[str, Any]:
    """The parameters every request carries, plus ``extra``."""
    return {"app_key": new_app.app.app_key, "device_id": DEVICE, **extra}


def form(params: dict[str, Any]) -> dict[str, str]:
    """Form/query values: JSON-ish params as JSON strings, the rest as text."""
    return {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in params.items()
    }


def encode_uri_component(value: str) -> str:
    return quote(value, safe="-_.!~*'()")


def web_sdk_body(params: dict[str, str]) -> bytes:
    """The body countly-sdk-web sends: sorted ``k=encodeURIComponent(v)`` pairs joined by ``&``."""
    return "&".join(f"{k}={encode_uri_component(params[k])}" for k in sorted(params)).encode()


async def post_form(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> httpx.Response:
    return await client.post(path, data=form(params))


# --- transport -------------------------------------------------------------------------------


async def test_get_with_params_in_the_query_string_stores_the_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, timestamp=secs(T0), events=[{"key": "signup"}])
    response = await client.get("/i", params=form(params))
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["device_id"], event["time"]) == ("signup", DEVICE, T0)
    assert event["protocol"] == "countly"


async def test_form_post_stores_the_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, timestamp=secs(T0), events=[{"key": "signup", "count": 2}])
    response = await post_form(client, "/i", params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["count"], event["device_id"]) == ("signup", 2, DEVICE)


async def test_json_post_takes_native_values_for_json_params(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = base(
        new_app,
        timestamp=secs(T0),
        tz=120,
        metrics={"_os": "Linux", "_locale": "fr-FR"},
        events=[{"key": "signup", "segmentation": {"plan": "pro"}}],
    )
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["properties"], event["time"]) == ("signup", {"plan": "pro"}, T0)
    assert (event["os"], event["locale"], event["timezone"]) == ("Linux", "fr-FR", "+02:00")


async def test_json_post_also_accepts_json_strings_for_json_params(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = base(
        new_app,
        timestamp=str(secs(T0)),
        metrics=json.dumps({"_os": "Linux"}),
        events=json.dumps([{"key": "signup"}]),
    )
    response = await client.post("/i", json=body)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["os"], event["time"]) == ("signup", "Linux", T0)


async def test_post_with_an_empty_body_reads_the_query_string(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # countly-sdk-web outside a browser with force_post=false: POST, params in the query string.
    params = base(new_app, timestamp=secs(T0), events=[{"key": "signup"}])
    response = await client.post("/i", params=form(params), content=b"")
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["device_id"]) == ("signup", DEVICE)


async def test_the_body_wins_over_the_query_string(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # Reference 1.1: "Query string is copied into params.qstring first, then body fields over it".
    query = form(
        {
            "app_key": new_app.app.app_key,
            "device_id": "query-device",
            "events": [{"key": "from_query"}],
        }
    )
    body = form({"device_id": "body-device", "events": [{"key": "from_body"}]})
    response = await client.post("/i", params=query, data=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["device_id"]) == ("from_body", "body-device")


async def test_unparseable_metrics_are_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = {**form(base(new_app, events=[{"key": "signup"}])), "metrics": '{"_ua": "oops'}
    response = await client.post("/i", data=params, headers={"user-agent": "curl/8.5.0"})
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["user_agent"]) == ("signup", "curl/8.5.0")


async def test_unparseable_events_are_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = {**form(base(new_app)), "events": '[{"key": "signup"'}
    response = await client.post("/i", data=params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert await stored(services, new_app.app.id) == []


def _header_cases(app_key: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    ok = {"app_key": app_key, "device_id": DEVICE}
    return {
        "success": ("GET", "/i", {"params": ok}),
        "missing parameter": ("GET", "/i", {}),
        "unknown app": ("POST", "/i", {"data": {"app_key": "nope", "device_id": DEVICE}}),
        "ignored device": ("GET", "/i", {"params": {**ok, "device_id": NULL_DEVICE}}),
        "method not allowed": ("PUT", "/i", {"data": ok}),
        "bulk success": ("POST", "/i/bulk", {"data": {"app_key": app_key, "requests": "[]"}}),
        "bulk missing requests": ("POST", "/i/bulk", {}),
        "sdk settings": ("GET", "/o/sdk", {"params": {**ok, "method": "sc"}}),
        "sdk unknown app": (
            "GET",
            "/o/sdk",
            {"params": {"method": "sc", "app_key": "nope", "device_id": DEVICE}},
        ),
    }


@pytest.mark.parametrize("case", list(_header_cases("k")))
async def test_every_response_is_json_with_cors(
    client: httpx.AsyncClient, new_app: NewApp, case: str
) -> None:
    method, path, kwargs = _header_cases(new_app.app.app_key)[case]
    response = await client.request(method, path, **kwargs)
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    assert response.headers["access-control-allow-origin"] == "*"
    assert isinstance(response.json(), dict)


async def test_options_answers_the_cors_preflight(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/i",
        headers={
            "origin": "https://shop.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "POST, GET, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "countly-token, Content-Type"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, method: str
) -> None:
    params = form(base(new_app, events=[{"key": "signup"}]))
    response = await client.request(method, "/i", params=params)
    assert response.status_code == 405
    assert response.json() == {"result": "Method not allowed"}
    assert row_counts(services) == (0, 0)


# --- refused requests (port of 1.fail.write.app.js and 9.nosql.injection.js) ----------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("present", [(), ("device_id",), ("app_key",)])
async def test_a_missing_app_key_or_device_id_is_refused(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    method: str,
    present: tuple[str, ...],
) -> None:
    params = {k: v for k, v in base(new_app).items() if k in present}
    params["events"] = json.dumps([{"key": "signup"}])
    if method == "GET":
        response = await client.get("/i", params=params)
    else:
        response = await client.post("/i", data=params)
    assert response.status_code == 400
    assert response.json() == MISSING_KEY_OR_DEVICE
    assert row_counts(services)[0] == 0  # no event stored
    failed = (
        services.store.loaded()
        .conn.execute(  # type: ignore[attr-defined]
            "SELECT reason, message, payload FROM failed_events"
        )
        .fetchall()
    )
    if "app_key" in present:
        # Tally keeps a refused request as a failed event whenever it names a known app,
        # whatever the transport, with the data as sent (query string or body).
        [(reason, message, payload)] = failed
        assert (reason, message) == ("invalid_body", MISSING_KEY_OR_DEVICE["result"])
        assert b"signup" in payload and new_app.app.app_key.encode() in payload
    else:
        assert failed == []


async def test_the_all_zero_device_id_is_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, device_id=NULL_DEVICE, begin_session=1, events=[{"key": "signup"}])
    response = await post_form(client, "/i", params)
    assert response.status_code == 200
    assert response.json() == {"result": "Ignoring device_id"}
    assert row_counts(services) == (0, 0)


async def test_an_unknown_app_key_is_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = {"app_key": "no-such-key", "device_id": DEVICE, "events": [{"key": "signup"}]}
    response = await post_form(client, "/i", params)
    assert response.status_code == 400
    assert response.json() == NO_APP
    assert row_counts(services) == (0, 0)


INJECTED_KEYS = {
    "regex": {"$regex": ".*"},
    "ne": {"$ne": None},
    "gt": {"$gt": ""},
    "array": "ARRAY",  # replaced by [the real app key]
}


@pytest.mark.parametrize("injection", list(INJECTED_KEYS))
async def test_an_app_key_object_or_array_in_a_json_post_is_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, injection: str
) -> None:
    key = INJECTED_KEYS[injection]
    if key == "ARRAY":
        key = [new_app.app.app_key]
    body = {"app_key": key, "device_id": DEVICE, "begin_session": 1, "events": [{"key": "x"}]}
    response = await client.post("/i", json=body)
    assert response.status_code == 400
    assert response.json() == NO_APP
    assert row_counts(services) == (0, 0)


@pytest.mark.parametrize("injection", list(INJECTED_KEYS))
async def test_an_app_key_object_or_array_inside_bulk_writes_nothing(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, injection: str
) -> None:
    key = INJECTED_KEYS[injection]
    if key == "ARRAY":
        key = [new_app.app.app_key]
    item = {"app_key": key, "device_id": DEVICE, "begin_session": 1, "events": [{"key": "x"}]}
    response = await client.post("/i/bulk", json={"requests": [item]})
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert row_counts(services) == (0, 0)


async def test_a_numeric_device_id_is_stored_as_a_string(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"app_key": new_app.app.app_key, "device_id": 12345, "events": [{"key": "signup"}]}
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["device_id"] == "12345"


async def test_a_numeric_app_key_is_looked_up_as_a_string(
    client: httpx.AsyncClient, services: Services, catalog: Catalog, new_app: NewApp
) -> None:
    with catalog.engine.begin() as conn:
        conn.execute(sa.update(apps).where(apps.c.id == new_app.app.id).values(app_key="424242"))
    body = {"app_key": 424242, "device_id": DEVICE, "events": [{"key": "signup"}]}
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["device_id"]) == ("signup", DEVICE)


# --- duplicate requests and event ids -------------------------------------------------------


async def test_an_identical_retry_is_ignored_as_a_duplicate_request(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, timestamp=millis(T0), events=[{"key": "signup"}])
    first = await post_form(client, "/i", {**params, "rr": 3})
    assert first.status_code == 200
    assert first.json() == SUCCESS
    # rr (queue length) and checksums are left out of the comparison.
    retry = await post_form(client, "/i", {**params, "rr": 1, "checksum256": "ABCDEF0123"})
    assert retry.status_code == 200
    assert retry.json() == DUPLICATE
    again = await post_form(client, "/i", params)
    assert again.status_code == 200
    assert again.json() == DUPLICATE
    assert len(await stored(services, new_app.app.id)) == 1


async def test_the_same_events_with_a_new_timestamp_are_a_new_request(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    events = [{"key": "signup"}]
    first = await post_form(client, "/i", base(new_app, timestamp=secs(T0), events=events))
    later = T0 + timedelta(minutes=1)
    second = await post_form(client, "/i", base(new_app, timestamp=secs(later), events=events))
    assert first.json() == SUCCESS
    assert second.json() == SUCCESS
    times = sorted(e["time"] for e in await stored(services, new_app.app.id))
    assert times == [T0, later]


async def test_a_client_event_id_is_the_event_id_and_is_stored_once(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    purchase = {"key": "purchase", "id": "evt-1", "timestamp": millis(T0)}
    first = await post_form(client, "/i", base(new_app, timestamp=secs(T0), events=[purchase]))
    assert first.json() == SUCCESS
    retry_events = [purchase, {"key": "purchase", "id": "evt-2", "timestamp": millis(T0)}]
    later = secs(T0 + timedelta(minutes=1))
    second = await post_form(client, "/i", base(new_app, timestamp=later, events=retry_events))
    assert second.status_code == 200
    assert second.json() == SUCCESS
    ids = sorted(e["id"] for e in await stored(services, new_app.app.id))
    assert ids == ["evt-1", "evt-2"]


# --- the seed document: curl example and the `item purchase` event ---------------------------


async def test_the_seed_curl_form_post_is_stored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    values = {
        "YOUR_SERVER": "tally.test",
        "APP_KEY": new_app.app.app_key,
        "DEVICE_ID": DEVICE,
        "TIMESTAMP": str(secs(T0)),
        "HOUR": "10",
        "DAYOFTHEWEEK": "0",
        "TIMEZONE": "120",
        "EVENT_NAME": "item purchase",
        "EVENT_COUNT": "1",
        "EVENT_SUM": "0",
        "EVENT_DUR": "0",
        "EVENT_SEGMENTATION": '{"item_name":"rolex"}',
    }
    placeholder = re.compile(r"\b(" + "|".join(sorted(values, key=len, reverse=True)) + r")\b")
    command = placeholder.sub(lambda m: values[m.group(1)], SEED_CURL)
    url = re.search(r"--url '([^']*)'", command).group(1)  # type: ignore[union-attr]
    headers = dict(h.split(": ", 1) for h in re.findall(r"--header '([^']*)'", command))
    # curl joins its --data arguments with "&" and sends them as they are (no URL-encoding).
    body = "&".join(re.findall(r"--data '([^']*)'", command)).encode()
    assert body.endswith(b'"segmentation":{"item_name":"rolex"}}]')

    response = await client.post(url.replace("https://", "http://"), content=body, headers=headers)

    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "item purchase"
    assert event["protocol"] == "countly"
    assert (event["device_id"], event["user_id"]) == (DEVICE, None)
    assert (event["count"], event["sum"], event["dur"]) == (1, None, None)
    assert event["properties"] == {"item_name": "rolex"}
    assert event["time"] == T0
    assert event["timezone"] == "+02:00"
    assert event["ip"] == CLIENT_IP
    assert event["internal"] is False


async def test_the_seed_item_purchase_event_sent_by_the_web_sdk_is_stored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    event_time = T0 + timedelta(seconds=5, milliseconds=250)
    item = json.loads(SEED_EVENT)
    item.update(timestamp=millis(event_time), hour=10, dow=0, id="1f8a9c2e7b3d4e5f6a7b8c9d")
    params = {
        "app_key": new_app.app.app_key,
        "device_id": DEVICE,
        "sdk_name": "javascript_native_web",
        "sdk_version": "26.1.2",
        "t": "1",
        "av": "0.0",
        "metrics": json.dumps({"_ua": ua}),
        "timestamp": str(millis(T0 + timedelta(seconds=6))),
        "hour": "10",
        "dow": "0",
        "tz": "60",
        "events": json.dumps([item]),
        "rr": "0",
    }
    response = await client.post(
        "/i",
        content=web_sdk_body(params),
        headers={"content-type": "application/x-www-form-urlencoded", "user-agent": ua},
    )
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "item purchase"
    assert event["id"] == "1f8a9c2e7b3d4e5f6a7b8c9d"
    assert (event["count"], event["sum"], event["dur"]) == (1, None, None)
    assert event["properties"] == {"item_name": "rolex"}
    assert event["time"] == event_time
    assert (event["device_id"], event["user_id"]) == (DEVICE, None)
    assert (event["sdk_name"], event["sdk_version"]) == ("javascript_native_web", "26.1.2")
    assert (event["user_agent"], event["timezone"]) == (ua, "+01:00")
    assert event["protocol"] == "countly"


# --- event fields -----------------------------------------------------------------------------


async def test_count_is_the_integer_part_or_1(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    cases = {"missing": None, "zero": 0, "string": "3", "fraction": 2.7, "text": "abc", "five": 5}
    events = [
        {"key": key} if value is None else {"key": key, "count": value}
        for key, value in cases.items()
    ]
    response = await post_form(client, "/i", base(new_app, events=events))
    assert response.json() == SUCCESS
    counts = {n: e["count"] for n, e in (await stored_by_name(services, new_app.app.id)).items()}
    assert counts == {"missing": 1, "zero": 1, "string": 3, "fraction": 2, "text": 1, "five": 5}


async def test_sum_is_a_float_rounded_to_5_decimals_or_none(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    cases = {
        "missing": None,
        "zero": 0,
        "a": 2.97,
        "b": 1.03,
        "string": "2.5",
        "long": 1.234567,
        "text": "abc",
        "int": 120,
    }
    events = [
        {"key": key} if value is None else {"key": key, "sum": value}
        for key, value in cases.items()
    ]
    response = await post_form(client, "/i", base(new_app, events=events))
    assert response.json() == SUCCESS
    sums = {n: e["sum"] for n, e in (await stored_by_name(services, new_app.app.id)).items()}
    assert sums == {
        "missing": None,
        "zero": None,
        "a": 2.97,
        "b": 1.03,
        "string": 2.5,
        "long": 1.23457,
        "text": None,
        "int": 120.0,
    }


async def test_dur_is_a_float_or_none(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    cases = {"missing": None, "zero": 0, "float": 3.5, "string": "12", "text": "abc"}
    events = [
        {"key": key} if value is None else {"key": key, "dur": value}
        for key, value in cases.items()
    ]
    response = await post_form(client, "/i", base(new_app, events=events))
    assert response.json() == SUCCESS
    durs = {n: e["dur"] for n, e in (await stored_by_name(services, new_app.app.id)).items()}
    assert durs == {"missing": None, "zero": None, "float": 3.5, "string": 12.0, "text": None}


@pytest.mark.parametrize("item", [{"count": 2}, {"key": "", "count": 2}], ids=["none", "empty"])
async def test_an_event_without_key_is_kept_as_failed_and_the_reply_is_success(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, item: dict
) -> None:
    params = base(new_app, events=[item, {"key": "signup"}])
    response = await post_form(client, "/i", params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert [e["name"] for e in await stored(services, new_app.app.id)] == ["signup"]
    [(reason, _message, payload)] = failed(services)
    assert reason == "missing_name"
    assert json.loads(payload) == item


async def test_a_key_of_128_characters_or_more_is_kept_as_failed(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    ok, too_long = "k" * 127, "k" * 128
    params = base(new_app, events=[{"key": ok}, {"key": too_long}])
    response = await post_form(client, "/i", params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert [e["name"] for e in await stored(services, new_app.app.id)] == [ok]
    assert [row[0] for row in failed(services)] == ["invalid_name"]


async def test_an_empty_events_array_stores_nothing(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await post_form(client, "/i", base(new_app, events=[]))
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert row_counts(services) == (0, 0)


async def test_segmentation_becomes_properties_with_json_types_kept(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    segmentation = {
        "item_name": "rolex",
        "n": 3,
        "price": 9.5,
        "gift": True,
        "note": None,
        "meta": {"a": 1},
    }
    params = base(new_app, events=[{"key": "item purchase", "segmentation": segmentation}])
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["properties"] == segmentation


async def test_segmentation_arrays_are_cut_to_their_first_10_items(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    segmentation = {"tags": [f"t{i}" for i in range(15)], "short": [1, 2]}
    params = base(new_app, events=[{"key": "tagged", "segmentation": segmentation}])
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["properties"] == {"tags": [f"t{i}" for i in range(10)], "short": [1, 2]}


@pytest.mark.parametrize("unit", ["seconds", "milliseconds"])
async def test_the_event_timestamp_is_the_event_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, unit: str
) -> None:
    event_time = T0 - timedelta(hours=2) + timedelta(milliseconds=250 if unit != "seconds" else 0)
    stamp = secs(event_time) if unit == "seconds" else millis(event_time)
    params = base(new_app, timestamp=millis(T0), events=[{"key": "signup", "timestamp": stamp}])
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == event_time


@pytest.mark.parametrize("unit", ["seconds", "milliseconds"])
async def test_without_an_event_timestamp_the_request_timestamp_is_the_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, unit: str
) -> None:
    request_time = T0 + timedelta(milliseconds=250 if unit != "seconds" else 0)
    stamp = secs(request_time) if unit == "seconds" else millis(request_time)
    params = base(new_app, timestamp=stamp, events=[{"key": "signup"}])
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["time"] == request_time


async def test_without_any_timestamp_the_receipt_time_is_the_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    before = datetime.now(UTC)
    response = await post_form(client, "/i", base(new_app, events=[{"key": "signup"}]))
    after = datetime.now(UTC)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert before <= event["time"] <= after


@pytest.mark.parametrize("where", ["event", "request"])
async def test_a_future_time_is_clamped_to_the_receipt_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, where: str
) -> None:
    future = millis(datetime(2100, 1, 1, tzinfo=UTC))
    if where == "event":
        params = base(new_app, events=[{"key": "signup", "timestamp": future}])
    else:
        params = base(new_app, timestamp=future, events=[{"key": "signup"}])
    before = datetime.now(UTC)
    response = await post_form(client, "/i", params)
    after = datetime.now(UTC)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert before <= event["time"] <= after


async def test_a_page_view_becomes_a_view_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    segmentation = {
        "name": "/pricing",
        "visit": 1,
        "view": "https://shop.example/pricing",
        "domain": "shop.example",
        "start": 1,
    }
    view = {"key": "[CLY]_view", "count": 1, "segmentation": segmentation}
    response = await post_form(client, "/i", base(new_app, events=[view]))
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "view"
    assert event["properties"] == segmentation
    assert (event["url"], event["label"], event["dur"]) == (
        "https://shop.example/pricing",
        "/pricing",
        None,
    )


async def test_the_closing_view_event_carries_the_view_duration(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # The web SDK's second [CLY]_view for a page: only {name}, plus dur: the view's end.
    view = {"key": "[CLY]_view", "count": 1, "dur": 42, "segmentation": {"name": "/pricing"}}
    response = await post_form(client, "/i", base(new_app, events=[view]))
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["label"], event["dur"]) == ("view.end", "/pricing", 42.0)
    assert event["properties"] == {"name": "/pricing"}
    assert event["url"] is None


async def test_a_views_end_under_the_visits_id_is_not_a_resend(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The web SDK sends the time on a view under the visit's own event id."""
    visit = {"key": "[CLY]_view", "id": "v-1", "segmentation": {"name": "/a", "visit": 1}}
    end = {"key": "[CLY]_view", "id": "v-1", "dur": 7, "segmentation": {"name": "/a"}}
    for events in ([visit], [end], [end]):  # the end is resent once: stored once
        response = await post_form(client, "/i", base(new_app, events=events))
        assert response.status_code == 200
    by_name = await stored_by_name(services, new_app.app.id)
    assert set(by_name) == {"view", "view.end"}
    assert by_name["view"]["id"] == "v-1" and by_name["view"]["dur"] is None
    assert by_name["view.end"]["dur"] == 7.0
    assert by_name["view.end"]["properties"] == {"name": "/a", "view_id": "v-1"}
    assert len(await services.store.fetch_events(EventQuery(app_id=new_app.app.id))) == 2


async def test_other_cly_events_keep_their_name_and_are_internal(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    events = [
        {"key": "[CLY]_orientation", "segmentation": {"mode": "portrait"}},
        {"key": "[CLY]_action", "segmentation": {"type": "click", "x": 10, "y": 20}},
        {"key": "purchase"},
    ]
    response = await post_form(client, "/i", base(new_app, events=events))
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app.app.id)
    assert set(by_name) == {"[CLY]_orientation", "[CLY]_action", "purchase"}
    assert by_name["[CLY]_orientation"]["internal"] is True
    assert by_name["[CLY]_orientation"]["properties"] == {"mode": "portrait"}
    assert by_name["[CLY]_action"]["internal"] is True
    assert by_name["[CLY]_action"]["properties"] == {"type": "click", "x": 10, "y": 20}
    assert by_name["purchase"]["internal"] is False


async def test_request_context_from_metrics_and_params_applies_to_every_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    metrics = {
        "_ua": ua,
        "_locale": "de-DE",
        "_os": "iOS",
        "_device_type": "mobile",
        "_browser": "Safari",
    }
    params = base(
        new_app,
        metrics=metrics,
        sdk_name="javascript_native_web",
        sdk_version="26.1.2",
        ip_address="203.0.113.50",
        tz=120,
        events=[{"key": "a"}, {"key": "b"}],
    )
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    events = await stored(services, new_app.app.id)
    assert sorted(e["name"] for e in events) == ["a", "b"]
    for event in events:
        assert event["user_agent"] == ua
        assert (event["locale"], event["os"], event["device_type"], event["browser"]) == (
            "de-DE",
            "iOS",
            "mobile",
            "Safari",
        )
        assert (event["sdk_name"], event["sdk_version"]) == ("javascript_native_web", "26.1.2")
        assert (event["ip"], event["timezone"]) == ("203.0.113.50", "+02:00")
        assert (event["device_id"], event["user_id"]) == (DEVICE, None)


async def test_without_metrics_ua_or_ip_address_the_header_and_client_address_are_used(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    params = base(new_app, metrics={"_locale": "en-GB"}, events=[{"key": "a"}])
    response = await client.post("/i", data=form(params), headers={"user-agent": ua})
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["user_agent"], event["ip"], event["locale"]) == (ua, CLIENT_IP, "en-GB")


@pytest.mark.parametrize(
    ("tz", "timezone"),
    [("120", "+02:00"), ("-300", "-05:00"), ("0", "+00:00"), ("330", "+05:30")],
)
async def test_tz_minutes_become_a_utc_offset(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, tz: str, timezone: str
) -> None:
    response = await post_form(client, "/i", base(new_app, tz=tz, events=[{"key": "a"}]))
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["timezone"] == timezone


# --- port of 5.write.app.events.js -------------------------------------------------------------


async def test_port_write_app_events(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    async def send(minute: int, events: list[dict]) -> None:
        at = secs(T0 + timedelta(minutes=minute))
        response = await post_form(client, "/i", base(new_app, timestamp=at, events=events))
        assert response.status_code == 200
        assert response.json() == SUCCESS

    await send(0, [])  # empty events
    await send(1, [{"count": 1}])  # without key: ignored
    await send(2, [{"key": "test"}])  # without count: 1
    await send(3, [{"key": "test", "count": 1}])
    await send(4, [{"key": "test", "count": 2}])
    await send(5, [{"key": "test", "count": 2}, {"key": "test1", "count": 1}])  # two at once
    await send(6, [{"key": "test", "count": 1, "sum": 2.97}])
    await send(7, [{"key": "test", "count": 1, "sum": 1.03}])
    segmentation = {"version": "1.0", "country": "Turkey"}
    await send(8, [{"key": "test1", "count": 1, "segmentation": segmentation}])
    await send(9, [{"key": "test2", "count": 1, "segmentation": {"tags": ["a", "b"]}}])

    events = await stored(services, new_app.app.id)
    assert sorted({e["name"] for e in events}) == ["test", "test1", "test2"]
    tests = [e for e in events if e["name"] == "test"]
    assert sum(e["count"] for e in tests) == 1 + 1 + 2 + 2 + 1 + 1
    assert sum(e["sum"] for e in tests if e["sum"] is not None) == pytest.approx(4, abs=1e-4)
    test1 = sorted((e for e in events if e["name"] == "test1"), key=lambda e: e["time"])
    assert [e["properties"] for e in test1] == [{}, segmentation]
    [test2] = [e for e in events if e["name"] == "test2"]
    assert test2["properties"] == {"tags": ["a", "b"]}
    assert [row[0] for row in failed(services)] == ["missing_name"]


# --- sessions ----------------------------------------------------------------------------------


async def test_begin_session_stores_a_session_start_with_the_metrics(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    metrics = {"_os": "Android", "_os_version": "4.4", "_app_version": "1.2", "_locale": "tr-TR"}
    params = base(new_app, timestamp=secs(T0), begin_session=1, metrics=metrics)
    response = await post_form(client, "/i", params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert event["name"] == "session.start"
    assert event["properties"] == metrics
    assert event["dur"] is None
    assert (event["device_id"], event["time"], event["protocol"]) == (DEVICE, T0, "countly")
    assert (event["os"], event["locale"]) == ("Android", "tr-TR")


async def test_session_duration_stores_a_session_update(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, timestamp=secs(T0), session_duration=30)
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["dur"], event["device_id"]) == ("session.update", 30.0, DEVICE)
    assert event["time"] == T0


async def test_end_session_with_a_duration_stores_only_a_session_end(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, timestamp=secs(T0), end_session=1, session_duration=45)
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["dur"], event["device_id"]) == ("session.end", 45.0, DEVICE)


async def test_end_session_alone_stores_a_session_end_without_duration(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await post_form(client, "/i", base(new_app, timestamp=secs(T0), end_session=1))
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["dur"], event["device_id"]) == ("session.end", None, DEVICE)


@pytest.mark.parametrize(
    ("duration", "stored_dur"),
    [("90000", 86400.0), ("86400", 86400.0), ("-5", 30.0)],
)
async def test_session_duration_is_capped_and_a_negative_one_becomes_30(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    duration: str,
    stored_dur: float,
) -> None:
    params = base(new_app, timestamp=secs(T0), session_duration=duration)
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    event = await stored_one(services, new_app.app.id)
    assert (event["name"], event["dur"]) == ("session.update", stored_dur)


async def test_begin_session_with_events_stores_both_at_the_request_time(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(
        new_app,
        timestamp=millis(T0),
        begin_session=1,
        metrics={"_os": "iOS"},
        events=[{"key": "a"}, {"key": "b", "count": 2}],
    )
    response = await post_form(client, "/i", params)
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app.app.id)
    assert set(by_name) == {"session.start", "a", "b"}
    assert {e["time"] for e in by_name.values()} == {T0}
    assert {e["device_id"] for e in by_name.values()} == {DEVICE}
    assert by_name["b"]["count"] == 2


async def test_port_write_app_sessions(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """2.write.app.sessions.js, checked on the stored session events instead of aggregates."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("device-a", {}),  # a plain request: Success, nothing stored
        ("device-a", {"begin_session": 1}),
        ("device-a", {"begin_session": 1}),  # a second session, same device
        ("device-b", {"begin_session": 1}),  # a new device
        ("device-a", {"session_duration": 30}),
        ("device-a", {"end_session": 1}),
        ("device-a", {"session_duration": 30}),  # duration without a start
        ("device-c", {"end_session": 1}),  # end without a start, new device
    ]
    for minute, (device, extra) in enumerate(steps):
        at = T0 + timedelta(minutes=minute)
        params = base(new_app, device_id=device, timestamp=secs(at), **extra)
        response = await client.get("/i", params=form(params))
        assert response.status_code == 200
        assert response.json() == SUCCESS

    events = sorted(await stored(services, new_app.app.id), key=lambda e: e["time"])
    assert [(e["name"], e["device_id"], e["dur"], e["time"]) for e in events] == [
        ("session.start", "device-a", None, T0 + timedelta(minutes=1)),
        ("session.start", "device-a", None, T0 + timedelta(minutes=2)),
        ("session.start", "device-b", None, T0 + timedelta(minutes=3)),
        ("session.update", "device-a", 30.0, T0 + timedelta(minutes=4)),
        ("session.end", "device-a", None, T0 + timedelta(minutes=5)),
        ("session.update", "device-a", 30.0, T0 + timedelta(minutes=6)),
        ("session.end", "device-c", None, T0 + timedelta(minutes=7)),
    ]


# --- /i/bulk -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{}, {"requests": "[{oops"}, {"requests": ""}],
    ids=["absent", "unparseable", "empty"],
)
async def test_bulk_without_parseable_requests_is_refused(
    client: httpx.AsyncClient, new_app: NewApp, body: dict
) -> None:
    response = await client.post("/i/bulk", data={"app_key": new_app.app.app_key, **body})
    assert response.status_code == 400
    assert response.json() == {"result": 'Missing parameter "requests"'}


async def test_bulk_with_no_params_at_all_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/i/bulk")
    assert response.status_code == 400
    assert response.json() == {"result": 'Missing parameter "requests"'}


@pytest.mark.parametrize("requests", ['{"device_id": "d"}', "5", '"text"'])
async def test_bulk_requests_that_are_not_an_array_are_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, requests: str
) -> None:
    response = await client.post(
        "/i/bulk", data={"app_key": new_app.app.app_key, "requests": requests}
    )
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "requests"'}
    # No event is stored; the refused request is kept as a failed event of the app it names.
    assert row_counts(services) == (0, 1)
    [(reason,)] = (
        services.store.loaded()
        .conn.execute(  # type: ignore[attr-defined]
            "SELECT reason FROM failed_events"
        )
        .fetchall()
    )
    assert reason == "invalid_body"


async def test_bulk_requests_as_a_native_object_in_json_are_refused(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = {"app_key": new_app.app.app_key, "requests": {"device_id": "d"}}
    response = await client.post("/i/bulk", json=body)
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "requests"'}


async def test_bulk_form_post_like_the_node_sdk_stores_every_item(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # CountlyBulk: app_key plus requests=<JSON string>; the top-level app_key fills in.
    requests = [
        {"device_id": "d1", "timestamp": secs(T0), "events": json.dumps([{"key": "a"}])},
        {"device_id": "d2", "timestamp": secs(T0), "events": [{"key": "b", "count": 3}]},
    ]
    response = await client.post(
        "/i/bulk", data={"app_key": new_app.app.app_key, "requests": json.dumps(requests)}
    )
    assert response.status_code == 200
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app.app.id)
    assert {n: (e["device_id"], e["count"], e["time"]) for n, e in by_name.items()} == {
        "a": ("d1", 1, T0),
        "b": ("d2", 3, T0),
    }
    assert {e["protocol"] for e in by_name.values()} == {"countly"}


async def test_bulk_item_app_key_wins_over_the_top_level_one(
    client: httpx.AsyncClient, services: Services, catalog: Catalog, new_app: NewApp
) -> None:
    other = catalog.create_app("Other")
    requests = [
        {"device_id": "d1", "events": [{"key": "for_default"}]},
        {"app_key": other.app.app_key, "device_id": "d2", "events": [{"key": "for_other"}]},
    ]
    body = {"app_key": new_app.app.app_key, "requests": requests}
    response = await client.post("/i/bulk", json=body)
    assert response.json() == SUCCESS
    assert [e["name"] for e in await stored(services, new_app.app.id)] == ["for_default"]
    assert [e["name"] for e in await stored(services, other.app.id)] == ["for_other"]


async def test_bulk_items_without_device_id_or_app_key_are_skipped(
    client: httpx.AsyncClient, services: Services, catalog: Catalog, new_app: NewApp
) -> None:
    # No top-level app_key here, so an item without its own app_key has none at all.
    requests = [
        {"app_key": new_app.app.app_key, "events": [{"key": "no_device"}]},
        {"device_id": "d1", "events": [{"key": "no_app_key"}]},
        {"app_key": new_app.app.app_key, "device_id": "d2", "events": [{"key": "kept"}]},
    ]
    response = await client.post("/i/bulk", json={"requests": requests})
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert [e["name"] for e in await stored(services, new_app.app.id)] == ["kept"]
    assert row_counts(services) == (1, 0)


async def test_bulk_honours_per_item_ip_address_and_the_null_device(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    requests = [
        {"device_id": "d1", "ip_address": "203.0.113.77", "events": [{"key": "a"}]},
        {"device_id": NULL_DEVICE, "events": [{"key": "ignored"}]},
        {"device_id": "d2", "events": [{"key": "b"}]},
    ]
    body = {"app_key": new_app.app.app_key, "requests": requests}
    response = await client.post("/i/bulk", json=body)
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app.app.id)
    assert {n: e["ip"] for n, e in by_name.items()} == {"a": "203.0.113.77", "b": CLIENT_IP}


async def test_an_empty_bulk_is_success(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await client.post("/i/bulk", json={"app_key": new_app.app.app_key, "requests": []})
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert row_counts(services) == (0, 0)


async def test_port_bulk_write_gives_the_same_records_as_single_requests(
    client: httpx.AsyncClient, services: Services, catalog: Catalog, new_app: NewApp
) -> None:
    """6.bulk.write.js: sessions (past timestamps), metrics and events as in the /i suites."""
    single_app = new_app.app
    bulk_app = catalog.create_app("Bulk").app
    metrics = {"_os": "Android", "_os_version": "4.4", "_device": "Nexus 5", "_locale": "tr-TR"}
    items: list[dict[str, Any]] = [
        {"device_id": "d1", "timestamp": secs(T0), "begin_session": 1, "metrics": metrics},
        {"device_id": "d1", "timestamp": secs(T0) + 30, "session_duration": 30},
        {
            "device_id": "d1",
            "timestamp": secs(T0) + 40,
            "events": [
                {"key": "test", "count": 2, "sum": 2.97},
                {"key": "test1", "segmentation": {"version": "1.0", "country": "Turkey"}},
            ],
        },
        {"device_id": "d2", "timestamp": secs(T0) + 50, "begin_session": 1, "metrics": metrics},
        {"device_id": "d1", "timestamp": secs(T0) + 60, "end_session": 1, "session_duration": 30},
        {"device_id": "d2", "timestamp": secs(T0) + 70, "end_session": 1},
    ]
    for item in items:
        response = await post_form(client, "/i", {"app_key": single_app.app_key, **item})
        assert response.json() == SUCCESS
    response = await client.post("/i/bulk", json={"app_key": bulk_app.app_key, "requests": items})
    assert response.status_code == 200
    assert response.json() == SUCCESS

    def records(events: list[dict]) -> list[tuple]:
        fields = ("name", "device_id", "time", "count", "sum", "dur", "os", "locale", "ip")
        rows = [
            (*(e[f] for f in fields), json.dumps(e["properties"], sort_keys=True)) for e in events
        ]
        return sorted(rows, key=lambda r: (r[2], r[0]))

    single = records(await stored(services, single_app.id))
    bulk = records(await stored(services, bulk_app.id))
    assert bulk == single
    assert [(r[0], r[1], r[5]) for r in bulk] == [
        ("session.start", "d1", None),
        ("session.update", "d1", 30.0),
        ("test", "d1", None),
        ("test1", "d1", None),
        ("session.start", "d2", None),
        ("session.end", "d1", 30.0),
        ("session.end", "d2", None),
    ]


# --- /o/sdk ------------------------------------------------------------------------------------


async def test_sdk_behaviour_settings(client: httpx.AsyncClient, new_app: NewApp) -> None:
    before = millis(datetime.now(UTC))
    response = await client.get(
        "/o/sdk",
        params={"method": "sc", "app_key": new_app.app.app_key, "device_id": DEVICE},
    )
    after = millis(datetime.now(UTC))
    assert response.status_code == 200
    body = response.json()
    t = body.get("t")
    assert body == {"v": 1, "t": t, "c": {}}
    assert isinstance(t, int) and not isinstance(t, bool)
    assert before - 1000 <= t <= after + 1000  # milliseconds, not seconds


async def test_sdk_behaviour_settings_for_an_unknown_app(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/o/sdk", params={"method": "sc", "app_key": "no-such-key", "device_id": DEVICE}
    )
    assert response.status_code == 400
    assert response.json() == NO_APP


async def test_a_count_too_large_for_the_store_is_rejected_and_the_rest_stored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """Found by tests/fuzz: a count above 2**63 - 1 used to be acknowledged, then block the
    journal loader for good (the store's count column is a 64-bit integer)."""
    events = [{"key": "huge", "count": 2**64}, {"key": "fine", "count": 3}]
    response = await post_form(client, "/i", base(new_app, events=events))
    assert response.status_code == 200 and response.json() == {"result": "Success"}
    assert [(e["name"], e["count"]) for e in await stored(services, new_app.app.id)] == [
        ("fine", 3)
    ]
    assert [row[0] for row in failed(services)] == ["invalid_measure"]


async def test_a_body_nested_too_deeply_is_refused_like_unreadable_json(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """Found by tests/fuzz: JSON nested deeper than the decoder goes raised RecursionError."""
    deep = '{"a":[' * 5000 + "1" + "]}" * 5000
    response = await client.post(
        "/i", content=deep.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"result": MISSING_KEYS}
    response = await post_form(client, "/i", base(new_app, events="[" + deep + "]"))
    assert response.status_code == 200 and response.json() == {"result": "Success"}
