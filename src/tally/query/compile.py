"""Query model -> SQL over the events table, using only the dialect's pieces (``duckdb_sql``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from tally.query import duckdb_sql as dialect
from tally.query import zone_offsets
from tally.query.model import COLUMN_FIELDS, Filter, Interval, Op, property_name
from tally.query.period import Period


@dataclass
class Sql:
    """SQL text with its positional parameters, in order."""

    text: str = ""
    params: list[Any] = field(default_factory=list)

    def __add__(self, other: Sql | str) -> Sql:
        if isinstance(other, str):
            return Sql(self.text + other, list(self.params))
        return Sql(self.text + other.text, self.params + other.params)


def utc_text(instant: datetime) -> str:
    """A UTC instant as text, so parameters are plain values whatever carries them."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def field_text(name: str) -> Sql:
    """A field's value as text, NULL when not set."""
    prop = property_name(name)
    if prop is None:
        return Sql(f"CAST(e.{COLUMN_FIELDS[name]} AS VARCHAR)")
    return Sql(dialect.property_text(), [prop, dialect.json_path(prop)])


def _equals(text: Sql, value: Any) -> Sql:
    if isinstance(value, bool):
        return text + Sql(" = ?", ["true" if value else "false"])
    if isinstance(value, int | float):
        return Sql(dialect.as_number(text.text) + " = ?", [*text.params, float(value)])
    return text + Sql(" = ?", [str(value)])


_COMPARE = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def condition(item: Filter) -> Sql:
    text = field_text(item.field)
    op = item.op
    if op is Op.IS_SET:
        return text + " IS NOT NULL"
    if op is Op.IS_NOT_SET:
        return text + " IS NULL"
    if op is Op.EQ:
        return _equals(text, item.value)
    if op is Op.NEQ:
        return (
            Sql("(") + text + " IS NULL OR NOT coalesce(" + _equals(text, item.value) + ", false))"
        )
    if op is Op.IN:
        assert isinstance(item.value, list)
        parts = [_equals(text, v) for v in item.value]
        out = Sql("(")
        for i, part in enumerate(parts):
            out = out + (" OR " if i else "") + part
        return out + ")"
    if op is Op.CONTAINS:
        return Sql(dialect.contains(text.text), [*text.params, str(item.value)])
    assert isinstance(item.value, int | float)
    number = float(item.value)  # a bound double, as ``_equals`` binds one
    return Sql(f"{dialect.as_number(text.text)} {_COMPARE[op]} ?", [*text.params, number])


def bucket(period: Period, column: str = "e.time") -> Sql:
    """The start of ``column``'s bucket (a naive timestamp: local for day, week and month, UTC
    for hours); group by it, then format with ``keyed``. In UTC the stored time is the local
    time already."""
    interval = period.interval.value
    if period.tz.key == "UTC":
        return Sql(f"date_trunc('{interval}', {column})")
    local = local_time(period, column)
    if period.interval is Interval.HOUR:
        # The UTC instant of the local hour's start: real hours, also in +05:30 zones and in the
        # repeated hour of a fall-back night.
        return Sql(f"{column} - (") + local + " - date_trunc('hour', " + local + "))"
    return Sql(f"date_trunc('{interval}', ") + local + ")"


def local_time(period: Period, column: str) -> Sql:
    """``column`` (naive UTC) as naive local time in the period's zone. Within the period, plus
    the zone's offset of the span it falls in (``zone_offsets``: a comparison per transition);
    outside it (an id's first event, say) by DuckDB's conversion, which costs 8 times as much."""
    spans = zone_offsets.offsets(period.tz.key, period.start, period.end)
    offset = Sql(str(spans[-1][1]))
    if len(spans) > 1:
        offset = Sql("CASE")
        for (_, seconds), (until, _) in pairwise(spans):
            offset = offset + Sql(
                f" WHEN {column} < CAST(? AS TIMESTAMP) THEN {seconds}", [utc_text(until)]
            )
        offset = offset + f" ELSE {spans[-1][1]} END"
    inside = Sql(
        f"CASE WHEN {column} >= CAST(? AS TIMESTAMP) AND {column} < CAST(? AS TIMESTAMP) "
        f"THEN {column} + to_seconds(",
        [utc_text(period.start), utc_text(period.end)],
    )
    return inside + offset + Sql(f") ELSE {dialect.local_time(column)} END", [period.tz.key])


def keyed(grouped: Sql, columns: str) -> Sql:
    """``grouped`` (whose first column ``b`` is a bucket start) with ``b`` as its key text."""
    return Sql(f"SELECT {dialect.bucket_text('b')} AS b, {columns} FROM (") + grouped + ")"


@dataclass
class Scope:
    """Which events: the app's, in the period, with these names (None: all), passing filters."""

    app_id: str
    period: Period
    names: Sequence[str] | None
    filters: Sequence[Filter]
    persons: bool
    """Resolve linked ids to people (needed to count people): the queries count per id first and
    look up the person of each id (the persons CTE, ``prefix``) after, never event by event."""

    def prefix(self) -> Sql:
        if not self.persons:
            return Sql()
        return Sql("WITH RECURSIVE " + dialect.PERSONS_CTE, [self.app_id, self.app_id])

    def source(self) -> Sql:
        """``FROM events e WHERE ...`` for these events."""
        return Sql(" FROM events e WHERE e.app_id = ? AND ", [self.app_id]) + self.condition()

    def condition(self) -> Sql:
        """Whether an event of the app is one of these: in the period, named, passing filters."""
        sql = Sql(
            "e.time >= CAST(? AS TIMESTAMP) AND e.time < CAST(? AS TIMESTAMP)",
            [utc_text(self.period.start), utc_text(self.period.end)],
        )
        if self.names is not None:
            marks = ", ".join("?" * len(self.names))
            sql = sql + Sql(f" AND e.name IN ({marks})", list(self.names))
        for item in self.filters:
            sql = sql + " AND " + condition(item)
        return sql


SERIES_AGGREGATES = {
    "c": "sum(e.count)",
    "s": "sum(e.sum)",
    "d": "sum(e.dur)",
    "u": f"count(DISTINCT {dialect.ACTOR_WITHOUT_PERSONS})",
}
"""The columns ``series_rows`` may compute; the others are answered as NULL."""


def distinct_ids(scope: Scope, keys: Sql) -> Sql:
    """``SELECT DISTINCT keys, raw``: each of ``keys`` with the ids (user id, else device id) of
    the scope's events, for ``per_person``. Events are many and their distinct (keys, id) pairs
    far fewer, so ids are resolved to people after this, not event by event."""
    return (
        Sql("SELECT DISTINCT ")
        + keys
        + f", {dialect.ACTOR_WITHOUT_PERSONS} AS raw"
        + scope.source()
    )


def per_person(rows: Sql, columns: str) -> Sql:
    """``columns`` over ``rows`` (aliased ``x``), ``{person}`` standing for the person of each
    ``x.raw`` id (``person_of``); needs the persons CTE (``Scope.prefix``)."""
    return (
        Sql(f"SELECT {columns.format(person=dialect.person_of('x.raw'))} FROM (")
        + rows
        + ") x GROUP BY ALL"
    )


def series_rows(scope: Scope, breakdown: str | None, columns: Sequence[str]) -> Sql:
    """Per bucket (and breakdown value): occurrences, sum, dur, distinct people, computing only
    ``columns`` (a subset of ``c s d u``: counting distinct people costs far more than sums, so
    a measure asks for what it needs; with ``persons``, people only). Columns: b, v, c, s, d, u."""
    value = field_text(breakdown) if breakdown else Sql("NULL")
    if scope.persons and len(scope.period.buckets()) <= MASK_BUCKETS:
        return scope.prefix() + keyed(people_by_bucket(scope, value), "v, c, s, d, u")
    if scope.persons:
        ids = distinct_ids(scope, bucket(scope.period) + " AS b, " + value + " AS v")
        people = per_person(
            ids,
            "x.b AS b, x.v AS v, NULL AS c, NULL AS s, NULL AS d, count(DISTINCT {person}) AS u",
        )
        return scope.prefix() + keyed(people, "v, c, s, d, u")
    computed = ", ".join(
        f"{SERIES_AGGREGATES[name] if name in columns else 'NULL'} AS {name}"
        for name in SERIES_AGGREGATES
    )
    grouped = (
        Sql("SELECT ")
        + bucket(scope.period)
        + " AS b, "
        + value
        + f" AS v, {computed}"
        + scope.source()
        + " GROUP BY ALL"
    )
    return scope.prefix() + keyed(grouped, "v, c, s, d, u")


def distinct_people(
    scope: Scope,
    *,
    breakdown: str | None = None,
    by_bucket: bool = False,
    exclude: Sequence[str | None] | None = None,
) -> Sql:
    """Distinct people, per breakdown value (column v) and/or bucket (column b); ``exclude``
    keeps only events whose breakdown value is not one of these (the "other" series)."""
    value = field_text(breakdown) if breakdown else Sql("NULL")
    keys = (bucket(scope.period) if by_bucket else Sql("NULL")) + " AS b, "
    keys = keys + (value if exclude is None else Sql("NULL")) + " AS v"
    if scope.persons:
        sql = distinct_ids(scope, keys)
    else:
        actor = dialect.ACTOR_WITHOUT_PERSONS
        sql = Sql("SELECT ") + keys + f", count(DISTINCT {actor}) AS u" + scope.source()
    if exclude is not None and breakdown:
        kept = [v for v in exclude if v is not None]
        not_kept = value + Sql(f" NOT IN ({', '.join('?' * len(kept))})", kept) if kept else None
        if None in exclude:  # "not set" is a top value: the rest is set and not a kept one
            clause = value + " IS NOT NULL"
            if not_kept is not None:
                clause = clause + " AND " + not_kept
        else:
            assert not_kept is not None
            clause = value + " IS NULL OR " + not_kept
        sql = sql + " AND (" + clause + ")"
    if scope.persons:
        return scope.prefix() + keyed(
            per_person(sql, "x.b AS b, x.v AS v, count(DISTINCT {person}) AS u"), "v, u"
        )
    return scope.prefix() + keyed(sql + " GROUP BY ALL", "v, u")


MASK_BUCKETS = 128
"""The most buckets ``users_rows`` marks in one 128-bit mask per id."""
_UNIT_DAYS = {Interval.DAY: 1, Interval.WEEK: 7}


def users_rows(scope: Scope) -> Sql:
    """Per bucket: active people (events passing the filters) and, of those, people whose first
    event ever (all events, no filters) falls in the bucket. Columns: b, active, new.

    Up to ``MASK_BUCKETS`` buckets, one scan gives each id its first event and a bit per bucket
    it was active in (``bucket_masks``): a few hundred thousand ids instead of millions of
    distinct (bucket, id) pairs, 3 times faster at 10M events. Longer periods take two scans."""
    if len(scope.period.buckets()) <= MASK_BUCKETS:
        return bucket_masks(scope)
    first_bucket = bucket(scope.period, "f.first")
    firsts = Sql(
        f"SELECT {dialect.ACTOR_WITHOUT_PERSONS} AS raw, min(e.time) AS first FROM events e "
        "WHERE e.app_id = ? GROUP BY 1",
        [scope.app_id],
    )
    active = distinct_ids(scope, bucket(scope.period) + " AS b")
    if scope.persons:
        # each id's first event and active buckets first, then their people's
        firsts = per_person(firsts, "{person} AS actor, min(x.first) AS first")
        active = per_person(active, "x.b AS b, {person} AS actor")
    else:
        firsts = Sql("SELECT raw AS actor, first FROM (") + firsts + ")"
        active = Sql("SELECT b, raw AS actor FROM (") + active + ")"
    sql = scope.prefix() + (", " if scope.persons else "WITH ")
    sql = sql + "firsts AS (" + firsts + "), active AS (" + active + ") "
    sql = sql + f"SELECT {dialect.bucket_text('a.b')} AS b, count(*) AS active, "
    sql = sql + "count(*) FILTER (WHERE " + first_bucket + " = a.b) AS new "
    return sql + "FROM active a JOIN firsts f USING (actor) GROUP BY a.b"


_IDENTIFIED = f"{dialect.ACTOR_WITHOUT_PERSONS} IS NOT NULL"
"""An event with neither a user nor a device id is nobody's: not an active user, not a person."""


def people_by_bucket(scope: Scope, value: Sql) -> Sql:
    """People per bucket and ``value`` (columns b, v, c, s, d, u with only u counted), from
    one mask of active buckets per (value, id), OR-ed per person (see ``users_rows``)."""
    period = scope.period
    ids = (
        Sql("SELECT ")
        + value
        + f" AS v, {dialect.ACTOR_WITHOUT_PERSONS} AS raw, bit_or("
        + _bucket_bit(period)
        + ") AS mask"
        + scope.source()
        + f" AND {_IDENTIFIED} GROUP BY ALL"
    )
    people = per_person(ids, "x.v AS v, {person} AS actor, bit_or(x.mask) AS mask")
    return (
        Sql("SELECT ")
        + _bucket_start(period, "r.i")
        + " AS b, v, NULL AS c, NULL AS s, NULL AS d, count(*) AS u FROM ("
        + people
        + ") "
        + _set_bits(period)
        + " GROUP BY ALL"
    )


def bucket_masks(scope: Scope) -> Sql:
    """``users_rows`` in one scan: per id its first event ever and a 128-bit mask of the
    period's buckets it was active in (bit i: the i-th bucket, counted from the first bucket's
    start, which is what the dialect's bucket starts count from), then the same per person (the
    ids' masks OR-ed), then per bucket the people whose bit is set."""
    period = scope.period
    ids = (
        Sql(f"SELECT {dialect.ACTOR_WITHOUT_PERSONS} AS raw, min(e.time) AS first, ")
        + "bit_or(CASE WHEN "
        + scope.condition()
        + " THEN "
        + _bucket_bit(period)
        + Sql(
            f" END) AS mask FROM events e WHERE e.app_id = ? AND {_IDENTIFIED} GROUP BY 1",
            [scope.app_id],
        )
    )
    people = per_person(ids, "{person} AS actor, min(x.first) AS first, bit_or(x.mask) AS mask")
    first_index = _bucket_index(period, bucket(period, "first"))
    marked = (
        Sql("SELECT ") + first_index + " AS first_i, mask FROM (" + people + ") WHERE mask <> 0"
    )
    start = _bucket_start(period, "r.i")
    return (
        scope.prefix()
        + (", " if scope.persons else "WITH ")
        + "marked AS ("
        + marked
        + Sql(f") SELECT {dialect.bucket_text(start.text)} AS b, ", start.params)
        + "count(*) AS active, count(*) FILTER (WHERE first_i = r.i) AS new FROM marked "
        + _set_bits(period)
        + " GROUP BY r.i"
    )


def _bucket_bit(period: Period) -> Sql:
    """An event's bucket as a bit of a 128-bit mask."""
    return Sql("1::UHUGEINT << CAST(") + _bucket_index(period, bucket(period)) + " AS UHUGEINT)"


def _set_bits(period: Period) -> str:
    """A row per bucket whose bit is set in ``mask``, the bucket's index as ``r.i``."""
    count = len(period.buckets())
    return f", range({count}) r(i) WHERE (mask >> CAST(r.i AS UHUGEINT)) & 1 = 1"


def _first_bucket(period: Period) -> Sql:
    return Sql("CAST(? AS TIMESTAMP)", [period.buckets()[0].key])


def _bucket_index(period: Period, start: Sql) -> Sql:
    """How many buckets after the period's first the bucket starting at ``start`` is: whole
    days (or months) between the naive local starts, whatever the clocks did; hours between the
    UTC starts of hour buckets."""
    first = _first_bucket(period)
    if period.interval is Interval.MONTH:
        return Sql("date_diff('month', ") + first + ", " + start + ")"
    if period.interval is Interval.HOUR:
        return Sql("(epoch(") + start + ") - epoch(" + first + ")) // 3600"
    days = _UNIT_DAYS[period.interval]
    return Sql("date_diff('day', ") + first + ", " + start + f") // {days}"


def _bucket_start(period: Period, index: str) -> Sql:
    """The start of the bucket ``index`` buckets after the period's first."""
    first = _first_bucket(period)
    whole = f"CAST({index} AS INTEGER)"
    if period.interval is Interval.MONTH:
        return first + f" + to_months({whole})"
    if period.interval is Interval.HOUR:
        return first + f" + to_hours({whole})"
    return first + f" + to_days({whole} * {_UNIT_DAYS[period.interval]})"
