"""Raw-bytes fuzzing of every ingest endpoint (``TallyApp.ingest``) through the real ASGI app, a
real catalog and a real embedded store: random methods, content types, content encodings (gzip
claimed but not gzip...), credentials and bodies. Every answer is below 500 (503 only when the
store says so) and in the protocol's own shape; the store keeps loading what was acknowledged;
and in a batch of valid and invalid items the valid ones are stored and the invalid ones kept as
failed events."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fuzz_live import Live
from fuzz_requests import ADAPTERS, DISTINCT, bodies, encodings, query_for
from fuzz_settings import examples
from fuzz_shapes import check_reply
from fuzz_strategies import decoded, hostile_text, mostly
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.store.query import EventQuery, FailedQuery

COUNTLY_READ = ["/o/sdk", "/o", "/o/analytics/events"]
"""Ingest-side paths served without an adapter: Countly's SDK settings and read API."""
METHODS = ["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"]


def test_every_ingest_path_is_fuzzed(live: Live) -> None:
    assert set(live.app.ingest) == set(ADAPTERS) | set(COUNTLY_READ)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@st.composite
def raw_requests(draw: st.DrawFn, live: Live, path: str) -> dict[str, Any]:
    app, secret = live.new_app.app, live.new_app.api_secret
    body_path = "/i" if path in COUNTLY_READ else path
    body, content_type = draw(bodies(body_path, app.app_key))
    body, encoding = draw(encodings(body))
    headers: dict[str, str] = {"content-type": content_type}
    if encoding is not None:
        headers["content-encoding"] = encoding
    credentials = draw(
        st.sampled_from(
            ["none", "server", "write key", "app key", "junk", "bearer", "wrong secret"]
        )
    )
    if credentials == "server":
        headers["authorization"] = _basic(app.api_key, secret)
    elif credentials == "write key":
        headers["authorization"] = _basic(app.app_key, "")
    elif credentials == "app key":
        headers["x-tally-key"] = app.app_key
    elif credentials == "junk":
        headers["authorization"] = draw(st.sampled_from(["Basic", "Basic ####", "x" * 300]))
    elif credentials == "bearer":
        headers["authorization"] = "Bearer " + draw(st.sampled_from(["a.b.c", "eyJ", "x"]))
    elif credentials == "wrong secret":
        headers["authorization"] = _basic(app.api_key, "not the secret")
    if draw(st.integers(0, 9)) == 0:
        headers["content-length"] = draw(st.sampled_from(["-1", "abc", "99999999999", "0"]))
    query = draw(query_for(body_path, app.app_key))
    if path.startswith("/v4/") and draw(st.booleans()):
        query = f"token={app.app_key}&{query}"
    if path in COUNTLY_READ:
        query += "&" + draw(st.sampled_from(["method=sc", "method=events", "method=get_events"]))
        query += f"&api_key={app.api_key}:{secret}&app_id={app.id}&events=%5B%22a%22%5D"
    method = draw(mostly(st.sampled_from(["POST", "GET"]), st.sampled_from(METHODS), 90))
    return {"method": method, "url": f"{path}?{query}", "headers": headers, "content": body}


def _protocol(path: str) -> str:
    return "countly" if path in COUNTLY_READ else ADAPTERS[path].protocol


def _send(live: Live, request: dict[str, Any]) -> tuple[int, bytes]:
    headers = request["headers"]
    if "content-length" in headers and request["content"]:
        # httpx sets the real length; a lying one is sent with no body at all.
        request = {**request, "content": b""}
    response = live.request(**request)
    return response.status_code, response.content


@pytest.mark.parametrize("path", DISTINCT + COUNTLY_READ)
@settings(max_examples=examples(10))
@given(data=st.data())
def test_raw_requests_get_an_answer_in_the_protocols_shape(
    live: Live, path: str, data: st.DataObject
) -> None:
    request = data.draw(raw_requests(live, path))
    status, body = _send(live, request)
    if request["method"] == "HEAD":
        assert status < 500, status
    elif path in COUNTLY_READ:
        assert status < 500, (status, body[:300])
        if request["method"] != "OPTIONS":
            json.loads(body)
    elif request["method"] == "OPTIONS":
        assert status in (200, 204), status
    else:
        check_reply(_protocol(path), status, body)
    live.check_store()


# Mixed batches -------------------------------------------------------------------------------

simple_properties = st.dictionaries(
    st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=10),
    st.one_of(st.integers(-(10**6), 10**6), st.booleans(), hostile_text.map(decoded)),
    max_size=3,
)


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def native_items(marker: str, props: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    valid = {"name": f"fuzz ok {marker}", "user": marker, "properties": props}
    invalid = [
        {"name": 12, "user": marker},
        {"name": "", "user": marker},
        {"name": "x", "user": marker, "count": 0},
        {"name": "x", "user": marker, "time": "not a time"},
        {"name": "x", "user": marker, "count": 2**64},
        [marker],
    ]
    return valid, invalid


def countly_items(marker: str, props: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    valid = {"key": f"fuzz ok {marker}", "count": 1, "segmentation": props}
    invalid = [
        {"key": "", "segmentation": {"m": marker}},
        {"key": "x" * 200, "segmentation": {"m": marker}},
        {"key": "x", "count": 1e300, "segmentation": {"m": marker}},
        [marker],
    ]
    return valid, invalid


def engagelab_items(marker: str, props: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    valid = {"euid": marker, "event_name": f"ok_{marker}", "itime": _now_ms(), "properties": props}
    invalid = [
        {"euid": marker, "event_name": "Bad Name!", "itime": _now_ms()},
        {"euid": marker, "event_name": "no_time"},
        {"euid": marker, "event_name": 5, "itime": _now_ms()},
    ]
    return valid, invalid


def segment_items(marker: str, props: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    valid = {"type": "track", "event": f"fuzz ok {marker}", "userId": marker, "properties": props}
    invalid = [
        {"type": "bogus", "userId": marker},
        {"type": "track", "event": "x", "properties": {"m": marker}},
        {"type": "group", "userId": marker},
        {"type": "track", "event": "x", "userId": marker, "messageId": marker * 30},
    ]
    return valid, invalid


def synerise_items(marker: str, props: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    client = {"customId": marker}
    valid = {"action": f"ok.{marker}", "label": "ok", "client": client, "params": props}
    invalid = [
        {"action": "bad action!", "label": "l", "client": client},
        {"action": "a.b", "label": "", "client": client},
        {"action": "a.b", "label": "l", "client": client, "time": "garbage"},
    ]
    return valid, invalid


def mixed_request(live: Live, path: str, items: list[Any], marker: str) -> dict[str, Any]:
    app, secret = live.new_app.app, live.new_app.api_secret
    server = {"authorization": _basic(app.api_key, secret)}
    if path == "/api/v1/events":
        return {"headers": {"x-tally-key": app.app_key}, "json": {"events": items}}
    if path == "/i":
        params = {"app_key": app.app_key, "device_id": marker, "events": json.dumps(items)}
        return {"data": params}
    if path == "/v1/event/report":
        return {"headers": server, "json": {"data": items}}
    if path == "/v1/batch":
        return {"json": {"batch": items, "writeKey": app.app_key}}
    return {"headers": server, "json": items}


MIXED = {
    "/api/v1/events": native_items,
    "/i": countly_items,
    "/v1/event/report": engagelab_items,
    "/v1/batch": segment_items,
    "/v4/events/batch": synerise_items,
}


@pytest.mark.parametrize("path", sorted(MIXED))
@settings(max_examples=examples(6))
@given(
    props=st.lists(simple_properties, min_size=1, max_size=4),
    invalid=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_mixed_batches_store_the_valid_items_and_keep_the_invalid_as_failed(
    live: Live, path: str, props: list[dict[str, Any]], invalid: list[int], seed: int
) -> None:
    # In every valid item's name: a new event each time, so the types the catalog gave an earlier
    # example's properties on first sight do not apply.
    marker = f"m{uuid.uuid4().hex[:12]}"
    made = [MIXED[path](marker, p) for p in props]
    bad_choices = made[0][1]
    items = [valid for valid, _ in made] + [bad_choices[i % len(bad_choices)] for i in invalid]
    random.Random(seed).shuffle(items)
    before = datetime.now(UTC)

    response = live.request("POST", path, **mixed_request(live, path, items, marker))

    assert response.status_code in (200, 202), response.text
    check_reply(_protocol(path), response.status_code, response.content)
    app_id = live.new_app.app.id
    stored = live.run(live.services.store.fetch_events(EventQuery(app_id=app_id, user=marker)))
    assert len(stored) == len(props), stored
    failed = live.run(
        live.services.store.fetch_failed(
            FailedQuery(app_id=app_id, since=before, with_payload=True, limit=1000)
        )
    )
    mine = [f for f in failed if marker.encode() in (f.payload or b"")]
    assert len(mine) == len(invalid), (mine, invalid)
    assert all(f.reason for f in mine)
    live.check_store()
