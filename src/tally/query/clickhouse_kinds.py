"""Sessions, funnels and retention compiled for ClickHouse: the rows ``sessions.sessions_sql``,
``funnel.funnel_sql`` and ``retention.retention_sql`` give, for the same answer shaping.

ClickHouse 18.16 has neither window functions nor joins on inequalities, so each is computed per
person (or device) on sorted arrays of their event times, with lambdas (see each function).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tally.query.clickhouse_sql import (
    actor,
    bucket_start,
    bucket_text,
    field_text,
    flag,
    source,
)
from tally.query.compile import Scope, Sql
from tally.query.model import FunnelQuery, Interval, RetentionQuery, SessionsQuery
from tally.query.period import Period, next_bucket_start
from tally.query.sessions import _MARGIN, COOLDOWN_SECONDS, DURATION_RANGES, SESSION_EVENTS
from tally.store.rows import micros

MICROS = 1_000_000


def sessions_sql(app_id: str, query: SessionsQuery, period: Period) -> Sql:
    """Per device, its session events sorted by (time, received_at); a start begins a session
    unless the device's latest earlier end is less than the cooldown before it (the k-th earlier
    end is the latest, as the times are sorted: ``arrayCumSum`` counts them); sessions are
    numbered by a running count of beginnings. (18.16 drops a subquery's column that only a
    lambda reads: ``empty(ends)`` reads it outside one.) Columns: b, sessions, duration, then
    the ranges."""
    wide = replace(period, start=period.start - _MARGIN, end=period.end + _MARGIN)
    scope = Scope(app_id, wide, SESSION_EVENTS, query.filters, persons=False)
    rows = (
        Sql(
            "SELECT ifNull(device_id, user_id) AS who, arraySort(x -> (tupleElement(x, 1), "
            "tupleElement(x, 2), tupleElement(x, 3), tupleElement(x, 5)), "
            "groupArray((time, received_at, name, dur, id))) AS evs"
        )
        + source(scope)
        + " GROUP BY who"
    )
    cooldown = COOLDOWN_SECONDS * MICROS
    numbered = (
        Sql(
            "SELECT who, ts, ns, ds, begins, arrayCumSum(begins) AS sno FROM (SELECT who, ts, ns, "
            "ds, if(empty(ends), arrayMap(n -> n = 'session.start', ns), arrayMap((t, n, k) -> "
            f"n = 'session.start' AND NOT (k > 0 AND t - ends[k] < {cooldown}), ts, ns, "
            "ends_before)) AS begins FROM (SELECT who, ts, "
            "ns, ds, arrayFilter((t, e) -> e, ts, is_end) AS ends, "
            "arrayMap((c, e) -> c - e, arrayCumSum(is_end), is_end) AS ends_before FROM "
            "(SELECT who, arrayMap(x -> tupleElement(x, 1), evs) AS ts, "
            "arrayMap(x -> tupleElement(x, 3), evs) AS ns, "
            "arrayMap(x -> tupleElement(x, 4), evs) AS ds, "
            "arrayMap(n -> n = 'session.end', ns) AS is_end FROM ("
        )
        + rows
        + "))))"
    )
    grouped = (
        Sql(
            "SELECT minIf(t, began) AS started, "
            "countIf(isNotNull(dur_part) AND n != 'session.start') AS durs_set, "
            "sumIf(ifNull(dur_part, 0), n != 'session.start') AS durs, "
            "countIf(n = 'session.end') AS ends_set, maxIf(t, n = 'session.end') AS ended FROM ("
        )
        + numbered
        + ") ARRAY JOIN ts AS t, ns AS n, ds AS dur_part, begins AS began, sno AS k_sno "
        "WHERE k_sno > 0 GROUP BY who, k_sno"
    )
    # a session's duration: its updates' and end's dur, else start to end, else 0
    sessions = (
        Sql(
            "SELECT started, if(durs_set > 0, durs, if(ends_set > 0, greatest((toInt64(ended) - "
            f"toInt64(started)) / {MICROS}, 0), 0)) AS d FROM ("
        )
        + grouped
        + Sql(") WHERE started >= %s AND started < %s", [micros(period.start), micros(period.end)])
    )
    ranges = ", ".join(
        "countIf("
        + " AND ".join(
            ([f"d > {low}"] if low else []) + ([f"d <= {high}"] if high is not None else [])
        )
        + ")"
        for _, low, high in DURATION_RANGES
    )
    interval = period.interval
    inner = Sql("SELECT ") + bucket_start("started", interval, period.tz.key) + " AS b0, d FROM ("
    inner = inner + sessions + ")"
    return (
        Sql(f"SELECT {bucket_text('b0', interval)} AS b, count(), sum(d), {ranges} FROM (")
        + inner
        + ") GROUP BY b0"
    )


def funnel_sql(app_id: str, query: FunnelQuery, period: Period, names: list[list[str]]) -> Sql:
    """As ``funnel.funnel_sql``: per person, the entry (their first step-1 event in the period)
    and each later step's sorted times; step k is the first of its times after step k-1's within
    the window from the entry (``arrayFirst``; 0: not reached). Columns: v, then seconds from
    each step to the next (NULL once a step is not reached)."""
    window = query.window.seconds * MICROS
    wide = replace(period, end=period.end + timedelta(seconds=query.window.seconds))
    every = sorted({n for step in names for n in step})
    scope = Scope(app_id, wide, every, query.filters, persons=True)
    value = field_text(query.breakdown.field) if query.breakdown else Sql("NULL")
    ev = Sql("SELECT ") + actor(scope) + " AS who, time AS at, " + value + " AS v"
    for i, (step, step_names) in enumerate(zip(query.steps, names, strict=True)):
        ev = ev + ", " + flag(step_names, step.filters) + f" AS s{i}"
    ev = ev + source(scope)
    end = micros(period.end)
    entry = Sql("(s0 AND at < %s)", [end])
    # the breakdown value at entry: a tuple, as argMin skips NULL values but not tuples
    entry_value = (
        Sql("tupleElement(argMinIf(tuple(v), at, ") + entry + "), 1)"
        if query.breakdown
        else Sql("NULL")
    )
    sql = Sql("SELECT who, minIf(at, ") + entry + ") AS t0, " + entry_value + " AS v"
    for i in range(1, len(query.steps)):
        # events with no identity form one person who enters but, as in DuckDB's join on
        # NULL, reaches no later step
        sql = sql + f", arraySort(groupArrayIf(at, s{i} AND isNotNull(who))) AS a{i}"
    sql = sql + " FROM (" + ev + ") GROUP BY who HAVING countIf(" + entry + ") > 0"
    for i in range(1, len(query.steps)):
        sql = (
            Sql(
                f"SELECT *, if(t{i - 1} = 0, 0, arrayFirst(x -> x > t{i - 1} AND x <= t0 + "
                f"{window}, a{i})) AS t{i} FROM ("
            )
            + sql
            + ")"
        )
    columns = ", ".join(
        f"if(t{i} = 0, NULL, (toInt64(t{i}) - toInt64(t{i - 1})) / {MICROS})"
        for i in range(1, len(query.steps))
    )
    return Sql(f"SELECT v, {columns} FROM (") + sql + ")"


def _day_number(column: str, interval: Interval, zone: str) -> Sql:
    """The local day (or week's Monday) of ``column`` as a day number."""
    start = bucket_start(column, interval, zone)
    return Sql("toInt64(toRelativeDayNum(") + start + "))"


def retention_sql(
    app_id: str, query: RetentionQuery, period: Period, start: list[str], back: list[str]
) -> Sql:
    """As ``retention.retention_sql``: per person, the first start event in the period (t0) and
    the times of their return events; each return at or after t0 gives the number of periods
    from t0's; -1 stands for the cohort itself. Events with no identity are one person of a
    cohort who never returns (DuckDB's join on NULL). Rows (cohort key, period number, people)."""
    last = period.buckets()[-1].start.replace(tzinfo=None)
    for _ in range(query.periods):
        last = next_bucket_start(last, period.interval)
    wide = replace(period, end=last.replace(tzinfo=period.tz))
    scope = Scope(app_id, wide, sorted({*start, *back}), query.filters, persons=True)
    interval, zone = period.interval, period.tz.key
    ev = Sql("SELECT ") + actor(scope) + " AS who, time AS at, "
    ev = ev + flag(start, query.start_event.filters) + " AS is_start, "
    ev = ev + flag(back, query.return_event.filters) + " AS is_return" + source(scope)
    entry = Sql("(is_start AND at < %s)", [micros(period.end)])
    people = (
        Sql("SELECT who, minIf(at, ")
        + entry
        + ") AS t0, groupArrayIf(at, is_return AND isNotNull(who)) AS returns FROM ("
        + ev
        + ") GROUP BY who HAVING countIf("
        + entry
        + ") > 0"
    )
    per = 7 if interval is Interval.WEEK else 1
    cohort_day = _day_number("t0", interval, zone)
    returned_day = _day_number("x", interval, zone)
    periods = (
        Sql("arrayConcat([toInt64(-1)], arrayMap(x -> intDiv(")
        + returned_day
        + " - "
        + cohort_day
        + f", {per}), arrayFilter(x -> x >= t0, returns)))"
    )
    cells = (
        Sql("SELECT DISTINCT who, ")
        + bucket_start("t0", interval, zone)
        + " AS cohort, arrayJoin("
        + periods
        + ") AS k FROM ("
        + people
        + ")"
    )
    return (
        Sql(f"SELECT {bucket_text('cohort', interval)}, k, count() FROM (")
        + cells
        + Sql(") WHERE k < %s GROUP BY cohort, k", [query.periods])
    )
