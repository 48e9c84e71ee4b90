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
    next (NULL once a step is not reached)."""
    window = query.window.seconds
    wide = replace(period, end=period.end + timedelta(seconds=window))
    every = sorted({n for step in names for n in step})
    scope = Scope(app_id, wide, every, query.filters, persons=True)
    value = field_text(query.breakdown.field) if query.breakdown else Sql("NULL")
    # ev is read once per step: computing it once beats re-scanning the events for each
    sql = scope.prefix() + f", ev AS {dialect.MATERIALIZED}(SELECT " + scope.actor()
    sql = sql + " AS actor, e.time, "
    sql = sql + value + " AS v"
    for i, (step, step_names) in enumerate(zip(query.steps, names, strict=True)):
        marks = ", ".join("?" * len(step_names))
        flag = Sql(f"(e.name IN ({marks})", list(step_names))
        for item in step.filters:
            flag = flag + " AND " + condition(item)
        sql = sql + ", " + flag + f") AS s{i}"
    sql = sql + scope.source() + "), "
    # the breakdown value at entry (an ordered aggregate: only when there is a breakdown)
    entry_value = "first(v ORDER BY time)" if query.breakdown else "NULL"
    sql = sql + Sql(
        f"f0 AS (SELECT actor, min(time) AS t, {entry_value} AS v, min(time) AS t0 FROM ev "
        "WHERE s0 AND time < CAST(? AS TIMESTAMP) GROUP BY actor)",
        [utc_text(period.end)],
    )
    for i in range(1, len(query.steps)):
        sql = sql + Sql(
            f", f{i} AS (SELECT p.actor, min(e.time) AS t, p.t0 FROM f{i - 1} p "
            f"JOIN ev e ON e.actor = p.actor AND e.s{i} AND e.time > p.t "
            f"AND e.time <= {dialect.seconds_after('p.t0')} GROUP BY p.actor, p.t0)",
            [window],
        )
    columns = ", ".join(
        f"{dialect.seconds_between(f'f{i - 1}.t', f'f{i}.t')}" for i in range(1, len(query.steps))
    )
    joins = " ".join(f"LEFT JOIN f{i} USING (actor)" for i in range(1, len(query.steps)))
    return sql + f" SELECT f0.v, {columns} FROM f0 {joins}"


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
