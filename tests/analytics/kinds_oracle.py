"""Events and an oracle for the ``sessions``, ``funnel`` and ``retention`` query kinds
(docs/queries.md), in plain Python, never calling Tally's query code.

On top of analytics_dataset's events (page visits, purchases, signups of 60 people) come:

- session events of devices: Countly-style sequences (``session.start``, ``session.update`` and
  ``session.end`` with ``dur``, some starts within Countly's 15-second cooldown after an end, some
  20 seconds after), Synerise-style start/end pairs without ``dur``, starts without an end; most
  through the native API, some devices through Countly's ``/i/bulk`` (``begin_session``,
  ``session_duration``, ``end_session``), and a few of user ids without a device;
- shop journeys (``shop.view`` -> ``shop.cart`` -> ``shop.checkout`` -> ``shop.buy``) of people
  with one or two devices, gaps from nothing (the same instant) to weeks, repeated steps;
- app installs and uses (``app.install``, ``app.use``) for retention, uses before the install on
  its day, second installs, uses on a linked second device;
- hand-made cases in June 2026 (no other events then), whose answers the tests also write out
  (test_query_oracle_kinds.py's ``*_by_hand`` tests), some of them showing bugs.

Events stop at 2026-11-16 (``LATEST``): Tally clamps times in the future to the receipt time.

Where the spec leaves a choice open (a start exactly 15 seconds after an end, a step exactly at
the end of the window, a day window across a daylight-saving change, ties that decide a breakdown
value), the oracle raises ``Ambiguous`` instead of choosing, so the data must avoid them.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from analytics_dataset import (
    _AGENT_WEIGHTS,
    AGENTS,
    AUTUMN,
    BATCH,
    KINDS,
    SPRING,
    WARSAW,
    Agent,
    Event,
    Period,
    _next_start,
    _tricky,
    bound,
    matches,
    text,
)

SEED = 20260611
SESSION_DEVICES = 40
COUNTLY_DEVICES = 10
SESSION_USERS = 4
FUNNEL_PEOPLE = 100
RETENTION_PEOPLE = 160

SESSION_EVENTS = ("session.start", "session.update", "session.end")
COOLDOWN = 15
RANGES = (
    ("0-10", None, 10),
    ("11-30", 10, 30),
    ("31-60", 30, 60),
    ("61-180", 60, 180),
    ("181-600", 180, 600),
    ("601-1800", 600, 1800),
    ("1801-3600", 1800, 3600),
    ("3601+", 3600, None),
)
BOUNDARY_DURATIONS = (0, 10, 11, 30, 31, 60, 61, 180, 181, 600, 601, 1800, 1801, 3600, 3601)
WINDOW_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

LATEST = AUTUMN[1]
"""No event from this on: Tally replaces a time in the future with the receipt time, so the
generated events stay before the day these tests were written (2026-11-23)."""


class Ambiguous(AssertionError):
    """The data hits a case docs/queries.md does not decide."""


@dataclass
class KEvent(Event):
    device: str | None  # type: ignore[assignment]
    """None: the event carries only a user id."""
    via: str = "native"
    """``native`` (POST /api/v1/events) or ``countly`` (/i/bulk; session events only)."""
    sent_duration: float | None = None
    """Countly: the ``session_duration`` sent, when it is not ``dur`` (Tally caps it at 86400
    and counts a negative one as 30)."""
    millis: bool = False
    """Countly: the timestamp in milliseconds."""

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.device is None:
            del body["device"]
        return body

    def countly_request(self) -> dict[str, Any]:
        """The Countly SDK request that stores this session event."""
        assert self.via == "countly" and self.name in SESSION_EVENTS and self.device is not None
        seconds = int(self.time.timestamp())
        request: dict[str, Any] = {
            "device_id": self.device,
            "timestamp": seconds * 1000 if self.millis else seconds,
        }
        if self.name == "session.start":
            agent = AGENTS[self.agent]
            request["begin_session"] = 1
            request["metrics"] = {"_app_version": "2.1"} | ({"_os": agent.os} if agent.os else {})
        else:
            assert self.dur is not None
            sent = self.sent_duration
            request["session_duration"] = self.dur if sent is None else sent
            if self.name == "session.end":
                request["end_session"] = 1
        return request


class Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.events: list[KEvent] = []

    def add(
        self,
        name: str,
        when: datetime,
        device: str | None,
        agent: str,
        user: str | None = None,
        **fields: Any,
    ) -> KEvent | None:
        assert when.tzinfo is not None and when.microsecond == 0
        if when >= LATEST:
            return None
        event = KEvent(
            id=f"k-{len(self.events):05d}",
            name=name,
            time=when.astimezone(UTC),
            device=device,
            agent=agent,
            user=user,
            **fields,
        )
        self.events.append(event)
        return event

    def agent(self) -> str:
        return self.rng.choices(list(_AGENT_WEIGHTS), list(_AGENT_WEIGHTS.values()))[0]

    def instant(self, season: tuple[datetime, datetime], tricky: float = 0.25) -> datetime:
        if self.rng.random() < tricky:
            return _tricky(self.rng, season)
        start, end = season
        return (start + (end - start) * self.rng.random()).replace(microsecond=0)


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def at(day: str, clock: str, tz: tzinfo = UTC) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), tz).astimezone(UTC)


# --- sessions --------------------------------------------------------------------------------

_HIGHS = {high for _, _, high in RANGES if high is not None}


def _duration(rng: random.Random, whole: bool) -> float:
    draw = rng.random()
    if draw < 0.35:
        return float(rng.choice(BOUNDARY_DURATIONS))
    value = rng.randint(1, 5000) if draw < 0.75 else rng.randint(1, 300)
    if whole or value in _HIGHS or rng.random() < 0.6:
        return float(value)
    return value + 0.5


def _countly_part(
    b: Builder, t: datetime, who: tuple[str | None, str, str | None], with_end: bool, via: str
) -> datetime:
    """start, updates, end (Countly: every report carries the seconds since the last one)."""
    rng = b.rng
    device, agent, user = who
    b.add("session.start", t, device, agent, user, via=via)
    total = _duration(rng, whole=via == "countly")
    reports = rng.randint(0 if with_end else 1, 3) + (1 if with_end else 0)
    cuts = sorted(rng.randint(0, int(total)) for _ in range(reports - 1))
    durs: list[float] = [hi - lo for lo, hi in zip([0, *cuts], cuts, strict=False)]
    durs.append(total - sum(durs))
    for i, dur in enumerate(durs):
        t += _s(max(1, round(dur)))
        last = with_end and i == len(durs) - 1
        b.add("session.end" if last else "session.update", t, device, agent, user, via=via, dur=dur)
    return t


def _synerise_part(b: Builder, t: datetime, who: tuple[str | None, str, str | None]) -> datetime:
    device, agent, user = who
    b.add("session.start", t, device, agent, user)
    t += _s(max(1, _duration(b.rng, whole=True)))
    # Now and then a device's end carries a user id: the session is still the device's.
    end_user = user if user is not None or b.rng.random() < 0.9 else f"su-{device}"
    b.add("session.end", t, device, agent, end_user)
    return t


PERIOD_EDGES = [
    datetime.combine(date.fromisoformat(day), time(), ZoneInfo(zone)).astimezone(UTC)
    for day, zone in [
        ("2026-03-16", "Europe/Warsaw"),
        ("2026-04-06", "Europe/Warsaw"),
        ("2026-03-02", "America/New_York"),
        ("2026-04-27", "America/New_York"),
        ("2026-10-19", "America/New_York"),
        ("2026-11-09", "America/New_York"),
        ("2026-10-05", "Europe/Warsaw"),
        ("2026-11-16", "Europe/Warsaw"),
        ("2026-10-27", "Europe/Warsaw"),
        ("2026-04-10", "UTC"),
    ]
]
"""Where the tests' sessions periods begin and end."""


def _sessions_of(
    b: Builder, device: str | None, agent: str, user: str | None, via: str, edge: int
) -> None:
    rng = b.rng
    who = (device, agent, user)
    seasons = rng.choice([[SPRING], [AUTUMN], [SPRING, AUTUMN]])
    starts = [b.instant(season, 0.3) for season in seasons for _ in range(rng.randint(5, 14))]
    if edge < 3 * len(PERIOD_EDGES):  # shortly before a queried period's end (or start)
        starts.append(PERIOD_EDGES[edge % len(PERIOD_EDGES)] - _s(rng.randint(5, 300)))
    starts.sort()
    free = starts[0]
    for t in starts:
        if t < free:
            continue
        if via == "countly":
            style = rng.choice(["countly", "countly", "countly", "countly_open"])
        else:
            style = rng.choice(
                ["countly", "countly", "synerise", "synerise", "open", "countly_open"]
            )
        if style == "open":
            b.add("session.start", t, device, agent, user)
        elif style == "countly_open":
            t = _countly_part(b, t, who, False, via)
        else:
            parts = 1 + (rng.randint(1, 2) if rng.random() < 0.3 else 0)
            for part in range(parts):
                if part:
                    t += _s(rng.randint(1, 14))  # within the cooldown: the same session
                if style == "countly":
                    t = _countly_part(b, t, who, True, via)
                else:
                    t = _synerise_part(b, t, who)
            if rng.random() < 0.3:  # just after the cooldown: a new session
                t += _s(rng.choice([16, 20, 20, 30]))
                if style == "countly":
                    t = _countly_part(b, t, who, True, via)
                else:
                    t = _synerise_part(b, t, who)
        free = t + _s(rng.choice([30, 60, 300, 3600, 86400]))


def _sessions(b: Builder) -> None:
    for n in range(SESSION_DEVICES):
        _sessions_of(b, f"s-{n:02d}", b.agent(), None, "native", n)
    for n in range(COUNTLY_DEVICES):
        _sessions_of(b, f"c-{n:02d}", b.agent(), None, "countly", SESSION_DEVICES + n)
    for n in range(SESSION_USERS):
        _sessions_of(b, None, b.agent(), f"su-{n}", "native", SESSION_DEVICES + COUNTLY_DEVICES + n)


def _crafted_sessions(b: Builder) -> None:
    """Hand-made sessions (UTC): on 2026-06-10 and 06-11 for test_sessions_by_hand, on 06-05
    (through Countly) for test_countly_sessions_by_hand, on 06-07 and 06-08 for the tests of two
    bugs."""
    d = "2026-06-10"

    def add(name: str, when: datetime, device: str | None, **fields: Any) -> None:
        agent = "mac" if device is None or device.endswith(("-a", "-c", "-i")) else "iphone"
        b.add(name, when, device, agent, **fields)

    # Countly: 90 s, an end, a start 10 s later (the same session) and 80 s more: one session of
    # 170 s. Then a start 20 s after that end: a new session of 40 s.
    add("session.start", at(d, "10:00:00"), "sx-a")
    add("session.update", at(d, "10:01:00"), "sx-a", dur=60)
    add("session.end", at(d, "10:01:30"), "sx-a", dur=30)
    add("session.start", at(d, "10:01:40"), "sx-a")
    add("session.update", at(d, "10:02:40"), "sx-a", dur=60)
    add("session.end", at(d, "10:03:00"), "sx-a", dur=20)
    add("session.start", at(d, "10:03:20"), "sx-a")
    add("session.end", at(d, "10:04:00"), "sx-a", dur=40)
    # Synerise: start/end pairs, no dur. 300 s, then 10 s later a start that continues it up to
    # 11:06:00 (360 s from the start); 20 s later a new one of 11 s. The device's end events
    # carry a user id: the sessions are still the device's.
    add("session.start", at(d, "11:00:00"), "sx-b")
    add("session.end", at(d, "11:05:00"), "sx-b", user="su-b")
    add("session.start", at(d, "11:05:10"), "sx-b")
    add("session.end", at(d, "11:06:00"), "sx-b", user="su-b")
    add("session.start", at(d, "11:06:20"), "sx-b")
    add("session.end", at(d, "11:06:31"), "sx-b")
    # A start with no end: 0. A start with updates and no end: the updates' 90 s.
    add("session.start", at(d, "12:00:00"), "sx-c")
    add("session.start", at(d, "13:00:00"), "sx-c")
    add("session.update", at(d, "13:01:00"), "sx-c", dur=45)
    add("session.update", at(d, "13:02:00"), "sx-c", dur=45)
    # Starts on the period's last day, ends after the period: 300 s, on 06-11.
    add("session.start", at("2026-06-11", "23:58:00"), "sx-d")
    add("session.update", at("2026-06-12", "00:01:00"), "sx-d", dur=180)
    add("session.end", at("2026-06-12", "00:03:00"), "sx-d", dur=120)
    # Synerise, 23 hours (its end 22 hours after the period): 82800 s, on 06-11.
    add("session.start", at("2026-06-11", "23:00:00"), "sx-i")
    add("session.end", at("2026-06-12", "22:00:00"), "sx-i")
    # Started before the period (not counted), continued 7 s after its end inside the period
    # (still not counted); then a new one of 30 s.
    add("session.start", at("2026-06-09", "23:59:00"), "sx-e")
    add("session.end", at(d, "00:00:05"), "sx-e", dur=65)
    add("session.start", at(d, "00:00:12"), "sx-e")
    add("session.end", at(d, "00:01:00"), "sx-e", dur=48)
    add("session.start", at(d, "00:05:00"), "sx-e")
    add("session.end", at(d, "00:05:30"), "sx-e", dur=30)
    # Exactly at the period's start (counted: 20 s) and at its end (not counted).
    add("session.start", at(d, "00:00:00"), "sx-f")
    add("session.end", at(d, "00:00:20"), "sx-f")
    add("session.start", at("2026-06-12", "00:00:00"), "sx-f")
    add("session.end", at("2026-06-12", "00:00:20"), "sx-f")
    # Through Countly (millisecond timestamps): 60 + 30, 10 s later a begin_session that
    # continues it, session_duration -5 (counts as 30) and 100000 (capped at 86400): 86520 s.
    # 20 s later a new one: 40 s. On 06-05.
    for clock, name, dur, sent in [
        ("10:00:00", "session.start", None, None),
        ("10:01:00", "session.update", 60, None),
        ("10:01:30", "session.end", 30, None),
        ("10:01:40", "session.start", None, None),
        ("10:02:00", "session.update", 30, -5),
        ("10:03:00", "session.end", 86400, 100000),
        ("10:03:20", "session.start", None, None),
        ("10:04:00", "session.end", 40, None),
    ]:
        b.add(
            name,
            at("2026-06-05", clock),
            "cx-a",
            "android",
            via="countly",
            millis=True,
            dur=dur,
            sent_duration=sent,
        )
    # On 06-07 (test_session_start_dur_is_no_part_of_the_duration): a start that carries a
    # dur; the session's duration is its end's 60 s.
    add("session.start", at("2026-06-07", "13:00:00"), "sx-h", dur=7)
    add("session.end", at("2026-06-07", "13:01:00"), "sx-h", dur=60)
    # On 06-08 (test_session_cooldown_after_an_update): an update after the end, then a start
    # 10 s after the end: the same session, 60 + 5 + 50 s.
    add("session.start", at("2026-06-08", "12:00:00"), "sx-g")
    add("session.end", at("2026-06-08", "12:01:00"), "sx-g", dur=60)
    add("session.update", at("2026-06-08", "12:01:05"), "sx-g", dur=5)
    add("session.start", at("2026-06-08", "12:01:10"), "sx-g")
    add("session.end", at("2026-06-08", "12:02:00"), "sx-g", dur=50)
    # A user id without a device (a server-side tracker): its own sessions, 600 s.
    add("session.start", at(d, "14:00:00"), None, user="su-x")
    add("session.end", at(d, "14:10:00"), None, user="su-x")


# --- funnels ---------------------------------------------------------------------------------

CAMPAIGNS = ("spring", "summer", "autumn", None)
_CAMPAIGN_WEIGHTS = (40, 25, 12, 23)


def _gap(rng: random.Random) -> timedelta:
    kind = rng.choices(
        ["same", "seconds", "minutes", "hours", "days", "weeks"], [8, 12, 30, 22, 20, 8]
    )[0]
    seconds = {
        "same": 0,
        "seconds": rng.randint(1, 59),
        "minutes": rng.randint(60, 3599),
        "hours": rng.randint(3600, 86399),
        "days": rng.randint(86400, 6 * 86400),
        "weeks": rng.randint(7 * 86400, 20 * 86400),
    }[kind]
    return _s(seconds)


@dataclass
class _Person:
    devices: list[str]
    agents: dict[str, str]
    user: str | None
    kind: str

    def who(self, rng: random.Random, after_login: bool) -> tuple[str, str, str | None]:
        device = (
            self.devices[0] if len(self.devices) == 1 or rng.random() < 0.55 else self.devices[1]
        )
        carries = (
            self.user is not None
            and after_login
            and rng.random() < 0.6
            and not (self.kind == "split" and device != self.devices[0])
        )
        return device, self.agents[device], self.user if carries else None


def _person(b: Builder, prefix: str, p: int) -> _Person:
    kind = KINDS[p % len(KINDS)]
    devices = [
        f"{prefix}d-{p:02d}-{k}" for k in range(2 if kind in ("two_devices", "split") else 1)
    ]
    user = None if kind == "anon" else f"{prefix}u-{p:02d}"
    return _Person(devices, {d: b.agent() for d in devices}, user, kind)


def _login(b: Builder, person: _Person, when: datetime) -> None:
    """Links the person's devices to their user id (split: only the first)."""
    if person.user is None:
        return
    linked = person.devices if person.kind == "two_devices" else person.devices[:1]
    for device in linked:
        b.add("account.login", when, device, person.agents[device], person.user)


def _funnels(b: Builder) -> None:
    rng = b.rng
    for p in range(FUNNEL_PEOPLE):
        person = _person(b, "f", p)
        seasons = rng.choice([[SPRING], [AUTUMN], [SPRING, AUTUMN]])
        journeys = sorted(b.instant(s) for s in seasons for _ in range(rng.randint(1, 6)))
        login = journeys[len(journeys) // 2]
        _login(b, person, login - _s(rng.randint(60, 7200)))
        for t in journeys:
            campaign = rng.choices(CAMPAIGNS, _CAMPAIGN_WEIGHTS)[0]
            product = f"P-{rng.randint(1, 6)}"
            view_props = {"product": product} | ({"campaign": campaign} if campaign else {})
            b.add("shop.view", t, *person.who(rng, t > login), properties=view_props)
            if rng.random() < 0.2:
                again = t + _s(rng.randint(1, 5400))
                props = {"product": product, "campaign": rng.choice(["spring", "autumn"])}
                b.add("shop.view", again, *person.who(rng, again > login), properties=props)
            for name in ("shop.cart", "shop.checkout", "shop.buy"):
                if rng.random() < 0.28:
                    break
                t += _gap(rng)
                props: dict[str, Any] = {
                    "shop.cart": {"product": product, "qty": rng.randint(1, 3)},
                    "shop.checkout": {"method": rng.choice(["card", "paypal", "transfer"])},
                    "shop.buy": {"amount": rng.randint(5, 200) + rng.choice([0, 0.5])},
                }[name]
                b.add(name, t, *person.who(rng, t > login), properties=props)
                if rng.random() < 0.15:
                    later = t + _gap(rng) + _s(1)
                    b.add(name, later, *person.who(rng, later > login), properties=props)


def _crafted_funnels(b: Builder) -> None:
    """Hand-made journeys, 2026-06-14 to 06-17 (UTC); test_funnel_by_hand writes them out."""

    def add(name: str, day: str, clock: str, device: str, user: str | None = None, **props: Any):
        b.add(name, at(day, clock), device, "android", user, properties=props)

    d = "2026-06-15"
    # a: view, cart 5 min later, buy 15 min after the cart.
    add("shop.view", d, "10:00:00", "fx-a", campaign="spring")
    add("shop.cart", d, "10:05:00", "fx-a", qty=1)
    add("shop.buy", d, "10:20:00", "fx-a", amount=10)
    # b: a cart at the very instant of the view (not after it), another 10 min later; the buy
    # 40 min after the view.
    add("shop.view", d, "10:00:00", "fx-b", campaign="spring")
    add("shop.cart", d, "10:00:00", "fx-b", qty=1)
    add("shop.cart", d, "10:10:00", "fx-b", qty=2)
    add("shop.buy", d, "10:40:00", "fx-b", amount=20)
    # c: only a cart at the instant of the view, then one 45 min later.
    add("shop.view", d, "11:00:00", "fx-c", campaign="summer")
    add("shop.cart", d, "11:00:00", "fx-c", qty=1)
    add("shop.cart", d, "11:45:00", "fx-c", qty=1)
    # d: the view on one device, cart and buy on another; a later login links them.
    add("shop.view", d, "12:00:00", "fx-d1")
    add("shop.cart", d, "12:03:00", "fx-d2", "fu-d", qty=3)
    add("shop.buy", d, "12:04:00", "fx-d2", "fu-d", amount=30)
    add("account.login", d, "13:00:00", "fx-d1", "fu-d")
    # e: two views (the first one is the entry), two carts, the buy 35 min after the entry.
    add("shop.view", d, "13:00:00", "fx-e", campaign="spring")
    add("shop.view", d, "13:10:00", "fx-e", campaign="autumn")
    add("shop.cart", d, "13:20:00", "fx-e", qty=1)
    add("shop.cart", d, "13:25:00", "fx-e", qty=1)
    add("shop.buy", d, "13:35:00", "fx-e", amount=15.5)
    # f: a cart and a buy before the steps before them do not count.
    add("shop.cart", d, "13:55:00", "fx-f", qty=1)
    add("shop.view", d, "14:00:00", "fx-f", campaign="spring")
    add("shop.buy", d, "14:01:00", "fx-f", amount=5)
    add("shop.cart", d, "14:02:00", "fx-f", qty=1)
    add("shop.buy", d, "14:03:00", "fx-f", amount=5)
    # g: the view on the period's last day, the cart after the period (inside the window).
    add("shop.view", "2026-06-16", "23:50:00", "fx-g")
    add("shop.cart", "2026-06-17", "00:05:00", "fx-g", qty=1)
    add("shop.buy", "2026-06-17", "00:30:00", "fx-g", amount=7)
    # h: a view before the period, the entry is the first one inside it.
    add("shop.view", "2026-06-14", "23:59:00", "fx-h", campaign="autumn")
    add("shop.view", d, "00:10:00", "fx-h", campaign="summer")
    add("shop.cart", d, "00:15:00", "fx-h", qty=2)
    # i: at the period's end (not in it).
    add("shop.view", "2026-06-17", "00:00:00", "fx-i", campaign="spring")
    add("shop.cart", "2026-06-17", "00:02:00", "fx-i", qty=1)
    # j: at the period's start, without a campaign; a later view has one.
    add("shop.view", d, "00:00:00", "fx-j")
    add("shop.view", d, "00:20:00", "fx-j", campaign="autumn")


# --- retention -------------------------------------------------------------------------------

FEATURES = ("search", "export", "share")


def _retention(b: Builder) -> None:
    rng = b.rng
    for p in range(RETENTION_PEOPLE):
        person = _person(b, "r", p)
        season = rng.choice([SPRING, AUTUMN])
        first = b.instant(season, 0.35)
        _login(b, person, first + _s(rng.randint(-3 * 86400, 3 * 86400)))
        channel = rng.choice(["ads", "organic", "store", None])
        props = {"channel": channel} if channel else {}
        installs = [first]
        if rng.random() < 0.15:
            installs.insert(0, first - _s(rng.randint(86400, 30 * 86400)))
        if rng.random() < 0.2:
            installs.append(first + _s(rng.randint(3600, 10 * 86400)))
        for when in installs:
            b.add("app.install", when, *person.who(rng, when > first), properties=props)
        uses: list[datetime] = []
        if rng.random() < 0.3:  # shortly before the install
            uses.append(first - _s(rng.randint(60, 5 * 3600)))
        if rng.random() < 0.1:  # at its very instant
            uses.append(first)
        rate = rng.uniform(0.05, 0.5)
        for day in range(0, 50):
            if rng.random() < rate * (0.9 if day else 1.5):
                uses.append(first + _s(day * 86400 + rng.randint(-10 * 3600, 10 * 3600)))
        for when in uses:
            minutes = rng.randint(1, 40) + rng.choice([0, 0.5])
            props = {"feature": rng.choice(FEATURES), "minutes": minutes}
            b.add("app.use", when, *person.who(rng, when > first), properties=props)


def _crafted_retention(b: Builder) -> None:
    """Hand-made installs and uses, 2026-06-21 to 06-26 (local times in Warsaw, +02:00);
    test_retention_by_hand writes them out."""

    def add(name: str, day: str, clock: str, device: str, user: str | None = None, **props: Any):
        b.add(name, at(day, clock, WARSAW), device, "windows", user, properties=props)

    # a: a use before the install on its day (not in period 0), one the next day.
    add("app.use", "2026-06-22", "09:00:00", "rx-a", feature="search", minutes=3)
    add("app.install", "2026-06-22", "10:00:00", "rx-a", channel="ads")
    add("app.use", "2026-06-23", "12:00:00", "rx-a", feature="search", minutes=4)
    # b: a use at the install's instant (period 0), one two days later.
    add("app.install", "2026-06-22", "11:00:00", "rx-b", channel="ads")
    add("app.use", "2026-06-22", "11:00:00", "rx-b", feature="export", minutes=5)
    add("app.use", "2026-06-24", "08:00:00", "rx-b", feature="search", minutes=6)
    # c: installed late in the evening, used after midnight in Warsaw (the same day in UTC).
    add("app.install", "2026-06-22", "23:30:00", "rx-c")
    add("app.use", "2026-06-23", "00:10:00", "rx-c", feature="share", minutes=7)
    # d: installed on one device, used on another; a login links them.
    add("app.install", "2026-06-23", "08:00:00", "rx-d1", channel="store")
    add("app.use", "2026-06-23", "09:00:00", "rx-d2", "ru-d", feature="export", minutes=8)
    add("account.login", "2026-06-23", "10:00:00", "rx-d1", "ru-d")
    # e: installed twice; the first install makes the cohort.
    add("app.install", "2026-06-23", "10:00:00", "rx-e", channel="organic")
    add("app.install", "2026-06-24", "10:00:00", "rx-e", channel="organic")
    add("app.use", "2026-06-24", "11:00:00", "rx-e", feature="search", minutes=9)
    # f: installed before the period, again inside it (its cohort); a use before that install
    # on its day, one the next day (after the period's end).
    add("app.install", "2026-06-21", "12:00:00", "rx-f", channel="ads")
    add("app.use", "2026-06-24", "09:00:00", "rx-f", feature="search", minutes=10)
    add("app.install", "2026-06-24", "12:00:00", "rx-f", channel="ads")
    add("app.use", "2026-06-25", "12:00:00", "rx-f", feature="search", minutes=11)
    # g: an export in period 0, a search in period 2.
    add("app.install", "2026-06-24", "13:00:00", "rx-g")
    add("app.use", "2026-06-24", "14:00:00", "rx-g", feature="export", minutes=12)
    add("app.use", "2026-06-26", "15:00:00", "rx-g", feature="search", minutes=13.5)
    # h: installed and used at the period's very start; i: installed at its end.
    add("app.install", "2026-06-22", "00:00:00", "rx-h")
    add("app.use", "2026-06-22", "00:00:00", "rx-h", feature="share", minutes=1)
    add("app.install", "2026-06-25", "00:00:00", "rx-i")


def generate_kinds(seed: int = SEED) -> list[KEvent]:
    b = Builder(random.Random(seed))
    _sessions(b)
    _crafted_sessions(b)
    _funnels(b)
    _crafted_funnels(b)
    _retention(b)
    _crafted_retention(b)
    return b.events


def native_batches(events: Iterable[Event]) -> Iterator[tuple[Agent, list[dict[str, Any]]]]:
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if getattr(event, "via", "native") == "native":
            by_agent[event.agent].append(event.payload())
    for name, payloads in by_agent.items():
        for i in range(0, len(payloads), BATCH):
            yield AGENTS[name], payloads[i : i + BATCH]


def countly_bulks(events: Iterable[KEvent]) -> Iterator[tuple[Agent, list[dict[str, Any]]]]:
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.via == "countly":
            by_agent[event.agent].append(event.countly_request())
    for name, requests in by_agent.items():
        for i in range(0, len(requests), 200):
            yield AGENTS[name], requests[i : i + 200]


# --- the oracle ------------------------------------------------------------------------------


def value_of(event: Event, name: str) -> Any:
    if name.startswith("properties."):
        return event.properties.get(name.removeprefix("properties."))
    if name in ("user", "device"):
        return getattr(event, name)
    if name == "protocol":
        return getattr(event, "via", "native")
    if name in ("browser", "os", "device_type"):
        return getattr(AGENTS[event.agent], name)
    raise KeyError(f"the oracle does not know field {name!r}")


def passes(event: Event, filters: list[dict[str, Any]]) -> bool:
    return all(matches(value_of(event, f["field"]), f["op"], f.get("value")) for f in filters)


def duration_range(seconds: float) -> str:
    for high in _HIGHS:
        if high < seconds < high + 1:
            raise Ambiguous(f"a duration of {seconds} s is between two ranges' written ends")
    for name, low, high in RANGES:
        if (low is None or seconds > low) and (high is None or seconds <= high):
            return name
    raise AssertionError(seconds)


@dataclass
class Session:
    who: str
    start: datetime
    end: datetime | None = None
    durs: list[float] = field(default_factory=list)
    starts: int = 1
    """session.start events it is made of (more than one: continued within the cooldown)."""
    events: list[Event] = field(default_factory=list)

    @property
    def duration(self) -> float:
        if self.durs:
            return float(sum(self.durs))
        if self.end is not None:
            return (self.end - self.start).total_seconds()
        return 0.0


def build_sessions(who: str, events: list[Event]) -> list[Session]:
    """One device's sessions from its session events (sorted by time), as docs/queries.md says."""
    sessions: list[Session] = []
    current: Session | None = None
    last_end: Event | None = None
    previous: Event | None = None
    for event in events:
        if previous is not None and previous.time == event.time:
            raise Ambiguous(f"{who}: two session events at {event.time}")
        if event.name == "session.start":
            gap = None if last_end is None else (event.time - last_end.time).total_seconds()
            if gap == COOLDOWN:
                raise Ambiguous(f"{who}: a start exactly {COOLDOWN} s after an end")
            if gap is not None and gap < COOLDOWN:
                # Continues the session of the device's previous end, whatever came in between
                # (that session is still the current one: any start since was within the
                # cooldown too).
                assert current is not None
                current.starts += 1
                current.events.append(event)
            else:
                current = Session(who, event.time, events=[event])
                sessions.append(current)
        elif current is not None:
            # Updates and ends; a start's dur is no part of the duration (docs/queries.md: "the
            # sum of the dur of its updates and end").
            current.events.append(event)
            if event.dur is not None:
                current.durs.append(event.dur)
            if event.name == "session.end":
                current.end = event.time
                last_end = event
        previous = event
    return sessions


def _zone(query: dict[str, Any]) -> ZoneInfo:
    return ZoneInfo(query.get("tz", "UTC"))


def period_of(query: dict[str, Any]) -> Period:
    """The query's period and buckets: the first bucket is the one holding ``from``, the last
    the one holding the end (hours only for periods that start on the hour)."""
    tz = _zone(query)
    start, end = bound(query["from"], tz), bound(query["to"], tz)
    interval = query.get("interval", "day")
    if interval == "hour":
        return Period.of(start, end, tz, interval)
    day = start.astimezone(tz).date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    if interval == "month":
        day = day.replace(day=1)
    starts = []
    while (begin := datetime.combine(day, time(), tz)).astimezone(UTC) < end:
        starts.append(begin)
        day = _next_start(day, interval)
    return Period(start, end, starts)


def _steps(names: list[str], rows: list[list[datetime]]) -> list[dict[str, Any]]:
    counts = [sum(1 for times in rows if len(times) > i) for i in range(len(names))]
    out = []
    for i, name in enumerate(names):
        previous = counts[i - 1] if i else counts[0]
        waits = [
            (times[i] - times[i - 1]).total_seconds() for times in rows if i and len(times) > i
        ]
        out.append(
            {
                "event": name,
                "count": counts[i],
                "conversion_from_first": counts[i] / counts[0] if counts[0] else None,
                "conversion_from_previous": counts[i] / previous if previous else None,
                "median_seconds_from_previous": statistics.median(waits) if waits else None,
            }
        )
    return out


class KindsOracle:
    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._parent: dict[str, str] = {}
        for event in events:
            ids = [i for i in (event.user, event.device) if i is not None]
            for i in ids:
                self._find(i)
            if len(ids) == 2 and ids[0] != ids[1]:
                self._union(*ids)
        self.by_person: dict[str, list[Event]] = defaultdict(list)
        self.by_who: dict[str, list[Event]] = defaultdict(list)
        for event in sorted(events, key=lambda e: e.time):
            self.by_person[self.person(event)].append(event)
            if event.name in SESSION_EVENTS:
                self.by_who[event.device if event.device is not None else event.user].append(event)

    def _find(self, node: str) -> str:
        parent = self._parent.setdefault(node, node)
        if parent != node:
            parent = self._parent[node] = self._find(parent)
        return parent

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def person(self, event: Event) -> str:
        return self._find(event.user if event.user is not None else event.device)

    def ids_of(self, some_id: str) -> set[str]:
        root = self._find(some_id)
        return {node for node in self._parent if self._find(node) == root}

    def answer(self, query: dict[str, Any]) -> dict[str, Any]:
        kind = query["kind"]
        if kind == "sessions":
            return self.sessions_answer(query)
        if kind == "funnel":
            return self.funnel_answer(query)
        assert kind == "retention", kind
        return self.retention_answer(query)

    # -- sessions --

    def sessions(self, query: dict[str, Any]) -> tuple[Period, list[Session]]:
        """The sessions that count: their start in the period."""
        period = period_of(query)
        start, end = period.start, period.end
        filters = query.get("filters", [])
        counted = []
        for who, events in self.by_who.items():
            kept = [e for e in events if passes(e, filters)]
            counted += [s for s in build_sessions(who, kept) if start <= s.start < end]
        return period, counted

    def sessions_answer(self, query: dict[str, Any]) -> dict[str, Any]:
        period, sessions = self.sessions(query)
        buckets: list[list[Session]] = [[] for _ in period.starts]
        for session in sessions:
            buckets[period.index(session.start)].append(session)  # type: ignore[index]

        def totals(group: list[Session]) -> dict[str, Any]:
            duration = float(sum(s.duration for s in group))
            return {
                "sessions": len(group),
                "duration": duration,
                "avg_duration": duration / len(group) if group else None,
            }

        ranges = dict.fromkeys((name for name, _, _ in RANGES), 0)
        for session in sessions:
            ranges[duration_range(session.duration)] += 1
        return {
            "points": [
                {"t": s.isoformat(), **totals(group)}
                for s, group in zip(period.starts, buckets, strict=True)
            ],
            "total": totals(sessions),
            "duration_ranges": [{"range": name, "sessions": n} for name, n in ranges.items()],
        }

    # -- funnels --

    def funnel_rows(self, query: dict[str, Any]) -> list[tuple[str | None, list[datetime]]]:
        """Per person entering: the breakdown value at entry and the time of each step reached."""
        tz = _zone(query)
        start, end = bound(query["from"], tz), bound(query["to"], tz)
        window = query.get("window", {"value": 1, "unit": "day"})
        unit = window.get("unit", "day")
        span = _s(window["value"] * WINDOW_SECONDS[unit])
        steps = query["steps"]
        filters = query.get("filters", [])
        breakdown = query.get("breakdown")
        rows = []
        for events in self.by_person.values():
            kept = [e for e in events if passes(e, filters)]
            matching = [
                [e for e in kept if e.name == step["event"] and passes(e, step.get("filters", []))]
                for step in steps
            ]
            entries = [e for e in matching[0] if start <= e.time < end]
            if not entries:
                continue
            entry = entries[0]
            value = None
            if breakdown is not None:
                ties = {
                    text(value_of(e, breakdown["field"])) for e in entries if e.time == entry.time
                }
                if len(ties) > 1:
                    raise Ambiguous(f"entries at the same instant with values {ties}")
                value = text(value_of(entry, breakdown["field"]))
            deadlines = [entry.time + span]
            if unit == "day":  # a day as a calendar day in the zone would differ across DST
                local = entry.time.astimezone(tz).replace(tzinfo=None) + _s(span.total_seconds())
                deadlines.append(local.replace(tzinfo=tz).astimezone(UTC))
            times = [entry.time]
            for candidates in matching[1:]:
                later = [e.time for e in candidates if e.time > times[-1]]
                if not later:
                    break
                nxt = min(later)
                if min(deadlines) <= nxt <= max(deadlines):
                    raise Ambiguous(f"a step at {nxt}, the end of the window")
                if nxt > deadlines[0]:
                    break
                times.append(nxt)
            rows.append((value, times))
        return rows

    def funnel_answer(self, query: dict[str, Any]) -> dict[str, Any]:
        rows = self.funnel_rows(query)
        names = [step["event"] for step in query["steps"]]
        answer: dict[str, Any] = {"steps": _steps(names, [times for _, times in rows])}
        breakdown = query.get("breakdown")
        if breakdown is None:
            return answer
        groups: dict[str | None, list[list[datetime]]] = defaultdict(list)
        for value, times in rows:
            groups[value].append(times)
        ordered = sorted(groups, key=lambda v: (-len(groups[v]), v is None, v or ""))
        limit = breakdown.get("limit", 10)
        sizes = [len(groups[v]) for v in ordered]
        # The spec orders the groups by entries only: ties must not decide the answer.
        if any(a == b for a, b in pairwise(sizes[: limit + 1])):
            raise Ambiguous(f"breakdown groups with as many entries: {sizes}")
        answer["breakdown"] = [
            {"value": v, "other": False, "steps": _steps(names, groups[v])} for v in ordered[:limit]
        ]
        if len(ordered) > limit:
            rest = [times for v in ordered[limit:] for times in groups[v]]
            answer["breakdown"].append({"value": None, "other": True, "steps": _steps(names, rest)})
        return answer

    # -- retention --

    def retention_answer(self, query: dict[str, Any]) -> dict[str, Any]:
        tz = _zone(query)
        interval = query.get("interval", "day")
        assert interval in ("day", "week")
        step = 7 if interval == "week" else 1
        periods = query.get("periods", 7)
        period = period_of(query)
        start, end = period.start, period.end
        cohort_of = {s.date(): i for i, s in enumerate(period.starts)}
        filters = query.get("filters", [])
        first_spec, back_spec = query["start_event"], query["return_event"]

        def bucket(instant: datetime) -> date:
            local = instant.astimezone(tz).date()
            return local - timedelta(days=local.weekday()) if interval == "week" else local

        sizes = [0] * len(period.starts)
        values = [[0] * periods for _ in period.starts]
        for events in self.by_person.values():
            kept = [e for e in events if passes(e, filters)]
            firsts = [
                e
                for e in kept
                if e.name == first_spec["event"]
                and passes(e, first_spec.get("filters", []))
                and start <= e.time < end
            ]
            if not firsts:
                continue
            t0 = firsts[0].time
            c = bucket(t0)
            i = cohort_of[c]
            sizes[i] += 1
            ks = {
                (bucket(e.time) - c).days // step
                for e in kept
                if e.name == back_spec["event"]
                and passes(e, back_spec.get("filters", []))
                and e.time >= t0
            }
            for k in ks:
                if k < periods:
                    values[i][k] += 1
        return {
            "cohorts": [
                {
                    "t": s.isoformat(),
                    "size": size,
                    "values": row,
                    "rates": [v / size if size else None for v in row],
                }
                for s, size, row in zip(period.starts, sizes, values, strict=True)
            ]
        }
