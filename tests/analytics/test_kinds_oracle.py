"""kinds_oracle.py on its own (no server): whether the generated data exercises what
test_query_oracle_kinds.py relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from analytics_dataset import SWITCHES
from kinds_oracle import (
    BOUNDARY_DURATIONS,
    COOLDOWN,
    RANGES,
    SESSION_EVENTS,
    KEvent,
    Session,
    build_sessions,
    generate_kinds,
)
from test_query_oracle_kinds import (
    BUY,
    CART,
    EVENTS,
    FUNNELS,
    KIND_EVENTS,
    ORACLE,
    RETENTION,
    SESSIONS,
    VIEW,
)


def test_generation_is_deterministic() -> None:
    assert [e.payload() for e in generate_kinds()] == [e.payload() for e in KIND_EVENTS]
    assert all(isinstance(e, KEvent) for e in KIND_EVENTS)
    assert len({e.id for e in EVENTS}) == len(EVENTS)


def _all_sessions() -> list[Session]:
    return [s for who, events in ORACLE.by_who.items() for s in build_sessions(who, events)]


def test_the_session_data_covers_the_cases() -> None:
    every = _all_sessions()
    assert len(every) > 700
    # Starts within the cooldown that continue a session, in both styles.
    continued = [s for s in every if s.starts > 1]
    assert sum(1 for s in continued if s.durs) > 10
    assert sum(1 for s in continued if not s.durs and s.end is not None) > 10
    # Starts just after the cooldown: new sessions 16 to 30 s after the device's previous end.
    after = 0
    for events in ORACLE.by_who.values():
        for previous, event in pairwise(events):
            if previous.name == "session.end" and event.name == "session.start":
                after += COOLDOWN < (event.time - previous.time).total_seconds() <= 30
    assert after > 20
    # Starts without an end: with updates (their dur) and without (0).
    open_ = [s for s in every if s.end is None]
    assert sum(1 for s in open_ if s.durs) > 20 and sum(1 for s in open_ if not s.durs) > 20
    # Every range, and durations right at each range's ends, in the generated seasons.
    durations = {s.duration for s in every if s.start >= datetime(2026, 2, 16, tzinfo=UTC)}
    assert set(BOUNDARY_DURATIONS) <= durations
    assert any(not d.is_integer() for d in durations)
    ranges = ORACLE.answer(SESSIONS["month-utc-year"])["duration_ranges"]
    assert [r["range"] for r in ranges] == [name for name, _, _ in RANGES]
    assert all(r["sessions"] > 5 for r in ranges)
    # Countly requests, a session event of a device that carries a user id, user-only sessions.
    assert sum(1 for e in KIND_EVENTS if e.via == "countly") > 300
    assert any(e.name in SESSION_EVENTS and e.device and e.user for e in EVENTS)
    assert any(e.name in SESSION_EVENTS and e.device is None for e in EVENTS)
    # Sessions of the queried periods whose later events fall after the period's end.
    for name in ("day-warsaw-spring-forward", "day-new-york-fall-back", "hour-warsaw-fall-back"):
        period, counted = ORACLE.sessions(SESSIONS[name])
        assert any(e.time >= period.end for s in counted for e in s.events), name
    # Sessions starting right around the daylight-saving changes.
    switches = [t for times in SWITCHES.values() for t in times]
    assert sum(1 for s in every for t in switches if abs(s.start - t) < timedelta(hours=2)) > 10


def test_the_funnel_data_covers_the_cases() -> None:
    query = FUNNELS["view-cart-buy-2-days-warsaw"]
    assert len(ORACLE.funnel_rows(query)) > 40
    # Carts at the very instant of a view of the same person.
    same = 0
    for events in ORACLE.by_person.values():
        views = {e.time for e in events if e.name == VIEW}
        same += any(e.name == CART and e.time in views for e in events)
    assert same > 3
    # People who convert, but only after the window.
    for name in ("view-cart-buy-2-days-warsaw", "four-steps-12-hours-utc", "cart-buy-20-minutes"):
        wide = {**FUNNELS[name], "window": {"value": 400, "unit": "day"}}
        narrow, everything = ORACLE.funnel_answer(FUNNELS[name]), ORACLE.funnel_answer(wide)
        assert narrow["steps"][-1]["count"] < everything["steps"][-1]["count"], name
    # People whose steps counted are on other ids (devices, user ids) than their entry.
    crossing = 0
    rows = ORACLE.funnel_rows({**query, "from": "2026-01-01", "to": "2027-01-01"})
    by_time: dict[tuple[str, datetime], set[tuple[str | None, str | None]]] = {}
    for events in ORACLE.by_person.values():
        for e in events:
            if e.name in (VIEW, CART, BUY):
                by_time.setdefault((e.name, e.time), set()).add((e.device, e.user))
    for _, times in rows:
        names = [VIEW, CART, BUY][: len(times)]
        ids = [by_time[(n, t)] for n, t in zip(names, times, strict=True)]
        crossing += len(times) > 1 and any(i != ids[0] for i in ids[1:])
    assert crossing > 10


def test_the_retention_data_covers_the_cases() -> None:
    """Uses before the install on its day (which period 0 must not count), and uses on another
    id than the install's."""
    before = linked = 0
    tz = ZoneInfo(RETENTION["day-warsaw-spring-forward"]["tz"])
    for events in ORACLE.by_person.values():
        installs = [e for e in events if e.name == "app.install"]
        if not installs:
            continue
        first = installs[0]
        day = first.time.astimezone(tz).date()
        uses = [e for e in events if e.name == "app.use"]
        same_day = [e for e in uses if e.time.astimezone(tz).date() == day]
        before += bool(same_day) and all(e.time < first.time for e in same_day)
        linked += any((e.device, e.user) != (first.device, first.user) for e in uses)
    assert before > 3 and linked > 10
