"""Running a query: check it against the app's catalog, run the compiled SQL on the store, and
shape the rows into the answer docs/queries.md describes (every bucket present)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tally.pipeline.app_rules import AppRules
from tally.query.compile import Scope, Sql
from tally.query.dialects import DUCKDB, Dialect
from tally.query.funnel import funnel_answer
from tally.query.model import (
    ANY_EVENT,
    FunnelQuery,
    Interval,
    Measure,
    Query,
    QueryError,
    RetentionQuery,
    SeriesSpec,
    SessionsQuery,
    TrendsQuery,
    UsersQuery,
    check_filter,
    fields_used,
    filters_of,
    property_name,
)
from tally.query.period import Bucket, Period
from tally.query.retention import retention_answer, retention_period
from tally.query.sessions import SESSION_EVENTS, sessions_answer

Execute = Callable[[str, list[Any]], Awaitable[list[tuple]]]
"""Runs SQL with positional parameters on the event store and returns its rows."""


def check_fields(query: Query, rules: AppRules, names: Sequence[str] | None) -> None:
    """Filters and breakdowns may only use properties the catalog defines for the queried events
    (any event, when the query is not about given events)."""
    for where, item in filters_of(query):
        check_filter(where, item)
    if names is None:
        defined = {p for props in rules.properties.values() for p in props}
    else:
        defined = {p for name in names for p in rules.properties.get(name, {})}
    for field in fields_used(query):
        prop = property_name(field)
        if prop is not None and prop not in defined:
            raise QueryError(
                "undefined_property",
                f"property {prop!r} is not defined for the queried events; define it in the "
                "app's catalog to use it in queries",
            )


class Runner:
    def __init__(self, execute: Execute, rules: AppRules, dialect: Dialect = DUCKDB) -> None:
        """``execute`` runs SQL on a store whose SQL is ``dialect``'s (``dialects.dialect_of``)."""
        self.execute = execute
        self.rules = rules
        self.dialect = dialect

    async def _rows(self, sql: Sql) -> list[tuple]:
        return await self.execute(sql.text, sql.params)

    async def run(self, query: Query) -> dict[str, Any]:
        if isinstance(query, TrendsQuery):
            return await self.trends(query)
        if isinstance(query, UsersQuery):
            return await self.users(query)
        if isinstance(query, SessionsQuery):
            return await self.sessions(query)
        if isinstance(query, FunnelQuery):
            return await self.funnel(query)
        return await self.retention(query)

    # trends

    def _names(self, spec: SeriesSpec) -> list[str] | None:
        """The stored names a series counts: the event and its aliases; None for any event."""
        if spec.event == ANY_EVENT:
            return None
        return self.rules.same_event(spec.event)

    async def trends(self, query: TrendsQuery) -> dict[str, Any]:
        per_series = [self._names(spec) for spec in query.events]
        names = (
            None
            if any(found is None for found in per_series)
            else sorted({n for found in per_series if found is not None for n in found})
        )
        check_fields(query, self.rules, names)
        period = Period.of(query.from_, query.to, query.tz, query.interval)
        answer: dict[str, Any] = {"series": [], **({"previous": []} if query.compare else {})}
        for spec in query.events:
            series, top = await self._series(query, spec, period, None)
            answer["series"] += series
            if query.compare:
                had_other = any(one["other"] for one in series)
                previous, _ = await self._series(
                    query, spec, period.previous(), top, with_other=had_other
                )
                answer["previous"] += previous
        return answer

    async def _series(
        self,
        query: TrendsQuery,
        spec: SeriesSpec,
        period: Period,
        fixed_top: list[str | None] | None,
        *,
        with_other: bool = False,
    ) -> tuple[list[dict[str, Any]], list[str | None]]:
        """The series of one ``events`` entry, and the breakdown values it kept. With
        ``fixed_top`` (the previous period of a comparison) the series are exactly those of the
        main period: its values, and an ``other`` series if and only if ``with_other``."""
        measure = spec.measure
        scope = Scope(
            app_id=self.rules.app_id,
            period=period,
            names=self._names(spec),
            filters=[*query.filters, *spec.filters],
            persons=measure is Measure.USERS,
        )
        field = query.breakdown.field if query.breakdown else None
        cells: dict[Any, dict[str, tuple]] = defaultdict(dict)
        for b, v, c, s, d, u in await self._rows(
            self.dialect.series_rows(scope, field, _COLUMNS[measure])
        ):
            cells[v][b] = (c or 0, s or 0.0, d or 0.0, u or 0)
        buckets = period.buckets()
        people: dict[Any, int] = {}
        if measure is Measure.USERS:
            rows = await self._rows(self.dialect.distinct_people(scope, breakdown=field))
            people = {v: u for _, v, u in rows}

        def total_of(v: Any) -> float | int | None:
            if measure is Measure.USERS:
                return people.get(v, 0)
            return _total(measure, cells[v].values())

        def rank_of(v: Any) -> float:
            if measure in (Measure.AVG_SUM, Measure.AVG_DUR):
                return sum(cell[0] for cell in cells[v].values())
            return total_of(v) or 0

        values = list(cells) if field else [None]
        if field is None:
            top: list[Any] = [None]
        elif fixed_top is not None:
            top = fixed_top
        else:
            ordered = sorted(values, key=lambda v: (-rank_of(v), v is None, v or ""))
            assert query.breakdown is not None
            top = ordered[: query.breakdown.limit]
        out = [self._one(spec, v, False, buckets, cells.get(v, {}), total_of(v)) for v in top]
        rest = [v for v in values if v not in top]
        if field is not None and (with_other if fixed_top is not None else rest):
            out.append(await self._other(spec, scope, field, top, rest, buckets, cells))
        return out, top

    async def _other(
        self,
        spec: SeriesSpec,
        scope: Scope,
        field: str,
        top: list[Any],
        rest: list[Any],
        buckets: list[Bucket],
        cells: dict[Any, dict[str, tuple]],
    ) -> dict[str, Any]:
        if spec.measure is Measure.USERS:
            per_bucket = await self._rows(
                self.dialect.distinct_people(scope, breakdown=field, by_bucket=True, exclude=top)
            )
            merged = {b: (0, 0.0, 0.0, u) for b, _, u in per_bucket}
            [(_, _, total)] = await self._rows(
                self.dialect.distinct_people(scope, breakdown=field, exclude=top)
            ) or [(None, None, 0)]
            return self._one(spec, None, True, buckets, merged, total)
        summed: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])
        for v in rest:
            for b, cell in cells[v].items():
                acc = summed[b]
                for i in range(3):
                    acc[i] += cell[i]
        merged = {b: tuple(acc) for b, acc in summed.items()}
        return self._one(spec, None, True, buckets, merged, _total(spec.measure, merged.values()))

    @staticmethod
    def _one(
        spec: SeriesSpec,
        value: Any,
        other: bool,
        buckets: list[Bucket],
        cells: dict[str, tuple],
        total: Any,
    ) -> dict[str, Any]:
        return {
            "event": spec.event,
            "measure": spec.measure.value,
            "breakdown": value,
            "other": other,
            "total": total,
            "points": [
                {"t": bucket.t, "value": _value(spec.measure, cells.get(bucket.key))}
                for bucket in buckets
            ],
        }

    # users

    async def users(self, query: UsersQuery) -> dict[str, Any]:
        check_fields(query, self.rules, None)
        if query.interval is Interval.HOUR:
            raise QueryError("invalid_query", "interval: users are counted by day, week or month")
        period = Period.of(query.from_, query.to, query.tz, query.interval)
        scope = Scope(
            app_id=self.rules.app_id,
            period=period,
            names=None,
            filters=query.filters,
            persons=True,
        )
        counts = {
            b: (active, new) for b, active, new in await self._rows(self.dialect.users_rows(scope))
        }
        points = []
        for bucket in period.buckets():
            active, new = counts.get(bucket.key, (0, 0))
            points.append({"t": bucket.t, "active": active, "new": new, "returning": active - new})
        return {"points": points}

    # sessions, funnels, retention: each kind's SQL and shape live in its own module

    async def sessions(self, query: SessionsQuery) -> dict[str, Any]:
        check_fields(query, self.rules, SESSION_EVENTS)
        period = Period.of(query.from_, query.to, query.tz, query.interval)
        rows = await self._rows(self.dialect.sessions_sql(self.rules.app_id, query, period))
        return sessions_answer(rows, period)

    async def funnel(self, query: FunnelQuery) -> dict[str, Any]:
        names = [self.rules.same_event(step.event) for step in query.steps]
        check_fields(query, self.rules, sorted({n for step in names for n in step}))
        period = Period.of(query.from_, query.to, query.tz, Interval.DAY)
        rows = await self._rows(self.dialect.funnel_sql(self.rules.app_id, query, period, names))
        return funnel_answer(query, rows)

    async def retention(self, query: RetentionQuery) -> dict[str, Any]:
        start = self.rules.same_event(query.start_event.event)
        back = self.rules.same_event(query.return_event.event)
        check_fields(query, self.rules, sorted({*start, *back}))
        period = retention_period(query)
        rows = await self._rows(
            self.dialect.retention_sql(self.rules.app_id, query, period, start, back)
        )
        return retention_answer(query, period, rows)


_COLUMNS: dict[Measure, str] = {
    Measure.COUNT: "c",
    Measure.SUM: "s",
    Measure.DUR: "d",
    Measure.AVG_SUM: "cs",
    Measure.AVG_DUR: "cd",
    Measure.USERS: "u",
}
"""What each measure needs of ``series_rows``; a breakdown ranks averages by count (``c``)."""


def _value(measure: Measure, cell: tuple | None) -> float | int | None:
    c, s, d, u = cell or (0, 0.0, 0.0, 0)
    if measure is Measure.COUNT:
        return c
    if measure is Measure.SUM:
        return s
    if measure is Measure.DUR:
        return d
    if measure is Measure.USERS:
        return u
    if not c:
        return None
    return (s if measure is Measure.AVG_SUM else d) / c


def _total(measure: Measure, cells: Any) -> float | int | None:
    c = s = d = 0
    for cell in cells:
        c += cell[0]
        s += cell[1]
        d += cell[2]
    return _value(measure, (c, s, d, 0))
