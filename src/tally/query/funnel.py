"""``funnel``: how many people went through ordered steps within a conversion window.

A person enters at their first step-1 event in the period; each later step counts at the earliest
matching event strictly after the previous step's, within the window from the entry (a later step
may fall after the period's end). Taking the earliest match at every step is what lets the most
people through, so no other choice of events would convert more.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from typing import Any

from tally.query import duckdb_sql as dialect
from tally.query.compile import Scope, Sql, condition, field_text, utc_text
from tally.query.model import FunnelQuery
from tally.query.period import Period


def funnel_sql(app_id: str, query: FunnelQuery, period: Period, names: list[list[str]]) -> Sql:
    """Per person entering: the breakdown value at entry, then seconds from each step to the
    next (NULL once a step is not reached).

    One pass over the events: per id (user id, else device id), the entry time and a list of each
    later step's event times, merged per person; then each step's time is the earliest in its
    list after the previous step's and within the window from the entry. (A join of each step's
    events on the previous step's people cost ~20% more at 10M events; resolving every event's id
    to its person before grouping, 2.4 times as much.)"""
    window = query.window.seconds
    wide = replace(period, end=period.end + timedelta(seconds=window))
    every = sorted({n for step in names for n in step})
    scope = Scope(app_id, wide, every, query.filters, persons=True)
    value = field_text(query.breakdown.field) if query.breakdown else Sql("NULL")
    sql = scope.prefix() + f", ev AS (SELECT {dialect.ACTOR_WITHOUT_PERSONS} AS raw, e.time, "
    sql = sql + value + " AS v"
    for i, (step, step_names) in enumerate(zip(query.steps, names, strict=True)):
        marks = ", ".join("?" * len(step_names))
        flag = Sql(f"(e.name IN ({marks})", list(step_names))
        for item in step.filters:
            flag = flag + " AND " + condition(item)
        sql = sql + ", " + flag + f") AS s{i}"
    sql = sql + scope.source() + "), "
    # Per id first (entry, value at entry, each step's times), then per person: the join to the
    # people runs on the ids, not on every event.
    entered = "WHERE s0 AND time < CAST(? AS TIMESTAMP)"
    end = utc_text(period.end)
    per_id = Sql(f"per_id AS (SELECT raw, min(time) FILTER ({entered}) AS t0", [end])
    per = Sql("per AS (SELECT min(x.t0) AS t0")
    if query.breakdown:  # the value at entry (an ordered aggregate: only when needed)
        per_id = per_id + Sql(f", first(v ORDER BY time) FILTER ({entered}) AS v", [end])
        per = per + ", first(x.v ORDER BY x.t0) FILTER (WHERE x.t0 IS NOT NULL) AS v"
    else:
        per = per + ", NULL AS v"
    for i in range(1, len(query.steps)):
        # events without a user or device id enter as one "person" but never convert
        per_id = per_id + f", list(time) FILTER (WHERE s{i} AND raw IS NOT NULL) AS l{i}"
        per = per + f", flatten(list(x.l{i}) FILTER (WHERE x.l{i} IS NOT NULL)) AS l{i}"
    sql = sql + per_id + " FROM ev GROUP BY raw), "
    sql = sql + per + " FROM per_id x"
    sql = sql + f" GROUP BY {dialect.person_of('x.raw')})"
    steps = Sql("SELECT * FROM per WHERE t0 IS NOT NULL")
    for i in range(1, len(query.steps)):
        earliest = dialect.earliest_after(f"l{i}", f"t{i - 1}", "t0")
        steps = Sql(f"SELECT *, {earliest} AS t{i} FROM (", [window]) + steps + ")"
    columns = ", ".join(
        dialect.seconds_between(f"t{i - 1}", f"t{i}") for i in range(1, len(query.steps))
    )
    return sql + f" SELECT v, {columns} FROM (" + steps + ")"


def _steps(query: FunnelQuery, rows: list[tuple]) -> list[dict[str, Any]]:
    entered = len(rows)
    counts = [entered] + [
        sum(1 for row in rows if row[i] is not None) for i in range(1, len(query.steps))
    ]
    out = []
    for i, step in enumerate(query.steps):
        previous = counts[i - 1] if i else entered
        waits = [row[i] for row in rows if i and row[i] is not None]
        out.append(
            {
                "event": step.event,
                "count": counts[i],
                "conversion_from_first": counts[i] / entered if entered else None,
                "conversion_from_previous": counts[i] / previous if previous else None,
                "median_seconds_from_previous": statistics.median(waits) if waits else None,
            }
        )
    return out


def funnel_answer(query: FunnelQuery, rows: list[tuple]) -> dict[str, Any]:
    answer: dict[str, Any] = {"steps": _steps(query, rows)}
    if query.breakdown is None:
        return answer
    groups: dict[Any, list[tuple]] = defaultdict(list)
    for row in rows:
        groups[row[0]].append(row)
    ordered = sorted(groups, key=lambda v: (-len(groups[v]), v is None, v or ""))
    top, rest = ordered[: query.breakdown.limit], ordered[query.breakdown.limit :]
    answer["breakdown"] = [
        {"value": v, "other": False, "steps": _steps(query, groups[v])} for v in top
    ]
    if rest:
        others = [row for v in rest for row in groups[v]]
        answer["breakdown"].append({"value": None, "other": True, "steps": _steps(query, others)})
    return answer
