"""Countly's events read API: ``/o?method=events``, ``/o?method=get_events`` and
``/o/analytics/events``, in Countly's shapes (docs/protocols.md, "Reading events").

Countly keeps pre-aggregated documents (a year/month/day/hour tree per event, and one per
segment); Tally keeps the events and computes the same tree at read time with the analytics
query layer (``tally.query.run.Runner``): per-hour count, sum and dur for the event, per-day
values of a segment through a breakdown on ``properties.<segment>``. Segments are the event's
defined properties (Countly events sent through ``/i`` are defined on first sight with their
segmentation keys).

Authentication: the app's API key and secret, as HTTP Basic (``api_key:api_secret``), or as
Countly-style parameters: ``api_key=API_KEY:API_SECRET``, or ``api_key=API_KEY`` with
``api_secret=API_SECRET``; ``app_id`` is the Tally app id. Errors are Countly's
``{"result": ...}`` with Countly's status codes.
"""

from __future__ import annotations

import asyncio
import calendar
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from tally.adapters.base import ApiCredentials, Reply, RequestError
from tally.adapters.countly import as_text, json_param, read_params
from tally.catalog import App
from tally.catalog.definitions import PropertyType
from tally.http.asgi import Receive, Scope, Send, ingest_request, send_reply
from tally.http.auth import basic_credentials
from tally.http.services import Services
from tally.pipeline.app_rules import AppRules
from tally.query.dialects import dialect_of
from tally.query.model import (
    Breakdown,
    Filter,
    Interval,
    Measure,
    Op,
    QueryError,
    SeriesSpec,
    TrendsQuery,
)
from tally.query.period import zone
from tally.query.run import Runner
from tally.sink import StoreUnavailable
from tally.store.base import QueryTooLarge

CONTENT_TYPE: Final = "application/json; charset=utf-8"
CORS_HEADERS: Final = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, GET, OPTIONS"),
    ("access-control-allow-headers", "Authorization, countly-token, Content-Type"),
]
LIMITS: Final = {
    "event_limit": 500,
    "event_segmentation_limit": 100,
    "event_segmentation_value_limit": 1000,
}
"""Countly's default limits, which ``get_events`` reports; Tally does not drop data past them."""
VALUE_LIMIT: Final = 100
"""Segment values read per segment: the analytics breakdown's largest limit."""
INTERNAL_PREFIX: Final = "[CLY]"
NO_SEGMENT: Final = "no-segment"
SEGMENT_TYPES: Final = frozenset(
    {PropertyType.STRING, PropertyType.NUMBER, PropertyType.BOOLEAN, PropertyType.DATETIME}
)
"""Property types that can be segments (Countly ignores arrays; objects have no useful text)."""
HOUR_CHUNK_MONTHS: Final = 12
"""Hour buckets are queried at most a year at a time (a query has at most 10,000 buckets)."""
DAY_CHUNK_MONTHS: Final = 120
"""Day buckets, at most ten years at a time."""
BAD_EVENTS: Final = "Must provide valid array with event keys as events param."

_encode = msgspec.json.Encoder().encode
DAY_KEYS: Final = frozenset(str(d) for d in range(1, 32))
MONTH_KEYS: Final = frozenset(str(m) for m in range(1, 13))
_PERIOD_NAMES: Final = re.compile(r"(\d+)(days|weeks|months)")
_DATE_FORMATS: Final = ("%d-%m-%Y %H:%M:%S", "%d-%m-%Y")

Tree = dict[str, Any]


class CountlyError(Exception):
    """A refused read, answered ``{"result": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reply(status: int, value: Any) -> Reply:
    return Reply(status=status, body=_encode(value), content_type=CONTENT_TYPE)


# --- periods ---------------------------------------------------------------------------------


SPECIAL: Final = "special"
"""``Ndays``, ``Nweeks``, ``Nmonths``, ``[start, end]``: listed day by day."""
MONTHS: Final = "months"
"""``month``: this year, listed month by month."""
DAYS: Final = "days"
"""``day``, ``prevMonth``: one month, listed day by day."""
HOURS: Final = "hours"
"""``hour``, ``yesterday``, ``[t, t]``: one day, listed hour by hour."""


@dataclass(frozen=True)
class CountlyPeriod:
    """A Countly ``period`` in local dates of the request's time zone (both ends inclusive),
    with the previous period of the same length, as Countly's ``getPeriodObj`` computes them."""

    kind: str
    start: date
    end: date
    previous_start: date
    previous_end: date

    def days(self) -> list[date]:
        return list(_days(self.start, self.end))

    def months(self, previous: bool) -> set[tuple[int, int]]:
        """The months whose data Countly reads for this period (and the previous one)."""
        found = {(d.year, d.month) for d in _days(self.start, self.end)}
        if previous:
            found |= {(d.year, d.month) for d in _days(self.previous_start, self.previous_end)}
        return found


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _minus_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _shifted(kind: str, start: date, end: date, by: timedelta | int) -> CountlyPeriod:
    """The period, and the previous one: ``by`` days back, or ``by`` months back."""
    if isinstance(by, int):
        return CountlyPeriod(kind, start, end, _minus_months(start, by), _minus_months(end, by))
    return CountlyPeriod(kind, start, end, start - by, end - by)


def _bound(value: Any, tz: ZoneInfo) -> tuple[datetime, bool]:
    """One end of ``[start, end]``: milliseconds (10 digits: seconds) or ``DD-MM-YYYY[ HH:mm:ss]``
    text. Returns the local time and whether it was a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if len(str(int(abs(number)))) == 10:
            number *= 1000
        return datetime.fromtimestamp(number / 1000, tz), True
    if isinstance(value, str):
        for layout in _DATE_FORMATS:
            try:
                return datetime.strptime(value.strip(), layout).replace(tzinfo=tz), False
            except ValueError:
                continue
    raise ValueError(f"not a period bound: {value!r}")


def parse_period(value: Any, now: datetime, tz: ZoneInfo) -> CountlyPeriod:
    """Countly's ``period``: ``Ndays``/``Nweeks``/``Nmonths``, ``month``, ``day``, ``prevMonth``,
    ``hour``, ``yesterday``, ``[start, end]`` (JSON) or ``{"since": ms}``; default ``30days``.
    Anything else raises ValueError (Countly silently reads 30 days instead)."""
    today = now.astimezone(tz).date()
    if value is None or value == "":
        value = "30days"
    if isinstance(value, str) and ("," in value or value.lstrip().startswith("{")):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise ValueError("period is not valid JSON") from None
    if isinstance(value, dict):
        if set(value) != {"since"}:
            raise ValueError("a period object has only `since`")
        value = [value["since"], round(now.timestamp() * 1000)]
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError("a period range has two ends")
        (first, first_number), (last, last_number) = (_bound(v, tz) for v in value)
        if first_number != last_number:
            raise ValueError("both ends of a period range must be of one kind")
        if first == last:
            return _shifted(HOURS, first.date(), first.date(), timedelta(days=1))
        if first > last:
            raise ValueError("a period range must not end before it starts")
        start, end = first.date(), last.date()
        return _shifted(SPECIAL, start, end, timedelta(days=(end - start).days + 1))
    if not isinstance(value, str):
        raise ValueError("unknown period")
    if value == "month":
        return _shifted(MONTHS, today.replace(month=1, day=1), today, 12)
    if value == "day":
        return _shifted(DAYS, today.replace(day=1), today, 1)
    if value == "prevMonth":
        last = today.replace(day=1) - timedelta(days=1)
        return _shifted(DAYS, last.replace(day=1), last, 1)
    if value == "hour":
        return _shifted(HOURS, today, today, timedelta(days=1))
    if value == "yesterday":
        yesterday = today - timedelta(days=1)
        return _shifted(HOURS, yesterday, yesterday, timedelta(days=1))
    match = _PERIOD_NAMES.fullmatch(value)
    if match is None:
        raise ValueError("unknown period")
    count = int(match.group(1)) * {"days": 1, "weeks": 7, "months": 30}[match.group(2)]
    count = count if count >= 1 else 30
    return _shifted(SPECIAL, today - timedelta(days=count - 1), today, timedelta(days=count))


def month_runs(months: Iterable[tuple[int, int]]) -> list[tuple[date, date]]:
    """Contiguous months as ``[first day, first day after)`` ranges."""
    runs: list[tuple[date, date]] = []
    for year, month in sorted(set(months)):
        first = date(year, month, 1)
        after = _next_month(first)
        if runs and runs[-1][1] == first:
            runs[-1] = (runs[-1][0], after)
        else:
            runs.append((first, after))
    return runs


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _chunks(runs: list[tuple[date, date]], months: int) -> list[tuple[date, date]]:
    out = []
    for start, end in runs:
        while start < end:
            stop = start
            for _ in range(months):
                stop = _next_month(stop)
            stop = min(stop, end)
            out.append((start, stop))
            start = stop
    return out


# --- the trees -------------------------------------------------------------------------------


def segment_value(text: str) -> str:
    """A segment value as a key of Countly's tree: ``1`` ... ``31`` would clash with day keys, so
    Countly stores them as ``[CLY]1`` ... ``[CLY]31``."""
    return INTERNAL_PREFIX + text if text in DAY_KEYS else text


def _add(node: dict[str, Any], c: float, s: float, d: float) -> None:
    """Countly's counters: ``c`` always, ``s`` and ``dur`` once an event had one."""
    node["c"] = node.get("c", 0) + c
    if s or "s" in node:
        node["s"] = node.get("s", 0) + s
    if d or "dur" in node:
        node["dur"] = node.get("dur", 0) + d


def _child(node: dict[str, Any], key: int | str) -> dict[str, Any]:
    child = node.get(str(key))
    if child is None:
        child = node[str(key)] = {}
    return child


def _is_index(key: str) -> bool:
    return key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1


def finish(value: Any) -> Any:
    """Numbers as Countly writes them (sums to 5 decimals, whole numbers without ``.0``), object
    keys in the order JavaScript gives them (integer keys ascending, then the rest as added)."""
    if isinstance(value, dict):
        numeric = sorted((k for k in value if _is_index(k)), key=int)
        rest = [k for k in value if not _is_index(k)]
        return {k: finish(value[k]) for k in (*numeric, *rest)}
    if isinstance(value, list):
        return [finish(v) for v in value]
    if isinstance(value, float):
        value = round(value, 5)
        return int(value) if value.is_integer() else value
    return value


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Countly's deep merge of event trees: numbers add up, objects merge."""
    for key, value in other.items():
        if key not in into:
            into[key] = value
        elif isinstance(value, dict) and isinstance(into[key], dict):
            merge(into[key], value)
        elif isinstance(value, int | float) and isinstance(into[key], int | float):
            into[key] += value
    return into


Cells = dict[tuple[int, ...], list[float]]
"""(year, month, day[, hour]) -> [count, sum, dur]."""


@dataclass
class EventReader:
    """Countly's views of one app's events, computed with the analytics query layer."""

    runner: Runner
    rules: AppRules
    tz: str

    def segments(self, event: str) -> list[str]:
        """The event's segments: its defined properties (under any of its alias names)."""
        keys: set[str] = set()
        for name in self.rules.same_event(event):
            for prop in self.rules.properties.get(name, {}).values():
                if prop.type in SEGMENT_TYPES:
                    keys.add(prop.name)
        return sorted(keys)

    async def _trends(
        self,
        event: str,
        run: tuple[date, date],
        interval: Interval,
        measures: Iterable[Measure],
        segment: str | None = None,
        only: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        filters = []
        if segment is not None and only is not None:
            filters = [Filter(field=f"properties.{segment}", op=Op.IN, value=list(only))]
        query = TrendsQuery(
            from_=run[0].isoformat(),
            to=run[1].isoformat(),
            tz=self.tz,
            interval=interval,
            events=[SeriesSpec(event=event, measure=m, filters=filters) for m in measures],
            breakdown=(
                Breakdown(field=f"properties.{segment}", limit=VALUE_LIMIT) if segment else None
            ),
        )
        answer = await self.runner.run(query)
        return answer["series"]

    async def totals(self, event: str, runs: list[tuple[date, date]]) -> Cells:
        """Count, sum and dur per local hour."""
        cells: Cells = defaultdict(lambda: [0, 0.0, 0.0])
        measures = (Measure.COUNT, Measure.SUM, Measure.DUR)
        for run in _chunks(runs, HOUR_CHUNK_MONTHS):
            for series in await self._trends(event, run, Interval.HOUR, measures):
                slot = measures.index(Measure(series["measure"]))
                for point in series["points"]:
                    if point["value"]:
                        local = datetime.fromisoformat(point["t"])
                        key = (local.year, local.month, local.day, local.hour)
                        cells[key][slot] += point["value"]
        return cells

    async def values(self, event: str, segment: str, runs: list[tuple[date, date]]) -> list[str]:
        """The segment's values in these months: the ``VALUE_LIMIT`` most frequent, as text."""
        counts: dict[str, float] = defaultdict(float)
        for run in runs:
            for series in await self._trends(event, run, Interval.MONTH, [Measure.COUNT], segment):
                value = series["breakdown"]
                if not series["other"] and value not in (None, "") and series["total"]:
                    counts[value] += series["total"]
        ranked = sorted(counts, key=lambda v: (-counts[v], v))
        return ranked[:VALUE_LIMIT]

    async def by_value(
        self, event: str, segment: str, runs: list[tuple[date, date]]
    ) -> dict[str, Cells]:
        """Count, sum and dur per local day for each of the segment's values (at most
        ``VALUE_LIMIT`` per run: the most frequent)."""
        out: dict[str, Cells] = defaultdict(lambda: defaultdict(lambda: [0, 0.0, 0.0]))
        for run in _chunks(runs, DAY_CHUNK_MONTHS):
            counted = await self._trends(event, run, Interval.DAY, [Measure.COUNT], segment)
            kept = [
                s["breakdown"]
                for s in counted
                if not s["other"] and s["breakdown"] not in (None, "")
            ]
            if not kept:
                continue
            # With more values than a breakdown keeps, read sum and dur for the same ones.
            only = kept if any(s["other"] for s in counted) else None
            rest = await self._trends(
                event, run, Interval.DAY, [Measure.SUM, Measure.DUR], segment, only
            )
            slots = {Measure.COUNT: 0, Measure.SUM: 1, Measure.DUR: 2}
            for series in [*counted, *rest]:
                value = series["breakdown"]
                if series["other"] or value not in kept:
                    continue
                slot = slots[Measure(series["measure"])]
                for point in series["points"]:
                    if point["value"]:
                        local = datetime.fromisoformat(point["t"])
                        out[value][(local.year, local.month, local.day)][slot] += point["value"]
        return out

    async def meta(self, event: str, years: list[tuple[date, date]]) -> dict[str, Any] | None:
        """Countly's ``meta``: ``segments`` (those with values) and each one's values."""
        meta: dict[str, Any] = {}
        for segment in self.segments(event):
            values = await self.values(event, segment, years)
            if values:
                meta[segment] = sorted(segment_value(v) for v in values)
        if not meta:
            return None
        return {"segments": sorted(meta), **meta}

    async def tree(
        self,
        event: str,
        segmentation: str | None,
        months: set[tuple[int, int]],
        *,
        day: date | None = None,
        with_meta: bool = True,
    ) -> Tree:
        """Countly's merged time tree of one event for these months, with ``meta``; ``day``:
        that day only, without year and month totals (``action=refresh``)."""
        runs = [(day, day + timedelta(days=1))] if day else month_runs(months)
        tree: Tree = {}
        if segmentation is None:
            for (y, m, d, h), (c, s, du) in (await self.totals(event, runs)).items():
                if (y, m) not in months and day is None:
                    continue
                year = _child(tree, y)
                month = _child(year, m)
                nodes = [_child(month, d)]
                nodes.append(_child(nodes[0], h))
                if day is None:
                    nodes += [year, month]
                for node in nodes:
                    _add(node, c, s, du)
        elif segmentation in self.segments(event):
            for value, cells in (await self.by_value(event, segmentation, runs)).items():
                key = segment_value(value)
                for (y, m, d), (c, s, du) in cells.items():
                    if (y, m) not in months and day is None:
                        continue
                    year = _child(tree, y)
                    month = _child(year, m)
                    nodes = [_child(_child(month, d), key)]
                    if day is None:
                        nodes += [_child(year, key), _child(month, key)]
                    for node in nodes:
                        _add(node, c, s, du)
        if with_meta:
            years = {y for y, _ in months} if day is None else {day.year}
            meta = await self.meta(event, month_runs((y, m) for y in years for m in range(1, 13)))
            if meta is not None:
                tree["meta"] = meta
        return tree


# --- /o/analytics/events: the tree read as Countly's model reads it ----------------------------


def _get(tree: Tree, *path: int | str) -> dict[str, Any] | None:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(str(key))
    return node if isinstance(node, dict) else None


def _counters(node: dict[str, Any] | None) -> dict[str, Any]:
    node = node or {}
    return {"c": node.get("c", 0), "s": node.get("s", 0), "dur": node.get("dur", 0)}


def timeline(tree: Tree, period: CountlyPeriod, bucket: str | None) -> list[dict[str, Any]]:
    """``getSubperiodData``: ``{_id, c, s, dur}`` per day of the period (per month of this year
    for ``month``, per day of the month for ``day``, per hour for one day); ``bucket=daily`` or
    ``monthly`` chooses days or months (whole months) of the period instead."""
    start = period.start
    if bucket == "monthly":
        out = []
        for first, _ in _chunks(month_runs((d.year, d.month) for d in period.days()), 1):
            node = _get(tree, first.year, first.month)
            out.append({"_id": f"{first.year}-{first.month}", **_counters(node)})
        return out
    if bucket == "daily" or period.kind == SPECIAL:
        days = period.days()
    elif period.kind == MONTHS:
        return [
            {"_id": f"{start.year}-{m}", **_counters(_get(tree, start.year, m))}
            for m in range(1, 13)
        ]
    elif period.kind == DAYS:
        last = calendar.monthrange(start.year, start.month)[1]
        days = [start.replace(day=d) for d in range(1, last + 1)]
    else:
        return [
            {
                "_id": f"{start.year}-{start.month}-{start.day} {h}:00",
                **_counters(_get(tree, start.year, start.month, start.day, h)),
            }
            for h in range(24)
        ]
    return [
        {"_id": f"{d.year}-{d.month}-{d.day}", **_counters(_get(tree, d.year, d.month, d.day))}
        for d in days
    ]


def by_segment(tree: Tree, period: CountlyPeriod) -> list[dict[str, Any]]:
    """``getSegmentedData``: ``{_id: value, c, s, dur}`` per segment value over the period,
    most occurrences first."""
    values: set[str] = set()
    for key, year in tree.items():
        if key != "meta" and isinstance(year, dict):
            values.update(k for k in year if k not in MONTH_KEYS)
    start = period.start
    out = []
    for value in sorted(values):
        if period.kind == SPECIAL:
            nodes = [_get(tree, d.year, d.month, d.day, value) for d in period.days()]
            found = [n for n in nodes if n is not None]
            if not found:
                continue
            totals = {"c": 0, "s": 0, "dur": 0}
            for node in found:
                for key, number in _counters(node).items():
                    totals[key] += number
        else:
            path: tuple[int | str, ...] = {
                MONTHS: (start.year,),
                DAYS: (start.year, start.month),
                HOURS: (start.year, start.month, start.day),
            }[period.kind]
            totals = _counters(_get(tree, *path, value))
            if not (totals["c"] or totals["s"] or totals["dur"]):
                continue
        out.append({"_id": value, **totals})
    out.sort(key=lambda entry: -entry["c"])
    return out


# --- requests --------------------------------------------------------------------------------


@dataclass
class ReadRequest:
    params: dict[str, Any]
    app: App
    services: Services
    reader: EventReader
    period: CountlyPeriod
    now: datetime
    tz: ZoneInfo

    @property
    def segmentation(self) -> str | None:
        segment = as_text(self.params.get("segmentation"))
        return None if segment in (None, NO_SEGMENT) else segment

    async def event_names(self) -> list[str]:
        """The app's defined events, ``[CLY]`` ones aside (internal events are never defined)."""
        definitions = await asyncio.to_thread(self.services.catalog.definitions.list, self.app.id)
        return sorted(d.name for d in definitions if not d.name.startswith(INTERNAL_PREFIX))


def event_list(value: Any) -> list[str]:
    """``events``: a JSON array of keys (or one key as a JSON string)."""
    parsed = json_param(value)
    if isinstance(parsed, str):
        return [parsed]
    if not isinstance(parsed, list):
        raise CountlyError(400, BAD_EVENTS)
    return [text for text in (as_text(item) for item in parsed) if text is not None]


async def method_events(request: ReadRequest) -> Any:
    """``/o?method=events``: one event's tree (``event``; default the first defined event),
    or the sum of several (``events``, without ``meta``)."""
    params = request.params
    reader = request.reader
    segmentation = request.segmentation
    if params.get("overview"):
        raise CountlyError(400, 'Invalid parameter "overview"')
    if "events" in params and params["events"] not in (None, ""):
        merged: Tree = {}
        months = request.period.months(previous=True)
        for event in event_list(params["events"]):
            merge(merged, await reader.tree(event, segmentation, months, with_meta=False))
        return merged
    event = as_text(params.get("event"))
    if event is None:
        names = await request.event_names()
        if not names:
            return {}
        event = names[0]
    if params.get("action") == "refresh":
        today = request.now.astimezone(request.tz).date()
        return await reader.tree(event, segmentation, {(today.year, today.month)}, day=today)
    return await reader.tree(event, segmentation, request.period.months(previous=True))


async def method_get_events(request: ReadRequest) -> Any:
    """``/o?method=get_events``: Countly's ``events`` document: ``list``, ``segments`` (only
    once some event has segments) and ``limits``."""
    names = await request.event_names()
    segments = {name: keys for name in names if (keys := request.reader.segments(name))}
    document: dict[str, Any] = {"_id": request.app.id, "list": names}
    if segments:
        document["segments"] = segments
    document["limits"] = dict(LIMITS)
    return document


async def analytics_events(request: ReadRequest) -> Any:
    """``/o/analytics/events``: per-period rows of one event (``event``), or of several, by key
    (``events``); per segment value with ``segmentation``."""
    params = request.params
    event = as_text(params.get("event"))
    if event is not None:
        events, single = [event], True
    elif params.get("events") not in (None, ""):
        events, single = event_list(params["events"]), False
    else:
        raise CountlyError(400, "Must provide event or events")
    segmentation = request.segmentation
    bucket = as_text(params.get("bucket"))
    months = request.period.months(previous=False)
    out: dict[str, Any] = {}
    for name in events:
        tree = await request.reader.tree(name, segmentation, months, with_meta=False)
        if segmentation is None:
            out[name] = timeline(tree, request.period, bucket)
        else:
            out[name] = by_segment(tree, request.period)
    return out[event] if single and event is not None else out


Handler = Callable[[ReadRequest], Awaitable[Any]]
METHODS: Final[dict[str, Handler]] = {"events": method_events, "get_events": method_get_events}
"""``/o``'s methods; any other answers 400 ``Invalid method``."""


def _now(params: dict[str, Any]) -> datetime:
    """``timestamp`` (seconds or milliseconds; the future is clamped), else now."""
    now = time.time()
    raw = params.get("timestamp")
    try:
        number = float(raw) if raw not in (None, "") and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is not None and number > 0:
        seconds = number / 1000 if number >= 1e11 else number
        now = min(now, seconds)
    return datetime.fromtimestamp(now, UTC)


def _credentials(params: dict[str, Any], headers: dict[str, str]) -> ApiCredentials | None:
    basic = basic_credentials(headers.get("authorization"))
    if basic is not None:
        return basic
    key = as_text(params.get("api_key"))
    if key is None:
        return None
    secret = as_text(params.get("api_secret"))
    if secret is None:
        key, _, secret = key.partition(":")
    return ApiCredentials(key, secret)


async def authenticate(
    services: Services, params: dict[str, Any], headers: dict[str, str], app_id: str
) -> App:
    if any(isinstance(params.get(name), dict | list) for name in ("api_key", "api_secret")):
        raise CountlyError(401, "User does not exist")  # an operator, or a list, names nobody
    credentials = _credentials(params, headers)
    if credentials is None:
        if params.get("auth_token") or headers.get("countly-token"):
            raise CountlyError(400, "Token not valid")
        raise CountlyError(400, 'Missing parameter "api_key" or "auth_token"')
    app = await services.resolver.by_api_credentials(credentials.key, credentials.secret)
    if app is None:
        raise CountlyError(401, "User does not exist")
    if app.id != app_id:
        raise CountlyError(401, "User does not have right")
    return app


class CountlyReadEndpoint:
    """``/o`` (``methods``: by ``method``) or ``/o/analytics/events`` (``handler``)."""

    def __init__(
        self,
        services: Services,
        *,
        methods: dict[str, Handler] | None = None,
        handler: Handler | None = None,
    ) -> None:
        self.services = services
        self.methods = methods
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            await send_reply(
                send, Reply(status=200, body=b"", content_type=CONTENT_TYPE), CORS_HEADERS
            )
            return
        try:
            if scope["method"] not in ("GET", "POST"):
                raise CountlyError(405, "Method not allowed")
            reply = _reply(200, finish(await self._answer(scope, receive)))
        except ConnectionAbortedError:
            return
        except CountlyError as error:
            reply = _reply(error.status, {"result": error.message})
        except RequestError as error:
            reply = _reply(error.status, {"result": error.message})
        except QueryError as error:
            reply = _reply(400, {"result": error.message})
        except QueryTooLarge as error:
            reply = _reply(400, {"result": str(error)})
        except StoreUnavailable as error:
            message = f"The event store is unavailable; retry later ({error})"
            reply = _reply(503, {"result": message})
            reply.headers.append(("retry-after", "1"))
        await send_reply(send, reply, CORS_HEADERS)

    async def _answer(self, scope: Scope, receive: Receive) -> Any:
        services = self.services
        request = await ingest_request(scope, receive, services.limits.max_body_bytes)
        params = read_params(request)
        if isinstance(params.get("app_id"), dict | list):
            raise CountlyError(400, 'Invalid parameter "app_id"')  # an operator, or a list
        app_id = as_text(params.get("app_id"))
        if app_id is None:
            raise CountlyError(400, 'Missing parameter "app_id"')
        if len(app_id) != 24:
            raise CountlyError(400, 'Invalid parameter "app_id"')
        handler = self.handler
        if self.methods is not None:
            handler = self.methods.get(as_text(params.get("method")) or "")
            if handler is None:
                raise CountlyError(400, "Invalid method")
        assert handler is not None
        app = await authenticate(services, params, request.headers, app_id)
        try:
            tz = zone(as_text(params.get("tz")) or "UTC")
        except QueryError:
            raise CountlyError(400, 'Invalid parameter "tz"') from None
        now = _now(params)
        try:
            period = parse_period(params.get("period"), now, tz)
        except (ValueError, OverflowError, OSError):
            raise CountlyError(400, 'Invalid parameter "period"') from None
        rules = await services.resolver.rules(app)
        runner = Runner(services.store.run_sql, rules, dialect_of(services.store))
        reader = EventReader(runner, rules, tz.key)
        return await handler(ReadRequest(params, app, services, reader, period, now, tz))


def o_endpoint(services: Services) -> CountlyReadEndpoint:
    """``/o``: ``method=events`` and ``method=get_events``."""
    return CountlyReadEndpoint(services, methods=METHODS)


def analytics_events_endpoint(services: Services) -> CountlyReadEndpoint:
    """``/o/analytics/events``."""
    return CountlyReadEndpoint(services, handler=analytics_events)
