"""The ``sessions``, ``funnel`` and ``retention`` query kinds (docs/queries.md) against
kinds_oracle.py, computed in plain Python.

analytics_dataset's events and kinds_oracle's are loaded once per module into a real in-process
server (SQLite catalog, embedded DuckDB store): through the native ingest API, and some devices'
sessions through Countly's ``/i/bulk``. Each test sends one query and compares the whole answer
with the oracle's, exactly (floats approximately); the hand-made June cases are also written out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from analytics_dataset import generate
from analytics_stores import STORES, open_store
from kinds_oracle import (
    RANGES,
    SESSION_EVENTS,
    KindsOracle,
    countly_bulks,
    generate_kinds,
    native_batches,
)

from tally.catalog import Catalog, sqlite_url
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits

pytestmark = pytest.mark.asyncio(loop_scope="module")

KIND_EVENTS = generate_kinds()
EVENTS = [*generate(), *KIND_EVENTS]
ORACLE = KindsOracle(EVENTS)

WARSAW = "Europe/Warsaw"
NEW_YORK = "America/New_York"


@dataclass
class Tally:
    client: httpx.AsyncClient
    app_id: str
    auth: tuple[str, str]

    async def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/apps/{self.app_id}/query", json=body, auth=self.auth
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STORES)
async def tally(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tally]:
    data_dir: Path = tmp_path_factory.mktemp("analytics-kinds")
    catalog = Catalog(sqlite_url(data_dir))
    catalog.migrate()
    app = catalog.create_app("Analytics kinds")
    async with open_store(request.param, request, data_dir) as store:
        services = Services(catalog=catalog, store=store, limits=Limits())
        transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
                for agent, payloads in native_batches(EVENTS):
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
                for agent, requests in countly_bulks(KIND_EVENTS):
                    response = await http.post(
                        "/i/bulk",
                        json={"app_key": app.app.app_key, "requests": requests},
                        headers={"user-agent": agent.header},
                    )
                    assert response.status_code == 200, response.text
                    assert response.json() == {"result": "Success"}
                yield Tally(client=http, app_id=app.app.id, auth=(app.app.api_key, app.api_secret))
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


async def check(tally: Tally, query: dict[str, Any]) -> dict[str, Any]:
    expected = ORACLE.answer(query)
    got = await tally.answer(query)
    assert got == approx(expected)
    return expected


# --- sessions --------------------------------------------------------------------------------


def sessions(period: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"kind": "sessions", **period, **extra}


SPRING_DAYS_WARSAW = {"from": "2026-03-16", "to": "2026-04-06", "tz": WARSAW, "interval": "day"}
"""Three weeks around Warsaw's spring-forward (2026-03-29, a 23-hour day)."""
SPRING_WEEKS_NEW_YORK = {
    "from": "2026-03-02",
    "to": "2026-04-27",
    "tz": NEW_YORK,
    "interval": "week",
}
"""Across New York's spring-forward (2026-03-08)."""
AUTUMN_DAYS_NEW_YORK = {"from": "2026-10-19", "to": "2026-11-09", "tz": NEW_YORK, "interval": "day"}
"""Across New York's fall-back (2026-11-01, a 25-hour day)."""
AUTUMN_WEEKS_WARSAW = {"from": "2026-10-05", "to": "2026-11-16", "tz": WARSAW, "interval": "week"}

SESSIONS = {
    "day-warsaw-spring-forward": sessions(SPRING_DAYS_WARSAW),
    "week-new-york-spring-forward": sessions(SPRING_WEEKS_NEW_YORK),
    "day-new-york-fall-back": sessions(AUTUMN_DAYS_NEW_YORK),
    "week-warsaw-autumn": sessions(AUTUMN_WEEKS_WARSAW),
    "day-default-utc": {
        "kind": "sessions",
        "from": "2026-03-20",
        "to": "2026-04-10",
        "interval": "day",
    },
    # Without the two hand-made devices that show bugs (test_session_start_dur_..., and
    # test_session_cooldown_after_an_update).
    "month-utc-year": sessions(
        {"from": "2026-01-01", "to": "2027-01-01", "interval": "month"},
        filters=[
            {"field": "device", "op": "neq", "value": "sx-g"},
            {"field": "device", "op": "neq", "value": "sx-h"},
        ],
    ),
    "hour-warsaw-fall-back": sessions(
        {"from": "2026-10-24", "to": "2026-10-27", "tz": WARSAW, "interval": "hour"}
    ),
    "day-warsaw-ios": sessions(
        SPRING_DAYS_WARSAW, filters=[{"field": "os", "op": "eq", "value": "iOS"}]
    ),
    "week-new-york-not-mobile": sessions(
        SPRING_WEEKS_NEW_YORK, filters=[{"field": "device_type", "op": "neq", "value": "mobile"}]
    ),
    "day-new-york-browsers": sessions(
        AUTUMN_DAYS_NEW_YORK,
        filters=[{"field": "browser", "op": "in", "value": ["Chrome", "Firefox", "Chrome Mobile"]}],
    ),
    "week-warsaw-countly-not-android": sessions(
        AUTUMN_WEEKS_WARSAW,
        filters=[
            {"field": "protocol", "op": "eq", "value": "countly"},
            {"field": "os", "op": "neq", "value": "Android"},
        ],
    ),
    "week-warsaw-os-not-set": sessions(
        {"from": "2026-02-16", "to": "2026-05-04", "tz": WARSAW, "interval": "week"},
        filters=[{"field": "os", "op": "is_not_set"}],
    ),
    # The first bucket is the one holding "from" (only sessions from "from" on count), the last
    # the one holding the end.
    "day-warsaw-date-times": sessions(
        {
            "from": "2026-03-29T12:00:00+02:00",
            "to": "2026-04-02T06:00:00Z",
            "tz": WARSAW,
            "interval": "day",
        }
    ),
    "week-new-york-wednesday-to-thursday": sessions(
        {"from": "2026-10-21", "to": "2026-11-05", "tz": NEW_YORK, "interval": "week"}
    ),
    "empty-july": sessions(
        {"from": "2026-07-01", "to": "2026-07-08", "tz": WARSAW, "interval": "day"}
    ),
}


@pytest.mark.parametrize("name", list(SESSIONS))
async def test_sessions(tally: Tally, name: str) -> None:
    expected = await check(tally, SESSIONS[name])
    assert (expected["total"]["sessions"] > 0) == (name != "empty-july")


async def test_sessions_by_hand(tally: Tally) -> None:
    """kinds_oracle._crafted_sessions, written out: the cooldown (a start 10 s after an end
    continues the session, one 20 s after does not), Countly durations (the sum of the updates'
    and end's dur), Synerise ones (end - start, across a continued session), a start with no end
    (0, or its updates' dur), updates after the period, a session begun before the period (not
    counted, nor its continuation), a user id without a device."""
    query = sessions({"from": "2026-06-10", "to": "2026-06-12", "interval": "day"})
    by_hand = {
        "points": [
            # sx-a: 170, 40; sx-b: 360, 11; sx-c: 0, 90; sx-e: 30; sx-f: 20; su-x: 600
            {
                "t": "2026-06-10T00:00:00+00:00",
                "sessions": 9,
                "duration": 1321.0,
                "avg_duration": 1321 / 9,
            },
            # sx-d: 300 (its update and end come on 06-12); sx-i: 82800 (ends on 06-12, 22:00)
            {
                "t": "2026-06-11T00:00:00+00:00",
                "sessions": 2,
                "duration": 83100.0,
                "avg_duration": 41550.0,
            },
        ],
        "total": {"sessions": 11, "duration": 84421.0, "avg_duration": 84421 / 11},
        "duration_ranges": [
            {"range": "0-10", "sessions": 1},
            {"range": "11-30", "sessions": 3},
            {"range": "31-60", "sessions": 1},
            {"range": "61-180", "sessions": 2},
            {"range": "181-600", "sessions": 3},
            {"range": "601-1800", "sessions": 0},
            {"range": "1801-3600", "sessions": 0},
            {"range": "3601+", "sessions": 1},
        ],
    }
    assert ORACLE.answer(query) == approx(by_hand)
    assert await tally.answer(query) == approx(by_hand)
    # In Warsaw (+02:00) sx-d's and sx-i's starts (06-11 23:58 and 23:00 UTC) are on 06-12,
    # outside the period, and sx-e's first session (06-09 23:59 UTC) is on 06-10, inside it,
    # with its continuation: 113 s; sx-f's (06-10 00:00 UTC) too, its second one (06-12 00:00
    # UTC) not.
    warsaw = sessions({"from": "2026-06-10", "to": "2026-06-12", "tz": WARSAW, "interval": "day"})
    expected = ORACLE.answer(warsaw)
    assert expected["total"] == approx({"sessions": 10, "duration": 1434.0, "avg_duration": 143.4})
    assert await tally.answer(warsaw) == approx(expected)
    # Only the iPhone devices (sx-b, sx-d, sx-e, sx-f): 360, 11, 300, 30, 20.
    iphone = {**query, "filters": [{"field": "os", "op": "eq", "value": "iOS"}]}
    expected = ORACLE.answer(iphone)
    assert expected["total"] == approx({"sessions": 5, "duration": 721.0, "avg_duration": 721 / 5})
    assert await tally.answer(iphone) == approx(expected)


def one_session(day: str, duration: float, in_range: str) -> dict[str, Any]:
    total = {"sessions": 1, "duration": duration, "avg_duration": duration}
    return {
        "points": [{"t": f"{day}T00:00:00+00:00", **total}],
        "total": total,
        "duration_ranges": [
            {"range": name, "sessions": int(name == in_range)} for name, _, _ in RANGES
        ],
    }


async def test_session_start_dur_is_no_part_of_the_duration(tally: Tally) -> None:
    query = sessions({"from": "2026-06-07", "to": "2026-06-08", "interval": "day"})
    by_hand = one_session("2026-06-07", 60.0, "31-60")
    assert ORACLE.answer(query) == approx(by_hand)
    assert await tally.answer(query) == approx(by_hand)


async def test_session_cooldown_after_an_update(tally: Tally) -> None:
    query = sessions({"from": "2026-06-08", "to": "2026-06-09", "interval": "day"})
    by_hand = one_session("2026-06-08", 115.0, "61-180")
    assert ORACLE.answer(query) == approx(by_hand)
    assert await tally.answer(query) == approx(by_hand)


async def test_countly_sessions_by_hand(tally: Tally) -> None:
    """kinds_oracle's cx-a, through /i/bulk with millisecond timestamps: 60 + 30 s, a
    begin_session 10 s after the end_session (the same session), a session_duration of -5
    (counts as 30) and one of 100000 (capped at 86400); a begin_session 20 s later: 40 s."""
    query = sessions({"from": "2026-06-05", "to": "2026-06-06", "interval": "day"})
    by_hand = {
        "points": [
            {
                "t": "2026-06-05T00:00:00+00:00",
                "sessions": 2,
                "duration": 86560.0,
                "avg_duration": 43280.0,
            }
        ],
        "total": {"sessions": 2, "duration": 86560.0, "avg_duration": 43280.0},
        "duration_ranges": [
            {"range": name, "sessions": int(name in ("31-60", "3601+"))} for name, _, _ in RANGES
        ],
    }
    assert ORACLE.answer(query) == approx(by_hand)
    assert await tally.answer(query) == approx(by_hand)


async def test_countly_session_events_as_stored(tally: Tally) -> None:
    """What the oracle assumes of the /i/bulk requests: each is one session event, at its
    timestamp, with its session_duration as dur (counted through a trends query)."""
    query = {
        "kind": "trends",
        "events": [
            {"event": name, "measure": measure}
            for name in SESSION_EVENTS
            for measure in ("count", "dur")
        ],
        "from": "2026-01-01",
        "to": "2027-01-01",
        "interval": "month",
        "filters": [{"field": "protocol", "op": "eq", "value": "countly"}],
    }
    got = await tally.answer(query)
    countly = [e for e in KIND_EVENTS if e.via == "countly"]
    for series in got["series"]:
        mine = [e for e in countly if e.name == series["event"]]
        if series["measure"] == "count":
            assert series["total"] == len(mine) > 0
        else:
            assert series["total"] == approx(float(sum(e.dur or 0 for e in mine)))


# --- funnels ---------------------------------------------------------------------------------


def funnel(steps: list[Any], window: tuple[int, str], period: dict[str, Any], **extra: Any):
    return {
        "kind": "funnel",
        "steps": [{"event": s} if isinstance(s, str) else s for s in steps],
        "window": {"value": window[0], "unit": window[1]},
        **period,
        **extra,
    }


VIEW, CART, CHECKOUT, BUY = "shop.view", "shop.cart", "shop.checkout", "shop.buy"
SPRING_WARSAW = {"from": "2026-03-02", "to": "2026-04-27", "tz": WARSAW}
AUTUMN_UTC = {"from": "2026-10-05", "to": "2026-11-16", "tz": "UTC"}
YEAR_WARSAW = {"from": "2026-01-01", "to": "2027-01-01", "tz": WARSAW}

FUNNELS = {
    "view-cart-buy-2-days-warsaw": funnel([VIEW, CART, BUY], (2, "day"), SPRING_WARSAW),
    "four-steps-12-hours-utc": funnel(
        [
            {"event": VIEW, "filters": [{"field": "properties.campaign", "op": "is_set"}]},
            {"event": CART, "filters": [{"field": "properties.qty", "op": "gte", "value": 2}]},
            CHECKOUT,
            BUY,
        ],
        (12, "hour"),
        AUTUMN_UTC,
    ),
    "view-cart-checkout-90-minutes-mobile": funnel(
        [VIEW, CART, CHECKOUT],
        (90, "minute"),
        {"from": "2026-02-16", "to": "2026-05-04", "tz": NEW_YORK},
        filters=[{"field": "os", "op": "in", "value": ["iOS", "Android"]}],
    ),
    "view-then-view-1-hour": funnel([VIEW, VIEW], (1, "hour"), YEAR_WARSAW),
    "cart-buy-20-minutes": funnel([CART, BUY], (20, "minute"), YEAR_WARSAW),
    "four-steps-10-days-year": funnel(
        [
            VIEW,
            CART,
            {
                "event": CHECKOUT,
                "filters": [{"field": "properties.method", "op": "neq", "value": "transfer"}],
            },
            {"event": BUY, "filters": [{"field": "properties.amount", "op": "gt", "value": 50}]},
        ],
        (10, "day"),
        YEAR_WARSAW,
    ),
    "campaign-top-2": funnel(
        [VIEW, CART, BUY],
        (3, "day"),
        YEAR_WARSAW,
        breakdown={"field": "properties.campaign", "limit": 2},
    ),
    "campaign-all": funnel(
        [VIEW, CART], (12, "hour"), AUTUMN_UTC, breakdown={"field": "properties.campaign"}
    ),
    "device-type-top-1": funnel(
        [VIEW, CART, CHECKOUT, BUY],
        (4, "day"),
        YEAR_WARSAW,
        breakdown={"field": "device_type", "limit": 1},
    ),
    "product-top-3-spring": funnel(
        [VIEW, CART],
        (1, "day"),
        SPRING_WARSAW,
        breakdown={"field": "properties.product", "limit": 3},
    ),
    "cart-quantity-buy": funnel(
        [CART, CHECKOUT, BUY], (5, "day"), YEAR_WARSAW, breakdown={"field": "properties.qty"}
    ),
    "campaign-set-top-2": funnel(
        [{"event": VIEW, "filters": [{"field": "properties.campaign", "op": "is_set"}]}, CART, BUY],
        (3, "day"),
        YEAR_WARSAW,
        breakdown={"field": "properties.campaign", "limit": 2},
    ),
    "view-buy-product-top-1": funnel(
        [VIEW, BUY],
        (7, "day"),
        SPRING_WARSAW,
        breakdown={"field": "properties.product", "limit": 1},
    ),
    "pricing-to-pro-purchase": funnel(
        [
            {
                "event": "page.visit",
                "filters": [{"field": "properties.url", "op": "contains", "value": "/pricing"}],
            },
            {
                "event": "purchase",
                "filters": [{"field": "properties.plan", "op": "eq", "value": "pro"}],
            },
        ],
        (7, "day"),
        YEAR_WARSAW,
    ),
    "signup-purchase-source": funnel(
        ["signup", "purchase", "purchase"],
        (30, "day"),
        YEAR_WARSAW,
        breakdown={"field": "properties.source", "limit": 2},
    ),
    "signup-purchase-newsletter": funnel(
        ["signup", "purchase"],
        (14, "day"),
        {"from": "2026-02-16", "to": "2026-05-04", "tz": "UTC"},
        breakdown={"field": "properties.newsletter"},
    ),
}


@pytest.mark.parametrize("name", list(FUNNELS))
async def test_funnel(tally: Tally, name: str) -> None:
    expected = await check(tally, FUNNELS[name])
    steps = expected["steps"]
    assert steps[0]["count"] > 5 and steps[-1]["count"] > 0, steps
    if "breakdown" in FUNNELS[name] and FUNNELS[name]["breakdown"].get("limit", 10) < 4:
        assert expected["breakdown"][-1]["other"], "some values are left out"


CRAFTED_FUNNEL = funnel(
    [VIEW, CART, BUY], (30, "minute"), {"from": "2026-06-15", "to": "2026-06-17", "tz": "UTC"}
)


async def test_funnel_by_hand(tally: Tally) -> None:
    """kinds_oracle._crafted_funnels, written out. Entries: a..h, j (i comes at the period's end);
    carts (strictly after the view, within 30 min of the entry): a 300 s, b 600 (its cart at the
    view's instant does not count), d 180 (another device of the same person), e 1200, f 120 (its
    earlier cart does not count), g 900 (after the period), h 300; buys: a 900, d 60, f 60 (b's
    and e's come 40 and 35 min after the entry)."""
    by_hand = {
        "steps": [
            {
                "event": VIEW,
                "count": 9,
                "conversion_from_first": 1.0,
                "conversion_from_previous": 1.0,
                "median_seconds_from_previous": None,
            },
            {
                "event": CART,
                "count": 7,
                "conversion_from_first": 7 / 9,
                "conversion_from_previous": 7 / 9,
                "median_seconds_from_previous": 300.0,
            },
            {
                "event": BUY,
                "count": 3,
                "conversion_from_first": 3 / 9,
                "conversion_from_previous": 3 / 7,
                "median_seconds_from_previous": 60.0,
            },
        ]
    }
    assert ORACLE.answer(CRAFTED_FUNNEL) == approx(by_hand)
    assert await tally.answer(CRAFTED_FUNNEL) == approx(by_hand)


async def test_funnel_by_hand_breakdown(tally: Tally) -> None:
    """The campaign of the entry event: spring a, b, e, f (e's later view says autumn); not set:
    d, g, j (j's later view says autumn); summer: c, h (h's earlier view, before the period,
    says autumn), left out."""
    query = {**CRAFTED_FUNNEL, "breakdown": {"field": "properties.campaign", "limit": 2}}
    expected = ORACLE.answer(query)
    groups = [
        (g["value"], g["other"], [s["count"] for s in g["steps"]]) for g in expected["breakdown"]
    ]
    assert groups == [
        ("spring", False, [4, 4, 2]),
        (None, False, [3, 2, 1]),
        (None, True, [2, 1, 0]),
    ]
    assert await tally.answer(query) == approx(expected)


@pytest.mark.parametrize("window", [(1, "hour"), (2, "hour"), (1, "day"), (50, "minute")])
async def test_funnel_by_hand_windows(tally: Tally, window: tuple[int, str]) -> None:
    query = {**CRAFTED_FUNNEL, "window": {"value": window[0], "unit": window[1]}}
    await check(tally, query)


async def test_funnel_with_nobody_entering(tally: Tally) -> None:
    """Counts 0 and, with nothing to divide by, conversions null (docs/queries.md does not say;
    as trends' averages of nothing); no breakdown group."""
    query = funnel(
        [VIEW, CART],
        (1, "day"),
        {"from": "2026-07-01", "to": "2026-07-08"},
        breakdown={"field": "properties.campaign"},
    )
    expected = await check(tally, query)
    assert expected["breakdown"] == []
    assert [s["count"] for s in expected["steps"]] == [0, 0]


# --- retention -------------------------------------------------------------------------------


def retention(
    interval: str,
    periods: int,
    period: dict[str, Any],
    start: Any = "app.install",
    back: Any = "app.use",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "kind": "retention",
        "start_event": {"event": start} if isinstance(start, str) else start,
        "return_event": {"event": back} if isinstance(back, str) else back,
        "interval": interval,
        "periods": periods,
        **period,
        **extra,
    }


RETENTION = {
    "day-warsaw-spring-forward": retention(
        "day", 7, {"from": "2026-03-23", "to": "2026-04-06", "tz": WARSAW}
    ),
    "week-new-york-spring-forward": retention(
        "week", 4, {"from": "2026-03-02", "to": "2026-04-13", "tz": NEW_YORK}
    ),
    "week-utc-autumn-exports": retention(
        "week",
        5,
        {"from": "2026-10-05", "to": "2026-11-16", "tz": "UTC"},
        back={
            "event": "app.use",
            "filters": [{"field": "properties.feature", "op": "eq", "value": "export"}],
        },
    ),
    "day-warsaw-fall-back-long-uses": retention(
        "day",
        10,
        {"from": "2026-10-19", "to": "2026-11-02", "tz": WARSAW},
        back={
            "event": "app.use",
            "filters": [{"field": "properties.minutes", "op": "gt", "value": 10.5}],
        },
    ),
    "day-new-york-fall-back-desktop": retention(
        "day",
        8,
        {"from": "2026-10-26", "to": "2026-11-09", "tz": NEW_YORK},
        filters=[{"field": "device_type", "op": "neq", "value": "desktop"}],
    ),
    "week-warsaw-channels": retention(
        "week",
        6,
        {"from": "2026-02-16", "to": "2026-05-04", "tz": WARSAW},
        start={
            "event": "app.install",
            "filters": [{"field": "properties.channel", "op": "in", "value": ["ads", "store"]}],
        },
    ),
    "use-then-use-week-warsaw": retention(
        "week", 4, {"from": "2026-10-05", "to": "2026-11-16", "tz": WARSAW}, "app.use", "app.use"
    ),
    "day-default-utc": {
        "kind": "retention",
        "start_event": {"event": "app.install"},
        "return_event": {"event": "app.use"},
        "interval": "day",
        "periods": 10,
        "from": "2026-03-09",
        "to": "2026-03-30",
    },
    "signup-purchase-weeks-warsaw": retention(
        "week", 8, {"from": "2026-01-05", "to": "2026-12-28", "tz": WARSAW}, "signup", "purchase"
    ),
    # The first cohort is the bucket holding "from" (only start events from "from" on), the last
    # the one holding the end.
    "week-new-york-wednesday-to-thursday": retention(
        "week", 5, {"from": "2026-03-04", "to": "2026-04-02", "tz": NEW_YORK}
    ),
    "day-warsaw-date-times": retention(
        "day",
        6,
        {"from": "2026-10-24T15:00:00+02:00", "to": "2026-10-30T12:00:00+01:00", "tz": WARSAW},
    ),
}


@pytest.mark.parametrize("name", list(RETENTION))
async def test_retention(tally: Tally, name: str) -> None:
    expected = await check(tally, RETENTION[name])
    cohorts = expected["cohorts"]
    assert sum(c["size"] for c in cohorts) > 5
    assert sum(sum(c["values"][1:]) for c in cohorts) > 0


CRAFTED_RETENTION = retention("day", 3, {"from": "2026-06-22", "to": "2026-06-25", "tz": WARSAW})


async def test_retention_by_hand(tally: Tally) -> None:
    """kinds_oracle._crafted_retention, written out. 06-22: a (its use before the install is not
    period 0; next day: 1), b (a use at the install's instant: 0; two days later: 2), c (after
    midnight: 1), h (installed and used at the period's start: 0; i installs at its end).
    06-23: d (on a linked device: 0), e (installed again on 06-24, used then: 1). 06-24: f
    (installed before the period too; a use before the install on 06-24, not 0; next day: 1,
    after the period's end), g (0; 2)."""
    by_hand = {
        "cohorts": [
            {
                "t": "2026-06-22T00:00:00+02:00",
                "size": 4,
                "values": [2, 2, 1],
                "rates": [0.5, 0.5, 0.25],
            },
            {
                "t": "2026-06-23T00:00:00+02:00",
                "size": 2,
                "values": [1, 1, 0],
                "rates": [0.5, 0.5, 0.0],
            },
            {
                "t": "2026-06-24T00:00:00+02:00",
                "size": 2,
                "values": [1, 1, 1],
                "rates": [0.5, 0.5, 0.5],
            },
        ]
    }
    assert ORACLE.answer(CRAFTED_RETENTION) == approx(by_hand)
    assert await tally.answer(CRAFTED_RETENTION) == approx(by_hand)


async def test_retention_by_hand_in_utc(tally: Tally) -> None:
    """In UTC c's use (22:10 UTC) is on its install's day, 06-22."""
    query = {**CRAFTED_RETENTION, "tz": "UTC"}
    expected = ORACLE.answer(query)
    assert [c["values"] for c in expected["cohorts"]] == [[2, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert await tally.answer(query) == approx(expected)


async def test_retention_by_hand_filtered(tally: Tally) -> None:
    """Exports only: b at its install's instant, d on the linked device, g in period 0."""
    query = {
        **CRAFTED_RETENTION,
        "return_event": {
            "event": "app.use",
            "filters": [{"field": "properties.feature", "op": "eq", "value": "export"}],
        },
    }
    expected = ORACLE.answer(query)
    assert [c["values"] for c in expected["cohorts"]] == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert await tally.answer(query) == approx(expected)


async def test_retention_with_nobody(tally: Tally) -> None:
    query = retention("week", 3, {"from": "2026-07-06", "to": "2026-07-20", "tz": WARSAW})
    expected = await check(tally, query)
    assert [c["size"] for c in expected["cohorts"]] == [0, 0]
    assert expected["cohorts"][0]["rates"] == [None, None, None]


# --- errors --------------------------------------------------------------------------------

NOPE = [{"field": "properties.nope", "op": "is_set"}]
ERRORS = {
    "sessions-undefined-property": (
        "undefined_property",
        sessions(SPRING_DAYS_WARSAW, filters=NOPE),
    ),
    "sessions-bad-timezone": (
        "invalid_timezone",
        sessions({**SPRING_DAYS_WARSAW, "tz": "Europe/Atlantis"}),
    ),
    "funnel-window-in-weeks": ("invalid_query", funnel([VIEW, CART], (1, "week"), SPRING_WARSAW)),
    "funnel-step-property-of-another-event": (
        "undefined_property",
        funnel(
            [
                VIEW,
                {
                    "event": CART,
                    "filters": [{"field": "properties.amount", "op": "gt", "value": 1}],
                },
            ],
            (1, "day"),
            SPRING_WARSAW,
        ),
    ),
    "funnel-undefined-breakdown": (
        "undefined_property",
        funnel([VIEW, CART], (1, "day"), SPRING_WARSAW, breakdown={"field": "properties.colour"}),
    ),
    "retention-in-months": (
        "invalid_query",
        retention("month", 3, {"from": "2026-01-01", "to": "2026-07-01", "tz": WARSAW}),
    ),
    "retention-undefined-return-property": (
        "undefined_property",
        retention(
            "day",
            3,
            {"from": "2026-03-23", "to": "2026-04-06", "tz": WARSAW},
            back={"event": "app.use", "filters": NOPE},
        ),
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
async def test_errors(tally: Tally, name: str) -> None:
    code, query = ERRORS[name]
    response = await tally.client.post(
        f"/api/v1/apps/{tally.app_id}/query", json=query, auth=tally.auth
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
