"""SQL injection through the query API (``POST /api/v1/apps/{id}/query``), on both stores whose
SQL is compiled differently (DuckDB, ClickHouse): every payload of ``injection_support.PAYLOADS``
in every place of a query that reaches SQL (event names, fields, property names and values,
operators, measures, intervals, periods, time zones, funnel steps, retention).

A payload is refused with ``400`` in the API's error shape, or taken literally: the seeded event
named, keyed or valued with it is found, exactly once. Nothing of the canary app shows, and every
table keeps its rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from injection_support import (
    CLICKHOUSE_PAYLOADS,
    MARKER,
    NAME_LIMIT,
    PAYLOADS,
    PERIOD,
    PROBE,
    VALUE_OF,
    Deployment,
    assert_clean,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def trends(events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"kind": "trends", "events": events, **PERIOD, **extra}


def probe(*filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Occurrences of the probe event passing ``filters``."""
    return trends([{"event": PROBE, "filters": list(filters)}], **extra)


def eq(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": "eq", "value": value}


def total(answer: dict[str, Any]) -> Any:
    [series] = answer["series"]
    return series["total"]


Check = Callable[[dict[str, Any]], None]
Case = tuple[dict[str, Any], Check | None]
"""A query, and what its answer must be (None: refused with 400)."""


def totals(expected: int) -> Check:
    def check(answer: dict[str, Any]) -> None:
        assert total(answer) == expected

    return check


def breakdown_is(value: str) -> Check:
    def check(answer: dict[str, Any]) -> None:
        [series] = answer["series"]
        assert (series["breakdown"], series["total"]) == (value, 1)

    return check


def active_once(answer: dict[str, Any]) -> None:
    assert sum(point["active"] for point in answer["points"]) == 1


def first_step(expected: int) -> Check:
    def check(answer: dict[str, Any]) -> None:
        assert answer["steps"][0]["count"] == expected

    return check


def cohort_size(expected: int) -> Check:
    def check(answer: dict[str, Any]) -> None:
        assert sum(cohort["size"] for cohort in answer["cohorts"]) == expected

    return check


def containing(payload: str) -> int:
    return sum(payload in other for other in PAYLOADS.values())


def stored_name(payload: str) -> int:
    return 1 if len(payload) <= NAME_LIMIT else 0


def retention(start: dict[str, Any], back: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"kind": "retention", "start_event": start, "return_event": back, **PERIOD, **extra}


def funnel(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"kind": "funnel", "steps": list(steps), **PERIOD, **extra}


SLOTS: dict[str, Callable[[str, str], Case]] = {
    # literal: the payload finds exactly what was stored with it
    "trends.event": lambda p, k: (trends([{"event": p}]), totals(stored_name(p))),
    "filter.value.eq": lambda p, k: (probe(eq("properties.text", p)), totals(1)),
    "filter.value.in": lambda p, k: (
        probe({"field": "properties.text", "op": "in", "value": [p, "none"]}),
        totals(1),
    ),
    "filter.value.neq": lambda p, k: (
        probe({"field": "properties.text", "op": "neq", "value": p}),
        totals(len(PAYLOADS) - 1),
    ),
    "filter.value.contains": lambda p, k: (
        probe({"field": "properties.text", "op": "contains", "value": p}),
        totals(containing(p)),
    ),
    "filter.value.query-level": lambda p, k: (
        trends([{"event": PROBE}], filters=[eq("properties.text", p)]),
        totals(1),
    ),
    "filter.property": lambda p, k: (probe(eq(f"properties.{p}", VALUE_OF + k)), totals(1)),
    "filter.property.is_set": lambda p, k: (
        probe({"field": f"properties.{p}", "op": "is_set"}),
        totals(1),
    ),
    "filter.column.user": lambda p, k: (
        trends([{"event": "visit"}], filters=[eq("user", p)]),
        totals(1),
    ),
    "breakdown.property": lambda p, k: (
        probe(eq(f"properties.{p}", VALUE_OF + k), breakdown={"field": f"properties.{p}"}),
        breakdown_is(VALUE_OF + k),
    ),
    "breakdown.value": lambda p, k: (
        probe(eq("properties.text", p), breakdown={"field": "properties.text"}),
        breakdown_is(p),
    ),
    "users.filter": lambda p, k: (
        {"kind": "users", **PERIOD, "filters": [eq("user", p)]},
        active_once,
    ),
    "sessions.filter": lambda p, k: (
        {"kind": "sessions", **PERIOD, "filters": [eq("device", p)]},
        lambda answer: None,
    ),
    "funnel.step": lambda p, k: (
        funnel({"event": p}, {"event": "visit"}),
        first_step(stored_name(p)),
    ),
    "funnel.filter": lambda p, k: (
        funnel({"event": PROBE, "filters": [eq("properties.text", p)]}, {"event": "visit"}),
        first_step(1),
    ),
    "funnel.breakdown": lambda p, k: (
        funnel({"event": PROBE}, {"event": "visit"}, breakdown={"field": f"properties.{p}"}),
        first_step(len(PAYLOADS)),
    ),
    "retention.start": lambda p, k: (
        retention({"event": p}, {"event": "visit"}),
        cohort_size(stored_name(p)),
    ),
    "retention.filter": lambda p, k: (
        retention({"event": PROBE, "filters": [eq(f"properties.{p}", VALUE_OF + k)]}, {"event": p}),
        cohort_size(1),
    ),
    # refused: not a field, operator, measure, interval, period, zone or kind
    "filter.field": lambda p, k: (probe(eq(p, "x")), None),
    "filter.op": lambda p, k: (probe({"field": "properties.text", "op": p, "value": "x"}), None),
    "filter.gt-text": lambda p, k: (
        probe({"field": "properties.text", "op": "gt", "value": p}),
        None,
    ),
    "breakdown.field": lambda p, k: (probe(breakdown={"field": p}), None),
    "measure": lambda p, k: (trends([{"event": PROBE, "measure": p}]), None),
    "interval": lambda p, k: (probe(interval=p), None),
    "from": lambda p, k: (probe(**{"from": p}), None),
    "to": lambda p, k: (probe(to=p), None),
    "tz": lambda p, k: (probe(tz=p), None),
    "kind": lambda p, k: ({**probe(), "kind": p}, None),
    "funnel.window": lambda p, k: (
        funnel({"event": PROBE}, {"event": "visit"}, window={"value": 1, "unit": p}),
        None,
    ),
    "retention.periods": lambda p, k: (
        retention({"event": PROBE}, {"event": "visit"}, periods=p),
        None,
    ),
    "retention.interval": lambda p, k: (
        retention({"event": PROBE}, {"event": "visit"}, interval=p),
        None,
    ),
}


@pytest.mark.parametrize("key", PAYLOADS)
@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("tally", ["duckdb"], indirect=True)
async def test_a_payload_in_a_query_is_refused_or_literal(
    tally: Deployment, slot: str, key: str
) -> None:
    await check_query(tally, slot, key)


@pytest.mark.parametrize("key", CLICKHOUSE_PAYLOADS)
@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("tally", ["clickhouse"], indirect=True)
async def test_a_payload_in_a_query_is_refused_or_literal_on_clickhouse(
    tally: Deployment, slot: str, key: str
) -> None:
    await check_query(tally, slot, key)


async def check_query(tally: Deployment, slot: str, key: str) -> None:
    body, check = SLOTS[slot](PAYLOADS[key], key)
    response = await tally.query(body)
    assert_clean(response)
    if check is None:
        assert response.status_code == 400, response.text
    else:
        assert response.status_code == 200, response.text
        check(response.json())
    await tally.assert_intact()


NUMBERS = {
    "huge-int": "1" + "0" * 40,
    "negative-huge-int": "-1" + "0" * 40,
    "int64-overflow": str(2**63),
    "beyond-128-bits": str(2**130),
    "beyond-a-double": "1" + "0" * 400,
    "overflowing-float": "1e400",
    "largest-float": "1.7976931348623157e308",
    "tiny-float": "5e-324",
    "negative-zero": "-0.0",
}
"""Numbers as JSON literals (the query's text is sent as is)."""
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_HOLDS = {
    "eq": lambda a, b: a == b,
    "in": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
}


def matching_texts(op: str, number: float) -> int:
    """Probes whose ``text`` read as a number (the stores' reading: decimal text, overflowing
    to infinity) compares so with ``number``."""
    texts = [t for t in PAYLOADS.values() if _DECIMAL.fullmatch(t)]
    return sum(_HOLDS[op](float(t), number) for t in texts)


@pytest.mark.parametrize("number", list(NUMBERS))
@pytest.mark.parametrize("op", list(_HOLDS))
async def test_extreme_numbers_in_filters(tally: Deployment, number: str, op: str) -> None:
    value = NUMBERS[number]
    literal = f"[{value}]" if op == "in" else value
    body = (
        '{"kind": "trends", "from": "2026-03-01", "to": "2026-03-08", "events": [{"event": "'
        + PROBE
        + '", "filters": [{"field": "properties.text", "op": "'
        + op
        + '", "value": '
        + literal
        + "}]}]}"
    )
    response = await tally.client.post(
        tally.path("/query"),
        content=body,
        headers={"content-type": "application/json"},
        auth=tally.app.auth,
    )
    assert_clean(response)
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if finite:
        assert response.status_code == 200, response.text
        assert total(response.json()) == matching_texts(op, float(value))
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_query"
    await tally.assert_intact()


ZONES = ["posixrules", "localtime", "right/UTC", "posix/Europe/Warsaw", "../etc/passwd", "Etc/"]
"""Names a time zone library may know that the stores do not, and paths."""


@pytest.mark.parametrize("zone", ZONES)
async def test_a_zone_the_stores_may_not_know_is_refused(tally: Deployment, zone: str) -> None:
    response = await tally.query(probe(tz=zone))
    assert_clean(response)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_timezone"


@pytest.mark.parametrize("bound", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_bound_at_the_edge_of_time_is_refused(tally: Deployment, bound: str) -> None:
    response = await tally.query(probe(**{"from": bound, "to": "2026-03-08T00:00:00Z"}))
    assert_clean(response)
    assert response.status_code == 400, response.text
    response = await tally.query(probe(**{"from": "2026-03-01", "to": bound}))
    assert_clean(response)
    assert response.status_code == 400, response.text


async def test_a_comparison_reaching_before_1970_is_refused(tally: Deployment) -> None:
    body = probe(**{"from": "1971-01-01", "to": "2026-01-01"}, interval="month", compare=True)
    response = await tally.query(body)
    assert_clean(response)
    assert response.status_code == 400, response.text
    body["from"] = "1998-01-01"  # the period before starts in 1970
    response = await tally.query(body)
    assert response.status_code == 200, response.text


async def test_the_canary_app_is_intact_and_readable_by_its_own_keys(tally: Deployment) -> None:
    """The control: the marker is there to be found, by the app it belongs to."""
    response = await tally.client.post(
        f"/api/v1/apps/{tally.canary.id}/query",
        json=trends([{"event": f"{MARKER}-event"}]),
        auth=tally.canary.auth,
    )
    assert response.status_code == 200, response.text
    assert total(response.json()) == 3
    response = await tally.query(trends([{"event": f"{MARKER}-event"}]))
    assert total(response.json()) == 0
