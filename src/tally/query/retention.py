"""``retention``: cohorts of people by the period of their first start event, and how many of
each cohort did the return event 0, 1, 2... periods later (period 0: the cohort's own period, at
or after their start event)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tally.query import duckdb_sql as dialect
from tally.query.compile import Scope, Sql, bucket, condition, utc_text
from tally.query.model import FunnelStep, Interval, QueryError, RetentionQuery
from tally.query.period import Period, next_bucket_start


def _flag(step: FunnelStep, names: list[str]) -> Sql:
    flag = Sql(f"(e.name IN ({', '.join('?' * len(names))})", list(names))
    for item in step.filters:
        flag = flag + " AND " + condition(item)
    return flag + ")"


def retention_period(query: RetentionQuery) -> Period:
    if query.interval not in (Interval.DAY, Interval.WEEK):
        raise QueryError("invalid_query", "interval: retention periods are days or weeks")
    return Period.of(query.from_, query.to, query.tz, query.interval)


def retention_sql(
    app_id: str, query: RetentionQuery, period: Period, start: list[str], back: list[str]
) -> Sql:
    """Rows (cohort key, period number, people); period number -1 is the cohort's size."""
    last = period.buckets()[-1].start.replace(tzinfo=None)
    for _ in range(query.periods):
        last = next_bucket_start(last, period.interval)
    wide = replace(period, end=last.replace(tzinfo=period.tz))
    scope = Scope(app_id, wide, sorted({*start, *back}), query.filters, persons=True)
    unit = period.interval.value
    zone = period.tz.key
    cohort = dialect.local_bucket("c.t0", unit)
    # Each id's first start and its return buckets (with the last return in each) first, then
    # their people's: the join to the people runs on ids, not on every event.
    sql = scope.prefix() + f", ev AS (SELECT {dialect.ACTOR_WITHOUT_PERSONS} AS raw, e.time, "
    sql = sql + _flag(query.start_event, start) + " AS is_start, "
    sql = sql + _flag(query.return_event, back) + " AS is_return"
    sql = sql + scope.source() + "), "
    sql = sql + Sql(
        "c_id AS (SELECT raw, min(time) AS t0 FROM ev WHERE is_start "
        "AND time < CAST(? AS TIMESTAMP) GROUP BY raw), ",
        [utc_text(period.end)],
    )
    sql = sql + (
        f"c AS (SELECT {dialect.person_of('x.raw')} AS actor, min(x.t0) AS t0 FROM c_id x "
        "GROUP BY 1), "
    )
    # the return events' buckets by the zone's offsets (``compile.local_time``): one per event
    sql = sql + "rets AS (SELECT raw, " + bucket(wide, "time") + " AS rb, max(time) AS last "
    sql = sql + "FROM ev WHERE is_return GROUP BY ALL), "
    sql = sql + (
        f"rp AS (SELECT {dialect.person_of('x.raw')} AS actor, x.rb, max(x.last) AS last "
        "FROM rets x GROUP BY ALL), "
    )
    # a return counts from the cohort's first start on: some return in the bucket at or after it
    sql = sql + Sql(
        f"r AS (SELECT DISTINCT c.actor, {dialect.bucket_text(cohort)} AS cohort, "
        f"{dialect.periods_between(unit, cohort, 'rp.rb')} AS k "
        "FROM c JOIN rp ON rp.actor = c.actor AND rp.last >= c.t0) ",
        [zone, zone],
    )
    sql = sql + Sql(
        "SELECT cohort, k, count(*) FROM r WHERE k < ? GROUP BY ALL "
        f"UNION ALL SELECT {dialect.bucket_text(cohort)}, -1, count(*) FROM c "
        "GROUP BY ALL",
        [query.periods, zone],
    )
    return sql


def retention_answer(query: RetentionQuery, period: Period, rows: list[tuple]) -> dict[str, Any]:
    cells = {(cohort, k): int(n) for cohort, k, n in rows}
    cohorts = []
    for b in period.buckets():
        size = cells.get((b.key, -1), 0)
        values = [cells.get((b.key, k), 0) for k in range(query.periods)]
        cohorts.append(
            {
                "t": b.t,
                "size": size,
                "values": values,
                "rates": [v / size if size else None for v in values],
            }
        )
    return {"cohorts": cohorts}
