"""A deterministic event set for the analytics query tests, and an oracle that answers queries
over it in plain Python, following docs/queries.md and never calling Tally's query code.

The events are sent through the native ingest API (``POST /api/v1/events``). That API has no
fields for the request context, so each device sends its events with its own ``User-Agent`` and
Tally parses browser, OS and device type from it (the expected values are written out in
``AGENTS``); ``country_code`` cannot be set this way and is not used.

People are the connected components of the ids linked by events that carry both a user and a
device (docs/protocols.md, Identity): union-find over what was sent.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SEED = 20260329
PEOPLE = 60
BATCH = 1000
"""Events per ingest request."""


@dataclass(frozen=True)
class Agent:
    header: str
    browser: str | None
    os: str | None
    device_type: str | None


AGENTS: dict[str, Agent] = {
    "iphone": Agent(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "mobile",
    ),
    "android": Agent(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
    ),
    "windows": Agent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36",
        "Chrome",
        "Windows",
        "desktop",
    ),
    "mac": Agent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.3; rv:123.0) Gecko/20100101 Firefox/123.0",
        "Firefox",
        "Mac OS X",
        "desktop",
    ),
    "linux": Agent(
        "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
        "Firefox",
        "Linux",
        "desktop",
    ),
    # Says nothing recognisable: browser, OS and device type are not set.
    "unknown": Agent("tally-test-agent/1.0", None, None, None),
}
_AGENT_WEIGHTS = {"iphone": 5, "android": 4, "windows": 4, "mac": 2, "linux": 1, "unknown": 1}

UTC_ZONE = ZoneInfo("UTC")
WARSAW = ZoneInfo("Europe/Warsaw")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")

SPRING = (datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC))
"""Crosses New York's (03-08) and Warsaw's (03-29) spring-forward."""
AUTUMN = (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
"""Crosses Warsaw's (10-25) and New York's (11-01) fall-back."""
SWITCHES = {
    SPRING: [datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC)],
    AUTUMN: [datetime(2026, 10, 25, 1, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)],
}
"""The daylight-saving changes, as UTC instants."""
MIDNIGHT_ZONES = (UTC_ZONE, WARSAW, NEW_YORK, KOLKATA)

PAGES = {
    "/": "Home",
    "/pricing": "Pricing",
    "/docs/start": "Getting started",
    "/blog/dst": "Clocks change",
    "/p/1": "Product 1",
    "/p/2": "Product 2",
}
PLANS = ("free", "pro", "team", None)
_PLAN_WEIGHTS = (35, 30, 15, 20)
SOURCES = ("ads", "organic", "referral")
KINDS = ("anon", "known", "two_devices", "split", "known", "anon", "two_devices")
"""anon: one device, never a user id. known: one device, a user id from the login on.
two_devices: a user id on events of both devices, which links them. split: two devices, the user
id only on the first, so the second stays a person of its own."""


@dataclass
class Event:
    id: str
    name: str
    time: datetime
    """Aware, UTC, whole seconds."""
    device: str
    agent: str
    user: str | None = None
    count: int | None = None
    """As sent: None means not sent (1)."""
    sum: float | None = None
    dur: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def occurrences(self) -> int:
        return 1 if self.count is None else self.count

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": self.device,
        }
        if self.user is not None:
            body["user"] = self.user
        for key in ("count", "sum", "dur"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.properties:
            body["properties"] = dict(self.properties)
        return body


def _tricky(rng: random.Random, season: tuple[datetime, datetime]) -> datetime:
    """An instant close to a local midnight or to a daylight-saving change."""
    start, end = season
    if rng.random() < 0.35:
        base = rng.choice(SWITCHES[season])
        jitter = rng.randint(-5400, 5400)  # both copies of a repeated hour
    else:
        zone = rng.choice(MIDNIGHT_ZONES)
        day = start.date() + timedelta(days=rng.randrange((end - start).days))
        base = datetime.combine(day, time(), zone).astimezone(UTC)
        jitter = 0 if rng.random() < 0.15 else rng.randint(-600, 600)
    instant = base + timedelta(seconds=jitter)
    return min(max(instant, start), end - timedelta(seconds=1))


def _count(rng: random.Random, several: float) -> int | None:
    draw = rng.random()
    if draw < several:
        return rng.randint(2, 5)
    return None if draw < 0.45 else 1


def _amount(rng: random.Random) -> int | float:
    """Whole numbers are sent as JSON integers, the others end in .5 (exact in binary)."""
    if rng.random() < 0.06:
        return 27
    whole = rng.randint(1, 120)
    return whole if rng.random() < 0.5 else whole + 0.5


def generate(seed: int = SEED) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    names = list(_AGENT_WEIGHTS)
    weights = list(_AGENT_WEIGHTS.values())

    def add(name: str, when: datetime, device: str, user: str | None, **fields: Any) -> None:
        events.append(
            Event(
                id=f"q-{len(events):05d}",
                name=name,
                time=when,
                device=device,
                agent=agents[device],
                user=user,
                **fields,
            )
        )

    agents: dict[str, str] = {}
    for p in range(PEOPLE):
        kind = KINDS[p % len(KINDS)]
        devices = [f"d-{p:02d}-{k}" for k in range(2 if kind in ("two_devices", "split") else 1)]
        for device in devices:
            agents[device] = rng.choices(names, weights)[0]
        user = None if kind == "anon" else f"u-{p:02d}"
        seasons = rng.choice([[SPRING], [AUTUMN], [SPRING, AUTUMN], [SPRING, AUTUMN]])
        times: list[datetime] = []
        for season in seasons:
            start, end = season
            begin = start + (end - start) * rng.uniform(0, 0.6)
            finish = begin + (end - begin) * rng.uniform(0.4, 1)
            for _ in range(rng.randint(16, 50)):
                if rng.random() < 0.2:
                    when = _tricky(rng, season)
                else:
                    when = begin + (finish - begin) * rng.random()
                times.append(when.replace(microsecond=0))
        times.sort()
        login = times[len(times) // 3]
        for when in times:
            device = devices[0] if len(devices) == 1 or rng.random() < 0.6 else devices[1]
            carries_user = (
                user is not None
                and when > login
                and rng.random() < 0.7
                and not (kind == "split" and device != devices[0])
            )
            who = user if carries_user else None
            if rng.random() < 0.68:
                path = rng.choice(list(PAGES))
                add(
                    "page.visit",
                    when,
                    device,
                    who,
                    count=_count(rng, 0.1),
                    dur=rng.randint(1, 900) + rng.choice([0, 0.5]),
                    properties={"url": f"https://shop.example{path}", "title": PAGES[path]},
                )
            else:
                count = _count(rng, 0.2)
                amount = _amount(rng)
                properties: dict[str, Any] = {"amount": amount, "sku": f"SKU-{rng.randint(1, 40)}"}
                plan = rng.choices(PLANS, _PLAN_WEIGHTS)[0]
                if plan is not None:
                    properties["plan"] = plan
                add(
                    "purchase",
                    when,
                    device,
                    who,
                    count=count,
                    sum=amount * (1 if count is None else count),
                    properties=properties,
                )
        if user is not None:
            # The login: links the first device to the user.
            add(
                "signup",
                login,
                devices[0],
                user,
                properties={"source": rng.choice(SOURCES), "newsletter": rng.random() < 0.5},
            )
            if kind == "two_devices":
                later = [t for t in times if t > login] or [login]
                add("page.visit", rng.choice(later), devices[1], user, dur=5, properties={})
    # Someone logs in on another person's device: the two become one person.
    add("page.visit", datetime(2026, 4, 15, 12, tzinfo=UTC), "d-00-0", "u-01", dur=12.5)
    return events


def batches(events: Iterable[Event]) -> Iterator[tuple[Agent, list[dict[str, Any]]]]:
    """Ingest requests: each device's events are sent with its user agent, at most BATCH a time."""
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_agent[event.agent].append(event.payload())
    for name, payloads in by_agent.items():
        for i in range(0, len(payloads), BATCH):
            yield AGENTS[name], payloads[i : i + BATCH]


# --- the oracle ---------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """A value as a breakdown names it, and as a string filter compares with it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        assert not value.is_integer(), "whole numbers are sent as integers"
        return repr(value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(value: Any, wanted: Any) -> bool:
    if value is None:
        return False
    if isinstance(wanted, bool):
        return isinstance(value, bool) and value == wanted
    if _is_number(wanted):
        return _is_number(value) and value == wanted
    return text(value) == wanted


def matches(value: Any, op: str, wanted: Any = None) -> bool:
    if op == "is_set":
        return value is not None
    if op == "is_not_set":
        return value is None
    if op == "eq":
        return _equals(value, wanted)
    if op == "neq":
        return not _equals(value, wanted)
    if op == "in":
        return any(_equals(value, item) for item in wanted)
    if op == "contains":
        return value is not None and wanted in text(value)
    if not _is_number(value):
        return False
    return {
        "gt": value > wanted,
        "gte": value >= wanted,
        "lt": value < wanted,
        "lte": value <= wanted,
    }[op]


def field_value(event: Event, name: str) -> Any:
    if name.startswith("properties."):
        return event.properties.get(name.removeprefix("properties."))
    if name == "user":
        return event.user
    if name == "device":
        return event.device
    if name == "protocol":
        return "native"
    if name == "event":
        return event.name
    if name in ("browser", "os", "device_type"):
        return getattr(AGENTS[event.agent], name)
    raise KeyError(f"the oracle does not know field {name!r}")


def bound(value: str, tz: ZoneInfo) -> datetime:
    """A query's ``from`` or ``to`` as a UTC instant."""
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(), tz).astimezone(UTC)
    instant = datetime.fromisoformat(value)
    assert instant.tzinfo is not None
    return instant.astimezone(UTC)


def _next_start(day: date, interval: str) -> date:
    if interval == "day":
        return day + timedelta(days=1)
    if interval == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def bucket_starts(start: datetime, end: datetime, tz: ZoneInfo, interval: str) -> list[datetime]:
    """The starts of the buckets of [start, end), aware in ``tz``. Only for periods that start on
    a bucket boundary (what a partial first bucket should look like is left to the tests that
    avoid it)."""
    local = start.astimezone(tz)
    out: list[datetime] = []
    if interval == "hour":
        assert (local.minute, local.second, local.microsecond) == (0, 0, 0), local
        instant = start.astimezone(UTC)
        while instant < end:
            here = instant.astimezone(tz)
            if here.minute == 0:
                out.append(here)
            instant += timedelta(minutes=15)
        return out
    assert local.time() == time(), local
    assert interval != "week" or local.weekday() == 0, local
    assert interval != "month" or local.day == 1, local
    day = local.date()
    while (begin := datetime.combine(day, time(), tz)).astimezone(UTC) < end:
        out.append(begin)
        day = _next_start(day, interval)
    return out


@dataclass
class Period:
    start: datetime
    end: datetime
    starts: list[datetime]
    """Bucket starts, aware in the query's zone."""
    utc: list[datetime] = field(init=False)
    """The same, in UTC (aware datetimes that share a zone compare as wall times, which would
    mix up the two copies of a repeated hour)."""

    def __post_init__(self) -> None:
        self.utc = [s.astimezone(UTC) for s in self.starts]

    @classmethod
    def of(cls, start: datetime, end: datetime, tz: ZoneInfo, interval: str) -> Period:
        return cls(start, end, bucket_starts(start, end, tz, interval))

    def index(self, instant: datetime) -> int | None:
        if not self.start <= instant < self.end:
            return None
        return bisect_right(self.utc, instant) - 1

    def bucket_end(self, i: int) -> datetime:
        return self.utc[i + 1] if i + 1 < len(self.utc) else self.end


class Oracle:
    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._parent: dict[str, str] = {}
        for event in events:
            self._find(event.device)
            if event.user is not None:
                self._find(event.user)
                if event.user != event.device:
                    self._union(event.user, event.device)
        self.first_seen: dict[str, datetime] = {}
        for event in events:
            person = self.person(event)
            if person not in self.first_seen or event.time < self.first_seen[person]:
                self.first_seen[person] = event.time

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

    # -- queries --

    def answer(self, query: dict[str, Any]) -> dict[str, Any]:
        tz = ZoneInfo(query.get("tz", "UTC"))
        interval = query.get("interval", "day")
        start, end = bound(query["from"], tz), bound(query["to"], tz)
        main = Period.of(start, end, tz, interval)
        if query["kind"] == "users":
            return {"points": self._users(query, main)}
        assert query["kind"] == "trends"
        answer: dict[str, Any] = {"series": []}
        previous = None
        if query.get("compare"):
            previous = Period.of(start - (end - start), start, tz, interval)
            answer["previous"] = []
        for spec in query["events"]:
            main_series, chosen = self._trend(query, spec, main, None)
            answer["series"] += main_series
            if previous is not None:
                answer["previous"] += self._trend(query, spec, previous, chosen)[0]
        return answer

    def _passes(self, event: Event, filters: list[dict[str, Any]]) -> bool:
        return all(
            matches(field_value(event, f["field"]), f["op"], f.get("value")) for f in filters
        )

    def _value(self, events: list[Event], measure: str) -> int | float | None:
        occurrences = sum(e.occurrences for e in events)
        if measure == "count":
            return occurrences
        if measure == "users":
            return len({self.person(e) for e in events})
        if measure in ("sum", "dur"):
            return float(sum(getattr(e, measure) or 0 for e in events))
        assert measure in ("avg_sum", "avg_dur"), measure
        total = sum(getattr(e, measure.removeprefix("avg_")) or 0 for e in events)
        return None if occurrences == 0 else total / occurrences

    def _series(self, spec: dict[str, Any], events: list[Event], period: Period) -> dict[str, Any]:
        buckets: list[list[Event]] = [[] for _ in period.starts]
        for event in events:
            buckets[period.index(event.time)].append(event)  # type: ignore[index]
        measure = spec.get("measure", "count")
        return {
            "event": spec["event"],
            "measure": measure,
            "total": self._value(events, measure),
            "points": [
                {"t": start.isoformat(), "value": self._value(bucket, measure)}
                for start, bucket in zip(period.starts, buckets, strict=True)
            ],
        }

    def _trend(
        self,
        query: dict[str, Any],
        spec: dict[str, Any],
        period: Period,
        chosen: tuple[list[str | None], bool] | None,
    ) -> tuple[list[dict[str, Any]], tuple[list[str | None], bool]]:
        filters = [*query.get("filters", []), *spec.get("filters", [])]
        events = [
            e
            for e in self.events
            if spec["event"] in ("*", e.name)
            and period.index(e.time) is not None
            and self._passes(e, filters)
        ]
        breakdown = query.get("breakdown")
        if breakdown is None:
            return [self._series(spec, events, period)], ([], False)
        groups: dict[str | None, list[Event]] = defaultdict(list)
        for event in events:
            groups[text(field_value(event, breakdown["field"]))].append(event)
        if chosen is None:
            measure = spec.get("measure", "count")
            rank = "count" if measure.startswith("avg_") else measure

            def order(key: str | None) -> tuple[Any, ...]:
                return (-self._value(groups[key], rank), key is None, key or "")  # type: ignore[operator]

            ordered = sorted(groups, key=order)
            limit = breakdown.get("limit", 10)
            chosen = (ordered[:limit], len(ordered) > limit)
        keys, has_other = chosen
        out = []
        for key in keys:
            series = self._series(spec, groups.get(key, []), period)
            out.append({**series, "breakdown": key, "other": False})
        if has_other:
            rest = [e for k, group in groups.items() if k not in keys for e in group]
            rest.sort(key=lambda e: e.time)
            out.append({**self._series(spec, rest, period), "breakdown": None, "other": True})
        return out, chosen

    def _users(self, query: dict[str, Any], period: Period) -> list[dict[str, Any]]:
        filters = query.get("filters", [])
        active: list[set[str]] = [set() for _ in period.starts]
        for event in self.events:
            i = period.index(event.time)
            if i is not None and self._passes(event, filters):
                active[i].add(self.person(event))
        points = []
        for i, people in enumerate(active):
            start, end = period.starts[i].astimezone(UTC), period.bucket_end(i)
            new = sum(1 for p in people if start <= self.first_seen[p] < end)
            points.append(
                {
                    "t": period.starts[i].isoformat(),
                    "active": len(people),
                    "new": new,
                    "returning": len(people) - new,
                }
            )
        return points
