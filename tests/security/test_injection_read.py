"""SQL injection through every other read endpoint, on both stores: the native read API, customers
(search and profile), the activity feed, export (app and person), failed events (list, one,
replay filters), discarded counts, and Countly's read API (``/o``, ``/o/analytics/events``).

Each payload of ``injection_support.PAYLOADS`` goes into each parameter: the answer is a refusal
in the endpoint's own error shape, or treats the payload as a literal (the one event seeded with
it is found, once). Nothing of the canary app shows, and every table keeps its rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from injection_support import (
    CLICKHOUSE_PAYLOADS,
    COUNTLY_PERIOD,
    MARKER,
    NAME_LIMIT,
    PAYLOADS,
    PROBE,
    VALUE_OF,
    Deployment,
    assert_clean,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def stored_name(payload: str) -> int:
    return 1 if len(payload) <= NAME_LIMIT else 0


def segment(payload: str) -> str:
    return quote(payload, safe="")


Expect = Callable[[httpx.Response], None]


def in_path(payload: str, expect: Expect) -> Expect:
    """A payload in the path: a line break leaves no route to match (404), else ``expect``."""
    return refused(404) if "\n" in payload or "\r" in payload else expect


@dataclass
class Call:
    """One request: ``path`` under the app (``/...``) or absolute (``/o...``)."""

    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    countly: bool = False
    expect: Callable[[httpx.Response], None] | None = None
    """What a 200 must hold; None: the request must be refused (4xx)."""


def refused(status: int) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert response.status_code == status, response.text

    return check


def events_named(payload: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        events = response.json()["events"]
        assert [e["name"] for e in events] == [payload] * stored_name(payload)

    return check


def one_visit_of(payload: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        [event] = response.json()["events"]
        assert (event["name"], event["user"]) == ("visit", payload)

    return check


def customer_listed(payload: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        customers = response.json()["customers"]
        assert {"id": payload, "events": 1} in [
            {"id": c["id"], "events": c["events"]} for c in customers
        ]
        folded = payload.lower()
        assert all(folded in c["id"].lower() or c["kind"] == "user" for c in customers)

    return check


def profile_of(payload: str, key: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        profile = response.json()
        assert (profile["id"], profile["events"]) == (payload, 1)
        assert profile["linked_ids"] == [f"dev-{key}"]  # the visit's device, linked to the user
        assert [t["name"] for t in profile["top_events"]] == ["visit"]

    return check


def exported_visit_of(payload: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        [line] = response.text.splitlines()
        event = json.loads(line)
        assert (event["name"], event["user_id"]) == ("visit", payload)

    return check


def failed_named(payload: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        [record] = response.json()["failed_events"]
        assert (record["name"], record["reason"]) == (payload, "invalid_time")

    return check


def no_failed(response: httpx.Response) -> None:
    assert response.json()["failed_events"] == []


def replayed_nothing(still_failing: int) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        report = response.json()
        assert (report["replayed"], report["stored"]) == (0, 0)
        assert len(report["still_failing"]) == still_failing

    return check


def tree_count(expected: int) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        tree = response.json()
        assert tree.get("2026", {}).get("c", 0) == expected, tree

    return check


def tree_value(value: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        year = response.json()["2026"]
        assert year[value]["c"] == 1, year

    return check


def rows_count(expected: int, key: str | None = None) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        rows = response.json()
        if key is not None:
            rows = rows[key]
        assert sum(row["c"] for row in rows) == expected, rows

    return check


def segment_rows(value: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert [(r["_id"], r["c"]) for r in response.json()] == [(value, 1)]

    return check


def answered(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


SLOTS: dict[str, Callable[[str, str], Call]] = {
    # native read API
    "events.name": lambda p, k: Call("/events", {"name": p}, expect=events_named(p)),
    "events.user": lambda p, k: Call("/events", {"user": p}, expect=one_visit_of(p)),
    "events.since": lambda p, k: Call("/events", {"since": p}),
    "events.limit": lambda p, k: Call("/events", {"limit": p}),
    # customers and the activity feed
    "customers.search": lambda p, k: Call(
        "/customers", {"search": p}, expect=customer_listed(p) if len(p) <= 200 else None
    ),
    "customers.limit": lambda p, k: Call("/customers", {"limit": p}),
    "customers.profile": lambda p, k: Call(
        f"/customers/{segment(p)}", expect=in_path(p, profile_of(p, k))
    ),
    "activity.user": lambda p, k: Call(
        f"/users/{segment(p)}/activity", expect=in_path(p, one_visit_of(p))
    ),
    "activity.cursor": lambda p, k: Call("/users/x/activity", {"cursor": p}),
    "activity.limit": lambda p, k: Call("/users/x/activity", {"limit": p}),
    # export
    "export.from": lambda p, k: Call("/export", {"from": p}),
    "export.to": lambda p, k: Call("/export", {"to": p}),
    "export.format": lambda p, k: Call("/export", {"format": p}),
    "export.person": lambda p, k: Call(
        f"/users/{segment(p)}/events", expect=in_path(p, exported_visit_of(p))
    ),
    # failed and discarded events
    "failed.name": lambda p, k: Call("/failed-events", {"name": p}, expect=failed_named(p)),
    "failed.reason": lambda p, k: Call("/failed-events", {"reason": p}, expect=no_failed),
    "failed.since": lambda p, k: Call("/failed-events", {"since": p}),
    "failed.until": lambda p, k: Call("/failed-events", {"until": p}),
    "failed.replayed": lambda p, k: Call("/failed-events", {"replayed": p}),
    "failed.limit": lambda p, k: Call("/failed-events", {"limit": p}),
    "failed.one": lambda p, k: Call(f"/failed-events/{segment(p)}", expect=refused(404)),
    "discarded.since": lambda p, k: Call("/discarded", {"since": p}),
    "replay.ids": lambda p, k: Call(
        "/failed-events/replay", body={"ids": [p]}, expect=replayed_nothing(0)
    ),
    "replay.name": lambda p, k: Call(
        "/failed-events/replay", body={"name": p}, expect=replayed_nothing(1)
    ),
    "replay.reason": lambda p, k: Call(
        "/failed-events/replay", body={"reason": p}, expect=replayed_nothing(0)
    ),
    "replay.since": lambda p, k: Call("/failed-events/replay", body={"since": p}),
    # Countly's read API
    "o.event": lambda p, k: Call(
        "/o", {"method": "events", "event": p}, countly=True, expect=tree_count(stored_name(p))
    ),
    "o.events": lambda p, k: Call(
        "/o",
        {"method": "events", "events": json.dumps([p])},
        countly=True,
        expect=tree_count(stored_name(p)),
    ),
    "o.events-not-json": lambda p, k: Call("/o", {"method": "events", "events": p}, countly=True),
    "o.segmentation": lambda p, k: Call(
        "/o",
        {"method": "events", "event": PROBE, "segmentation": p},
        countly=True,
        expect=tree_value(VALUE_OF + k),
    ),
    "o.period": lambda p, k: Call("/o", {"method": "events", "period": p}, countly=True),
    "o.tz": lambda p, k: Call("/o", {"method": "events", "tz": p}, countly=True),
    "o.method": lambda p, k: Call("/o", {"method": p}, countly=True),
    "o.app_id": lambda p, k: Call("/o", {"method": "get_events", "app_id": p}, countly=True),
    "o.api_key": lambda p, k: Call("/o", {"method": "get_events", "api_key": p}, countly=True),
    "o.timestamp": lambda p, k: Call(
        "/o", {"method": "get_events", "timestamp": p}, countly=True, expect=answered
    ),
    "analytics.event": lambda p, k: Call(
        "/o/analytics/events", {"event": p}, countly=True, expect=rows_count(stored_name(p))
    ),
    "analytics.events": lambda p, k: Call(
        "/o/analytics/events",
        {"events": json.dumps([p])},
        countly=True,
        expect=rows_count(stored_name(p), p),
    ),
    "analytics.segmentation": lambda p, k: Call(
        "/o/analytics/events",
        {"event": PROBE, "segmentation": p},
        countly=True,
        expect=segment_rows(VALUE_OF + k),
    ),
    "analytics.bucket": lambda p, k: Call(
        "/o/analytics/events", {"event": PROBE, "bucket": p}, countly=True, expect=rows_count(22)
    ),
}


async def send(tally: Deployment, call: Call) -> httpx.Response:
    if call.countly:
        params = {"app_id": tally.app.id, "period": COUNTLY_PERIOD, **(call.params or {})}
        key, secret = tally.app.auth
        if "api_key" not in params:
            params["api_key"] = key
            params.setdefault("api_secret", secret)
        return await tally.client.get(call.path, params=params)
    if call.body is not None:
        return await tally.client.post(tally.path(call.path), json=call.body, auth=tally.app.auth)
    return await tally.client.get(tally.path(call.path), params=call.params, auth=tally.app.auth)


@pytest.mark.parametrize("key", PAYLOADS)
@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("tally", ["duckdb"], indirect=True)
async def test_a_payload_in_a_read_parameter_is_refused_or_literal(
    tally: Deployment, slot: str, key: str
) -> None:
    await check_read(tally, slot, key)


@pytest.mark.parametrize("key", CLICKHOUSE_PAYLOADS)
@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("tally", ["clickhouse"], indirect=True)
async def test_a_payload_in_a_read_parameter_is_refused_or_literal_on_clickhouse(
    tally: Deployment, slot: str, key: str
) -> None:
    await check_read(tally, slot, key)


async def check_read(tally: Deployment, slot: str, key: str) -> None:
    call = SLOTS[slot](PAYLOADS[key], key)
    response = await send(tally, call)
    assert_clean(response, shape="countly" if call.countly else "api")
    if call.expect is None:
        assert 400 <= response.status_code < 500, response.text
    elif response.status_code < 400:
        assert response.status_code == 200, response.text
        call.expect(response)
    else:
        call.expect(response)
    await tally.assert_intact()


@pytest.mark.parametrize("key", ["or-true", "nul"])
async def test_a_payload_as_the_countly_api_secret_is_refused(tally: Deployment, key: str) -> None:
    """Not SQL (an argon2 hash is checked), and slow on purpose: two payloads."""
    call = Call("/o", {"method": "get_events", "api_secret": PAYLOADS[key]}, countly=True)
    response = await send(tally, call)
    assert_clean(response, shape="countly")
    assert response.json() == {"result": "User does not exist"}
    assert response.status_code == 401


async def test_segment_values_are_the_stored_text(tally: Deployment) -> None:
    """Every hostile value comes back from Countly's meta as it was stored."""
    call = Call("/o", {"method": "events", "event": PROBE, "segmentation": "text"}, countly=True)
    response = await send(tally, call)
    assert_clean(response, shape="countly")
    meta = response.json()["meta"]
    assert sorted(meta["text"]) == sorted(PAYLOADS.values())


async def test_the_canary_app_reads_its_own_events(tally: Deployment) -> None:
    """The control: the canary's marker is there to be found, with the canary's own keys."""
    response = await tally.client.get(
        f"/api/v1/apps/{tally.canary.id}/events",
        params={"user": f"{MARKER}-user"},
        auth=tally.canary.auth,
    )
    assert response.status_code == 200
    assert len(response.json()["events"]) == 3
    assert MARKER in response.text
