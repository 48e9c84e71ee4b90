"""The query model compiled for the ClickHouse store (``store.clickhouse_*``): the pieces every
ClickHouse query shares (times, buckets, properties, filters, people, which events) and the trends
and users queries. Sessions, funnels and retention are in ``clickhouse_kinds``.

Written for ClickHouse 18.16 (Debian's) as well as current releases, which shapes it:

- No CTE subqueries, recursive CTEs or window functions: per-person work is done on arrays
  (``groupArray``, ``arrayFirst``, lambdas) and the people come from ``clickhouse_persons``.
- Functions on a Nullable NULL give NULL and ``1 OR NULL`` is a type error, so every condition is
  a plain 0/1 (``ifNull(..., 0)``), which is also what DuckDB's WHERE makes of its NULLs.
- Aliases are visible to the whole SELECT (WHERE included), so no alias is a column's name.
- Reads use ``FINAL``: a redelivered event that ReplacingMergeTree has not merged yet counts once.

Times are ``UInt64`` microseconds (``clickhouse_schema``); parameters are positional ``%s``
(``clickhouse_client.positional``). Answers have the DuckDB compiler's rows exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from tally.query.compile import Scope, Sql
from tally.query.model import COLUMN_FIELDS, Filter, Interval, Op, property_name
from tally.query.period import Period
from tally.store.clickhouse_persons import Persons
from tally.store.rows import micros

EVENTS = "events FINAL"
DAY_KEY = "toDate(toDateTime(intDiv(time, 1000000), 'UTC'))"
"""The sort key's day (``clickhouse_schema.DAY``): bounding it lets 18.16 skip the key's range."""


def seconds(column: str = "time") -> str:
    """A microseconds column as a ``DateTime`` (whole seconds: buckets never need the rest)."""
    return f"toDateTime(intDiv({column}, 1000000), 'UTC')"


_START = {
    Interval.HOUR: "toStartOfHour",
    Interval.DAY: "toDate",
    Interval.WEEK: "toMonday",
    Interval.MONTH: "toStartOfMonth",
}


def bucket_start(column: str, interval: Interval, zone: str) -> Sql:
    """The bucket of ``column`` (microseconds): a local ``Date`` for day/week/month, the
    ``DateTime`` instant of the local hour's start for hours (real hours, as DuckDB's)."""
    return Sql(f"{_START[interval]}({seconds(column)}, %s)", [zone])


def bucket_text(start: str, interval: Interval) -> str:
    """A bucket start as ``period.Bucket.key``: naive local midnight, or the UTC hour."""
    if interval is Interval.HOUR:
        return f"toString({start}, 'UTC')"
    return f"concat(toString({start}), ' 00:00:00')"


def property_text(name: str) -> Sql:
    """As ``duckdb_sql.property_text``: the value as text, NULL when not set, JSON null (left
    out of the arrays), or listed in ``undefined_properties``."""
    return Sql(
        "if(has(undefined_properties, %s) OR indexOf(prop_keys, %s) = 0, NULL, "
        "prop_values[indexOf(prop_keys, %s)])",
        [name, name, name],
    )


def field_text(name: str) -> Sql:
    """A field's value as text (Nullable), NULL when not set."""
    prop = property_name(name)
    if prop is None:
        return Sql(COLUMN_FIELDS[name])
    return property_text(prop)


def _equals(text: Sql, value: object) -> Sql:
    """1 when equal, else 0 (NULL text, or text that is no number for a number, is not)."""
    if isinstance(value, bool):
        return Sql("ifNull(") + text + Sql(" = %s, 0)", ["true" if value else "false"])
    if isinstance(value, int | float):
        return Sql("ifNull(toFloat64OrNull(") + text + Sql(") = %s, 0)", [float(value)])
    return Sql("ifNull(") + text + Sql(" = %s, 0)", [str(value)])


_COMPARE = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def condition(item: Filter) -> Sql:
    """A filter as 0/1 with ``compile.condition``'s meaning."""
    text = field_text(item.field)
    op = item.op
    if op is Op.IS_SET:
        return Sql("isNotNull(") + text + ")"
    if op is Op.IS_NOT_SET:
        return Sql("isNull(") + text + ")"
    if op is Op.EQ:
        return _equals(text, item.value)
    if op is Op.NEQ:
        return Sql("NOT ") + _equals(text, item.value)
    if op is Op.IN:
        assert isinstance(item.value, list)
        out = Sql("(")
        for i, value in enumerate(item.value):
            out = out + (" OR " if i else "") + _equals(text, value)
        return out + ")"
    if op is Op.CONTAINS:
        return Sql("ifNull(position(") + text + Sql(", %s) > 0, 0)", [str(item.value)])
    number = item.value
    assert isinstance(number, int | float)
    return Sql("ifNull(toFloat64OrNull(") + text + Sql(f") {_COMPARE[op]} %s, 0)", [float(number)])


def flag(names: Sequence[str], filters: Sequence[Filter]) -> Sql:
    """0/1: the event has one of ``names`` and passes ``filters`` (funnel steps, retention)."""
    out = Sql(f"(name IN ({', '.join('%s' for _ in names)})", list(names))
    for item in filters:
        out = out + " AND " + condition(item)
    return out + ")"


ACTOR = "ifNull(user_id, device_id)"


def actor(scope: Scope) -> Sql:
    """Who did it: the person of their id with ``scope.persons`` (``clickhouse_persons``), else
    the id as stored (customer id, else device id)."""
    if not scope.persons:
        return Sql(ACTOR)
    persons = Persons(scope.app_id)
    table = "tupleElement((SELECT (groupArray(id), groupArray(person)) FROM %s), {n})"
    return Sql(
        f"transform({ACTOR}, {table.format(n=1)}, {table.format(n=2)}, {ACTOR})",
        [persons, persons],
    )


def people(scope: Scope) -> Sql:
    """Distinct people: 0, not NULL, over no rows (``uniqExact`` of a Nullable gives NULL)."""
    return Sql("ifNull(uniqExact(") + actor(scope) + "), 0)"


def in_scope(scope: Scope) -> Sql:
    """0/1 for the scope's events, given the app (period, names, filters)."""
    period = scope.period
    sql = Sql("time >= %s AND time < %s", [micros(period.start), micros(period.end)])
    if scope.names is not None:
        sql = sql + Sql(f" AND name IN ({', '.join('%s' for _ in scope.names)})", list(scope.names))
    for item in scope.filters:
        sql = sql + " AND " + condition(item)
    return sql


def day_bounds(period: Period) -> Sql:
    """The sort key's day range holding the period (for the index)."""
    first = period.start.astimezone(UTC).date().isoformat()
    last = period.end.astimezone(UTC).date().isoformat()
    return Sql(f"{DAY_KEY} >= toDate(%s) AND {DAY_KEY} <= toDate(%s)", [first, last])


def source(scope: Scope) -> Sql:
    """``FROM ... WHERE ...`` for the scope's events."""
    return (
        Sql(f" FROM {EVENTS} WHERE app_id = %s AND ", [scope.app_id])
        + day_bounds(scope.period)
        + " AND "
        + in_scope(scope)
    )


SUMS = {"c": "sum(count)", "s": "sum(sum)", "d": "sum(dur)"}


def series_rows(scope: Scope, breakdown: str | None, columns: Sequence[str]) -> Sql:
    """As ``compile.series_rows``, computing only ``columns``. Columns: b, v, c, s, d, u."""
    value = field_text(breakdown) if breakdown else Sql("NULL")
    sql = Sql("SELECT ") + bucket_start("time", scope.period.interval, scope.period.tz.key)
    sql = sql + " AS b0, " + value + " AS v"
    for name, aggregate in SUMS.items():
        sql = sql + f", {aggregate if name in columns else 'NULL'} AS {name}"
    sql = sql + ", " + (people(scope) if "u" in columns else Sql("NULL")) + " AS u"
    sql = sql + source(scope) + " GROUP BY b0, v"
    text = bucket_text("b0", scope.period.interval)
    return Sql(f"SELECT {text} AS b, v, c, s, d, u FROM (") + sql + ")"


def distinct_people(
    scope: Scope,
    *,
    breakdown: str | None = None,
    by_bucket: bool = False,
    exclude: Sequence[str | None] | None = None,
) -> Sql:
    """As ``compile.distinct_people``. Columns: b, v, u."""
    value = field_text(breakdown) if breakdown else Sql("NULL")
    interval = scope.period.interval
    sql = Sql("SELECT ")
    sql = sql + (bucket_start("time", interval, scope.period.tz.key) if by_bucket else Sql("NULL"))
    sql = sql + " AS b0, " + (value if exclude is None else Sql("NULL")) + " AS v, "
    sql = sql + people(scope) + " AS u" + source(scope)
    if exclude is not None and breakdown:
        kept = [v for v in exclude if v is not None]
        not_kept = None
        if kept:
            marks = ", ".join("%s" for _ in kept)
            not_kept = Sql("ifNull(") + value + Sql(f" NOT IN ({marks}), 0)", kept)
        if None in exclude:
            clause = Sql("isNotNull(") + value + ")"
            if not_kept is not None:
                clause = clause + " AND " + not_kept
        else:
            assert not_kept is not None
            clause = Sql("isNull(") + value + ") OR " + not_kept
        sql = sql + " AND (" + clause + ")"
    sql = sql + " GROUP BY b0, v"
    text = bucket_text("b0", interval) if by_bucket else "NULL"
    return Sql(f"SELECT {text} AS b, v, u FROM (") + sql + ")"


def users_rows(scope: Scope) -> Sql:
    """As ``compile.users_rows``: per bucket, active people and those whose first event ever
    falls in it. One pass over the app's events, no join: per person, their first event and the
    buckets they were active in. Columns: b, active, new."""
    interval, zone = scope.period.interval, scope.period.tz.key
    who = actor(scope)
    per_person = (
        Sql("SELECT ")
        + who
        + " AS who, min(time) AS first_time, groupUniqArrayIf("
        + bucket_start("time", interval, zone)
        + ", "
        + in_scope(scope)
        + Sql(f") AS active_in FROM {EVENTS} WHERE app_id = %s GROUP BY who", [scope.app_id])
    )
    first_bucket = bucket_start("first_time", interval, zone)
    sql = Sql("SELECT ") + first_bucket + " AS first_bucket, b0 FROM (" + per_person + ")"
    sql = sql + " ARRAY JOIN active_in AS b0 WHERE isNotNull(who)"
    return (
        Sql(
            f"SELECT {bucket_text('b0', interval)} AS b, count() AS active, "
            "countIf(first_bucket = b0) AS new FROM ("
        )
        + sql
        + ") GROUP BY b0"
    )
