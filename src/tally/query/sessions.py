"""``sessions``: count, total and average duration, and Countly's duration ranges, per bucket.

Sessions come from ``session.start`` / ``session.update`` / ``session.end`` events of a device, as
Countly requests (``begin_session``, ``session_duration``, ``end_session``) and Synerise-style
trackers both produce them. A start within 15 seconds of the device's previous end continues that
session (Countly's cooldown). A session's duration is the sum of the ``dur`` of its updates and end
(Countly), or else the time from its start to its end (Synerise), else 0. It counts in the bucket
of its start. A device's events are taken in (time, received_at, name, id) order, so events at the
same instant always fall the same way: an end before a start (``session.end`` sorts first).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

from tally.query import duckdb_sql as dialect
from tally.query.compile import Scope, Sql, bucket, utc_text
from tally.query.model import SessionsQuery
from tally.query.period import Period

SESSION_EVENTS: Final = ("session.start", "session.update", "session.end")
COOLDOWN_SECONDS: Final = 15
DURATION_RANGES: Final = (
    ("0-10", 0, 10),
    ("11-30", 10, 30),
    ("31-60", 30, 60),
    ("61-180", 60, 180),
    ("181-600", 180, 600),
    ("601-1800", 600, 1800),
    ("1801-3600", 1800, 3600),
    ("3601+", 3600, None),
)
"""Countly's session duration ranges, in seconds (a range holds durations above its low end up to
and including its high end; the first also holds 0)."""
_MARGIN = timedelta(days=1)


def sessions_sql(app_id: str, query: SessionsQuery, period: Period) -> Sql:
    # Read a day either side: the end before a start (cooldown), the updates after the period.
    wide = replace(period, start=period.start - _MARGIN, end=period.end + _MARGIN)
    scope = Scope(app_id, wide, SESSION_EVENTS, query.filters, persons=False)
    ranges = ", ".join(
        "count(*) FILTER (WHERE "
        + " AND ".join(
            ([f"d > {low}"] if low else []) + ([f"d <= {high}"] if high is not None else [])
        )
        + ")"
        for _, low, high in DURATION_RANGES
    )
    since = dialect.seconds_between("g.started", "g.ended")
    sql = Sql(
        "WITH s AS (SELECT coalesce(e.device_id, e.user_id) AS who, e.time, e.received_at, "
        "e.name, e.dur, e.id"
    )
    sql = sql + scope.source() + "), "
    sql = sql + (
        "m AS (SELECT *, name = 'session.start' AND NOT coalesce("
        f"{dialect.seconds_between('last_end', 'time')} < {COOLDOWN_SECONDS}, false) AS begins "
        "FROM (SELECT *, max(CASE WHEN name = 'session.end' THEN time END) OVER (PARTITION BY "
        "who ORDER BY time, received_at, name, id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) "
        "AS last_end FROM s)), "
        "n AS (SELECT *, sum(CASE WHEN begins THEN 1 ELSE 0 END) OVER (PARTITION BY who "
        "ORDER BY time, received_at, name, id ROWS UNBOUNDED PRECEDING) AS sno FROM m), "
        "g AS (SELECT who, sno, min(time) FILTER (WHERE begins) AS started, "
        "sum(dur) FILTER (WHERE name <> 'session.start') AS durs, "
        "max(time) FILTER (WHERE name = 'session.end') AS ended FROM n WHERE sno > 0 "
        "GROUP BY who, sno), "
        f"x AS (SELECT g.started AS time, coalesce(g.durs, greatest({since}, 0), 0) AS d FROM g "
        "WHERE g.started >= CAST(? AS TIMESTAMP) AND g.started < CAST(? AS TIMESTAMP)) "
        "SELECT "
    )
    sql.params += [utc_text(period.start), utc_text(period.end)]
    sql = sql + f"{dialect.bucket_text('b')} AS b, count(*), sum(d), {ranges} FROM (SELECT "
    return sql + bucket(period, "x.time") + " AS b, d FROM x) GROUP BY ALL"


def sessions_answer(rows: list[tuple], period: Period) -> dict[str, Any]:
    by_bucket = {row[0]: row for row in rows}
    points = []
    total_sessions = 0
    total_duration = 0.0
    ranges = [0] * len(DURATION_RANGES)
    for b in period.buckets():
        row = by_bucket.get(b.key)
        count, duration = (int(row[1]), float(row[2] or 0)) if row else (0, 0.0)
        if row:
            for i, n in enumerate(row[3:]):
                ranges[i] += int(n)
        total_sessions += count
        total_duration += duration
        points.append(
            {
                "t": b.t,
                "sessions": count,
                "duration": duration,
                "avg_duration": duration / count if count else None,
            }
        )
    return {
        "points": points,
        "total": {
            "sessions": total_sessions,
            "duration": total_duration,
            "avg_duration": total_duration / total_sessions if total_sessions else None,
        },
        "duration_ranges": [
            {"range": name, "sessions": n}
            for (name, _, _), n in zip(DURATION_RANGES, ranges, strict=True)
        ],
    }
