"""``POST /api/v1/apps/{app_id}/query`` (docs/queries.md) against answers computed in plain Python.

The events of dataset.py are loaded once per module through the native ingest API into a real
in-process server (a SQLite catalog, the embedded DuckDB store); each test sends one query and
compares the answer with ``Oracle.answer`` of the same query, exactly (floats approximately).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from analytics_dataset import AGENTS, Oracle, batches, generate
from analytics_stores import STORES, open_store

from tally.catalog import Catalog, sqlite_url
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits

pytestmark = pytest.mark.asyncio(loop_scope="module")

EVENTS = generate()
ORACLE = Oracle(EVENTS)

WARSAW = "Europe/Warsaw"
NEW_YORK = "America/New_York"
KOLKATA = "Asia/Kolkata"
SPRING_DAYS = {"from": "2026-03-16", "to": "2026-04-06", "tz": WARSAW, "interval": "day"}
"""Three weeks around Warsaw's spring-forward (2026-03-29, a 23-hour day)."""
SPRING_WEEKS = {"from": "2026-03-02", "to": "2026-04-27", "tz": WARSAW, "interval": "week"}
YEAR_MONTHS = {"from": "2026-01-01", "to": "2027-01-01", "tz": WARSAW, "interval": "month"}


@dataclass
class Tally:
    client: httpx.AsyncClient
    app_id: str
    auth: tuple[str, str]
    other_auth: tuple[str, str]
    """Credentials of another app."""

    async def query(self, body: dict[str, Any], auth: Any = None) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/apps/{self.app_id}/query",
            json=body,
            auth=self.auth if auth is None else auth,
        )

    async def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.query(body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STORES)
async def tally(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tally]:
    data_dir: Path = tmp_path_factory.mktemp("analytics")
    catalog = Catalog(sqlite_url(data_dir))
    catalog.migrate()
    app = catalog.create_app("Analytics")
    other = catalog.create_app("Someone else")
    async with open_store(request.param, request, data_dir) as store:
        services = Services(catalog=catalog, store=store, limits=Limits())
        transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
                for agent, payloads in batches(EVENTS):
                    response = await http.post(
                        "/api/v1/events",
                        json={"events": payloads},
                        headers={"x-tally-key": app.app.app_key, "user-agent": agent.header},
                    )
                    assert response.status_code == 200, response.text
                    assert response.json() == {
                        "accepted": len(payloads),
                        "duplicates": 0,
                        "rejected": [],
                    }
                yield Tally(
                    client=http,
                    app_id=app.app.id,
                    auth=(app.app.api_key, app.api_secret),
                    other_auth=(other.app.api_key, other.api_secret),
                )
        finally:
            await services.close()


def approx(value: Any) -> Any:
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-9)
    if isinstance(value, list):
        return [approx(item) for item in value]
    if isinstance(value, dict):
        return {key: approx(item) for key, item in value.items()}
    return value


def _series_view(series: dict[str, Any], with_breakdown: bool) -> dict[str, Any]:
    keys = ["event", "measure", "total", "points"]
    if with_breakdown:
        keys += ["breakdown", "other"]
    else:
        assert series.get("breakdown") is None and not series.get("other", False), series
    return {key: series.get(key) for key in keys}


def _head(series: dict[str, Any]) -> tuple[Any, ...]:
    return (
        series["event"],
        series["measure"],
        series.get("breakdown"),
        bool(series.get("other", False)),
    )


def assert_series(
    got: list[dict[str, Any]], expected: list[dict[str, Any]], breakdown: bool
) -> None:
    assert [_head(s) for s in got] == [_head(s) for s in expected]
    for i, (one, want) in enumerate(zip(got, expected, strict=True)):
        view = _series_view(one, breakdown)
        want_view = {key: want[key] for key in view}
        assert [p["t"] for p in view["points"]] == [p["t"] for p in want_view["points"]], i
        assert view == approx(want_view), f"series {i}: {_head(want)}"


async def check_trends(tally: Tally, query: dict[str, Any]) -> dict[str, Any]:
    expected = ORACLE.answer(query)
    got = await tally.answer(query)
    breakdown = "breakdown" in query
    assert_series(got["series"], expected["series"], breakdown)
    if query.get("compare"):
        assert_series(got["previous"], expected["previous"], breakdown)
    else:
        assert not got.get("previous")
    return expected


def trends(events: list[dict[str, Any]], period: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"kind": "trends", "events": events, **period, **extra}


def ev(event: str, measure: str = "count", **extra: Any) -> dict[str, Any]:
    return {"event": event, "measure": measure, **extra}


# --- trends: measures, intervals, zones ----------------------------------------------------

TRENDS = {
    "count-day-warsaw-dst": trends([ev("purchase")], SPRING_DAYS),
    "measures-day-default-utc": {
        "kind": "trends",
        "events": [
            ev("purchase", "count"),
            ev("purchase", "sum"),
            ev("purchase", "avg_sum"),
            ev("purchase", "users"),
            ev("page.visit", "dur"),
            ev("page.visit", "avg_dur"),
        ],
        "from": "2026-03-16",
        "to": "2026-04-06",
    },
    "week-warsaw": trends(
        [
            ev("page.visit"),
            ev("page.visit", "users"),
            ev("page.visit", "avg_dur"),
            ev("purchase", "sum"),
        ],
        SPRING_WEEKS,
    ),
    "week-utc-autumn": trends(
        [ev("page.visit", "dur"), ev("purchase", "avg_sum"), ev("signup", "users")],
        {"from": "2026-10-05", "to": "2026-11-16", "tz": "UTC", "interval": "week"},
    ),
    "month-year-warsaw": trends(
        [ev("purchase"), ev("purchase", "users"), ev("page.visit", "users"), ev("signup")],
        YEAR_MONTHS,
    ),
    "hour-warsaw-spring-forward": trends(
        [ev("page.visit"), ev("purchase", "users")],
        {"from": "2026-03-28", "to": "2026-03-31", "tz": WARSAW, "interval": "hour"},
    ),
    "hour-warsaw-fall-back": trends(
        [ev("page.visit"), ev("page.visit", "users"), ev("purchase", "sum")],
        {"from": "2026-10-24", "to": "2026-10-27", "tz": WARSAW, "interval": "hour"},
    ),
    "hour-kolkata": trends(
        [ev("page.visit"), ev("purchase", "sum"), ev("page.visit", "users")],
        {"from": "2026-03-28", "to": "2026-03-30", "tz": KOLKATA, "interval": "hour"},
    ),
    "hour-kolkata-utc-bounds": trends(
        [ev("page.visit", "avg_dur")],
        {
            "from": "2026-10-24T18:30:00Z",
            "to": "2026-10-26T18:30:00Z",
            "tz": KOLKATA,
            "interval": "hour",
        },
    ),
    "hour-new-york-fall-back": trends(
        [ev("page.visit"), ev("purchase")],
        {"from": "2026-10-31", "to": "2026-11-02", "tz": NEW_YORK, "interval": "hour"},
    ),
    "day-new-york-autumn": trends(
        [ev("purchase"), ev("page.visit", "users")],
        {"from": "2026-10-19", "to": "2026-11-09", "tz": NEW_YORK, "interval": "day"},
    ),
    "day-new-york-spring": trends(
        [ev("purchase", "avg_sum"), ev("page.visit", "dur")],
        {"from": "2026-03-02", "to": "2026-03-16", "tz": NEW_YORK},
    ),
    "offset-bounds-warsaw": trends(
        [ev("purchase"), ev("purchase", "users")],
        {
            "from": "2026-03-23T00:00:00+01:00",
            "to": "2026-04-06T00:00:00+02:00",
            "tz": WARSAW,
            "interval": "day",
        },
    ),
    "any-event-compare": trends(
        [ev("*"), ev("*", "users"), ev("purchase")],
        {"from": "2026-03-09", "to": "2026-03-16", "tz": WARSAW},
        compare=True,
    ),
    "empty-period": trends(
        [
            ev("purchase"),
            ev("purchase", "avg_sum"),
            ev("purchase", "users"),
            ev("page.visit", "dur"),
        ],
        {"from": "2026-06-01", "to": "2026-06-08", "tz": WARSAW},
    ),
}


@pytest.mark.parametrize("name", list(TRENDS))
async def test_trends(tally: Tally, name: str) -> None:
    expected = await check_trends(tally, TRENDS[name])
    if name != "empty-period":
        assert any(s["total"] for s in expected["series"]), "the period has events"


# --- filters -------------------------------------------------------------------------------

FILTERS = {
    "plan-eq": ("purchase", [{"field": "properties.plan", "op": "eq", "value": "pro"}]),
    "plan-neq": ("purchase", [{"field": "properties.plan", "op": "neq", "value": "pro"}]),
    "plan-in": ("purchase", [{"field": "properties.plan", "op": "in", "value": ["pro", "team"]}]),
    "plan-is-set": ("purchase", [{"field": "properties.plan", "op": "is_set"}]),
    "plan-is-not-set": ("purchase", [{"field": "properties.plan", "op": "is_not_set"}]),
    "sku-contains": ("purchase", [{"field": "properties.sku", "op": "contains", "value": "-1"}]),
    "amount-gt": ("purchase", [{"field": "properties.amount", "op": "gt", "value": 50}]),
    "amount-gte": ("purchase", [{"field": "properties.amount", "op": "gte", "value": 27}]),
    "amount-lt": ("purchase", [{"field": "properties.amount", "op": "lt", "value": 20.5}]),
    "amount-lte": ("purchase", [{"field": "properties.amount", "op": "lte", "value": 27}]),
    "amount-eq-number": ("purchase", [{"field": "properties.amount", "op": "eq", "value": 27}]),
    "amount-eq-text": ("purchase", [{"field": "properties.amount", "op": "eq", "value": "27"}]),
    "amount-eq-half": ("purchase", [{"field": "properties.amount", "op": "eq", "value": 60.5}]),
    "two-filters": (
        "purchase",
        [
            {"field": "properties.plan", "op": "in", "value": ["pro", "team"]},
            {"field": "properties.amount", "op": "gt", "value": 30},
        ],
    ),
    "user-eq": ("purchase", [{"field": "user", "op": "eq", "value": "u-36"}]),
    "device-eq": ("purchase", [{"field": "device", "op": "eq", "value": "d-47-0"}]),
    "os-eq": ("purchase", [{"field": "os", "op": "eq", "value": "iOS"}]),
    "browser-in": (
        "page.visit",
        [{"field": "browser", "op": "in", "value": ["Chrome", "Firefox"]}],
    ),
    "device-type-neq": ("page.visit", [{"field": "device_type", "op": "neq", "value": "mobile"}]),
    "os-is-not-set": ("page.visit", [{"field": "os", "op": "is_not_set"}]),
    "title-eq": ("page.visit", [{"field": "properties.title", "op": "eq", "value": "Pricing"}]),
    "url-contains": ("page.visit", [{"field": "properties.url", "op": "contains", "value": "/p/"}]),
    "user-is-set": ("page.visit", [{"field": "user", "op": "is_set"}]),
}
SIGNUP_FILTERS = {
    "newsletter-true": [{"field": "properties.newsletter", "op": "eq", "value": True}],
    "newsletter-neq-true": [{"field": "properties.newsletter", "op": "neq", "value": True}],
    "source-in": [{"field": "properties.source", "op": "in", "value": ["ads", "referral"]}],
}


@pytest.mark.parametrize("name", list(FILTERS))
async def test_filter(tally: Tally, name: str) -> None:
    event, filters = FILTERS[name]
    measures = [ev(event), ev(event, "users"), ev(event, "sum" if event == "purchase" else "dur")]
    query = trends(measures, SPRING_WEEKS, filters=filters)
    expected = await check_trends(tally, query)
    everything = ORACLE.answer(trends(measures, SPRING_WEEKS))
    assert 0 < expected["series"][0]["total"] < everything["series"][0]["total"]


@pytest.mark.parametrize("name", list(SIGNUP_FILTERS))
async def test_filter_signup(tally: Tally, name: str) -> None:
    query = trends([ev("signup"), ev("signup", "users")], YEAR_MONTHS, filters=SIGNUP_FILTERS[name])
    expected = await check_trends(tally, query)
    assert 0 < expected["series"][0]["total"] < len([e for e in EVENTS if e.name == "signup"])


async def test_series_filters_on_top_of_the_query_filters(tally: Tally) -> None:
    plan = "properties.plan"
    query = trends(
        [
            ev("purchase", filters=[{"field": plan, "op": "eq", "value": "pro"}]),
            ev("purchase", "users", filters=[{"field": plan, "op": "eq", "value": "team"}]),
            ev("purchase", "avg_sum"),
        ],
        SPRING_DAYS,
        filters=[{"field": "os", "op": "in", "value": ["iOS", "Android"]}],
    )
    await check_trends(tally, query)


# --- breakdown -------------------------------------------------------------------------------

BREAKDOWNS = {
    "plan-top-2-count": trends(
        [ev("purchase")], SPRING_DAYS, breakdown={"field": "properties.plan", "limit": 2}
    ),
    "plan-all-sum": trends(
        [ev("purchase", "sum")], SPRING_DAYS, breakdown={"field": "properties.plan"}
    ),
    "plan-top-2-avg-sum": trends(
        [ev("purchase", "avg_sum")], SPRING_DAYS, breakdown={"field": "properties.plan", "limit": 2}
    ),
    "plan-top-1-filtered": trends(
        [ev("purchase", "users")],
        SPRING_WEEKS,
        breakdown={"field": "properties.plan", "limit": 1},
        filters=[{"field": "properties.amount", "op": "gt", "value": 50}],
    ),
    "os-top-3-users": trends(
        [ev("page.visit", "users")], SPRING_WEEKS, breakdown={"field": "os", "limit": 3}
    ),
    "browser-two-events": trends(
        [ev("purchase"), ev("page.visit", "users")],
        SPRING_WEEKS,
        breakdown={"field": "browser", "limit": 2},
    ),
    "any-event-by-event": trends(
        [ev("*"), ev("*", "users")], SPRING_DAYS, breakdown={"field": "event", "limit": 2}
    ),
    "user-top-5": trends([ev("purchase")], YEAR_MONTHS, breakdown={"field": "user", "limit": 5}),
    "newsletter-boolean": trends(
        [ev("signup"), ev("signup", "users")],
        YEAR_MONTHS,
        breakdown={"field": "properties.newsletter"},
    ),
    # Purchases carry no dur: every value is 0, so the ties go by text, null last.
    "device-type-hourly-fall-back": trends(
        [ev("purchase", "dur"), ev("page.visit", "avg_dur")],
        {"from": "2026-10-24", "to": "2026-10-27", "tz": WARSAW, "interval": "hour"},
        breakdown={"field": "device_type", "limit": 1},
    ),
}


@pytest.mark.parametrize("name", list(BREAKDOWNS))
async def test_breakdown(tally: Tally, name: str) -> None:
    expected = await check_trends(tally, BREAKDOWNS[name])
    limit = BREAKDOWNS[name]["breakdown"].get("limit", 10)
    if limit < 4:
        assert any(s["other"] for s in expected["series"]), "some values are left out"


# --- compare ---------------------------------------------------------------------------------

COMPARE = {
    "warsaw-days": trends(
        [ev("purchase"), ev("purchase", "users")],
        {"from": "2026-04-13", "to": "2026-04-27", "tz": WARSAW},
        compare=True,
    ),
    "utc-breakdown": trends(
        [ev("purchase")],
        {"from": "2026-03-16", "to": "2026-03-30", "tz": "UTC"},
        breakdown={"field": "properties.plan", "limit": 2},
        compare=True,
    ),
    "utc-weeks": trends(
        [ev("page.visit", "avg_dur"), ev("page.visit", "users")],
        {"from": "2026-03-30", "to": "2026-04-27", "tz": "UTC", "interval": "week"},
        compare=True,
    ),
    # The 25-hour day of the fall-back: the previous period is the 25 hours before it.
    "warsaw-fall-back-hours": trends(
        [ev("page.visit")],
        {"from": "2026-10-25", "to": "2026-10-26", "tz": WARSAW, "interval": "hour"},
        compare=True,
    ),
}


@pytest.mark.parametrize("name", list(COMPARE))
async def test_compare(tally: Tally, name: str) -> None:
    expected = await check_trends(tally, COMPARE[name])
    assert any(s["total"] for s in expected["previous"]), "the previous period has events"


# --- users ---------------------------------------------------------------------------------

USERS = {
    "day-warsaw": {"kind": "users", **SPRING_DAYS},
    "week-utc": {"kind": "users", "from": "2026-03-02", "to": "2026-05-04", "interval": "week"},
    "month-warsaw": {"kind": "users", **YEAR_MONTHS},
    "day-new-york-autumn": {
        "kind": "users",
        "from": "2026-10-19",
        "to": "2026-11-09",
        "tz": NEW_YORK,
        "interval": "day",
    },
    "default-day-utc": {"kind": "users", "from": "2026-10-20", "to": "2026-10-30"},
    "week-warsaw-pro-buyers": {
        "kind": "users",
        **SPRING_WEEKS,
        "filters": [{"field": "properties.plan", "op": "eq", "value": "pro"}],
    },
    # ``users_rows`` marks up to 128 buckets per id in one scan; longer periods take two scans
    "128-days-warsaw-one-scan": {  # the last bucket (the mask's top bit) has people
        "kind": "users",
        "from": "2025-11-30",
        "to": "2026-04-07",
        "tz": WARSAW,
        "interval": "day",
    },
    "150-days-warsaw-two-scans": {
        "kind": "users",
        "from": "2026-01-01",
        "to": "2026-05-31",
        "tz": WARSAW,
        "interval": "day",
        "filters": [{"field": "os", "op": "in", "value": ["iOS", "Android"]}],
    },
    "month-utc-mobile": {
        "kind": "users",
        "from": "2026-01-01",
        "to": "2027-01-01",
        "interval": "month",
        "filters": [{"field": "os", "op": "in", "value": ["iOS", "Android"]}],
    },
}


@pytest.mark.parametrize("name", list(USERS))
async def test_users(tally: Tally, name: str) -> None:
    query = USERS[name]
    expected = ORACLE.answer(query)["points"]
    got = (await tally.answer(query))["points"]
    assert [p["t"] for p in got] == [p["t"] for p in expected]
    assert got == expected
    assert any(p["active"] for p in expected)


# --- the data as stored ------------------------------------------------------------------------


async def test_people_and_user_agents_as_stored(tally: Tally) -> None:
    """What the oracle assumes about the stored data, checked through the read API: who is one
    person (ids linked by events carrying both a user and a device) and the parsed user agents."""
    url = f"/api/v1/apps/{tally.app_id}/events"
    for some_id in ("d-02-1", "u-03", "d-03-1", "d-00-0", "d-47-0"):
        response = await tally.client.get(
            url, params={"user": some_id, "limit": "1000"}, auth=tally.auth
        )
        assert response.status_code == 200, response.text
        stored = response.json()["events"]
        ids = ORACLE.ids_of(some_id)
        expected = {e.id for e in EVENTS if e.device in ids or e.user in ids}
        assert {e["id"] for e in stored} == expected, some_id
        for row in stored:
            agent = AGENTS[next(e.agent for e in EVENTS if e.id == row["id"])]
            context = row["context"]
            assert (context["browser"], context["os"], context["device_type"]) == (
                agent.browser,
                agent.os,
                agent.device_type,
            )


# --- errors --------------------------------------------------------------------------------

PLAN_PRO = [{"field": "properties.plan", "op": "eq", "value": "pro"}]
ERRORS = {
    "undefined-property": (
        "undefined_property",
        trends(
            [ev("purchase")], SPRING_DAYS, filters=[{"field": "properties.nope", "op": "is_set"}]
        ),
    ),
    "property-of-another-event": (
        "undefined_property",
        trends(
            [ev("purchase")],
            SPRING_DAYS,
            filters=[{"field": "properties.url", "op": "contains", "value": "/p/"}],
        ),
    ),
    "undefined-breakdown": (
        "undefined_property",
        trends([ev("purchase")], SPRING_DAYS, breakdown={"field": "properties.colour"}),
    ),
    "undefined-in-users": (
        "undefined_property",
        {
            "kind": "users",
            **SPRING_DAYS,
            "filters": [{"field": "properties.nope", "op": "eq", "value": "x"}],
        },
    ),
    "bad-timezone": (
        "invalid_timezone",
        trends([ev("purchase")], {**SPRING_DAYS, "tz": "Mars/Olympus_Mons"}),
    ),
    "too-many-buckets": (
        "too_many_buckets",
        trends([ev("purchase")], {"from": "2026-01-01", "to": "2027-03-01", "interval": "hour"}),
    ),
    "unknown-measure": ("invalid_query", trends([ev("purchase", "median")], SPRING_DAYS)),
    "unknown-interval": (
        "invalid_query",
        trends([ev("purchase")], {**SPRING_DAYS, "interval": "minute"}),
    ),
    "breakdown-limit": (
        "invalid_query",
        trends([ev("purchase")], SPRING_DAYS, breakdown={"field": "properties.plan", "limit": 101}),
    ),
    "date-time-without-offset": (
        "invalid_query",
        trends([ev("purchase")], {**SPRING_DAYS, "from": "2026-03-16T10:00:00"}),
    ),
    "in-without-list": (
        "invalid_query",
        trends(
            [ev("purchase")],
            SPRING_DAYS,
            filters=[{"field": "properties.plan", "op": "in", "value": "pro"}],
        ),
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
async def test_errors(tally: Tally, name: str) -> None:
    code, query = ERRORS[name]
    response = await tally.query(query)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]


async def test_unknown_measure_message_names_the_field(tally: Tally) -> None:
    response = await tally.query(ERRORS["unknown-measure"][1])
    assert response.status_code == 400
    assert "measure" in response.json()["error"]["message"]


async def test_credentials(tally: Tally) -> None:
    query = trends([ev("purchase")], SPRING_DAYS, filters=PLAN_PRO)
    url = f"/api/v1/apps/{tally.app_id}/query"
    response = await tally.client.post(url, json=query)
    assert response.status_code == 401
    response = await tally.query(query, auth=(tally.auth[0], "not-the-secret"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    response = await tally.query(query, auth=tally.other_auth)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
