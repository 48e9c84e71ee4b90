"""One query model, one compiler per store: DuckDB's (``compile``, ``funnel``, ``retention``,
``sessions``, ``customers`` over ``duckdb_sql``) and ClickHouse's (``clickhouse_*``). A store names
its SQL in its ``dialect`` attribute; ``dialect_of`` picks the compiler, and ``Runner`` and the
customers API build their SQL through it. The answers are shaped by the same Python either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tally.query import clickhouse_customers, clickhouse_kinds, clickhouse_sql, customers
from tally.query import compile as duckdb_compile
from tally.query.compile import Sql
from tally.query.funnel import funnel_sql
from tally.query.retention import retention_sql
from tally.query.sessions import sessions_sql
from tally.store.clickhouse_rows import as_datetime


def _same(value: Any) -> Any:
    return value


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else as_datetime(value)


@dataclass(frozen=True)
class Dialect:
    """The SQL builders of one store (each returns ``compile.Sql`` for the store's ``run_sql``)
    and how its rows carry an instant."""

    name: str
    series_rows: Callable[..., Sql]
    distinct_people: Callable[..., Sql]
    users_rows: Callable[..., Sql]
    sessions_sql: Callable[..., Sql]
    funnel_sql: Callable[..., Sql]
    retention_sql: Callable[..., Sql]
    search_sql: Callable[..., Sql]
    linked_ids_sql: Callable[..., Sql]
    summary_sql: Callable[..., Sql]
    devices_sql: Callable[..., Sql]
    top_events_sql: Callable[..., Sql]
    instant: Callable[[Any], datetime | None]
    """A time column's value (customers' first and last seen) as a datetime."""


DUCKDB = Dialect(
    name="duckdb",
    series_rows=duckdb_compile.series_rows,
    distinct_people=duckdb_compile.distinct_people,
    users_rows=duckdb_compile.users_rows,
    sessions_sql=sessions_sql,
    funnel_sql=funnel_sql,
    retention_sql=retention_sql,
    search_sql=customers.search_sql,
    linked_ids_sql=customers.linked_ids_sql,
    summary_sql=customers.summary_sql,
    devices_sql=customers.devices_sql,
    top_events_sql=customers.top_events_sql,
    instant=_same,
)

CLICKHOUSE = Dialect(
    name="clickhouse",
    series_rows=clickhouse_sql.series_rows,
    distinct_people=clickhouse_sql.distinct_people,
    users_rows=clickhouse_sql.users_rows,
    sessions_sql=clickhouse_kinds.sessions_sql,
    funnel_sql=clickhouse_kinds.funnel_sql,
    retention_sql=clickhouse_kinds.retention_sql,
    search_sql=clickhouse_customers.search_sql,
    linked_ids_sql=clickhouse_customers.linked_ids_sql,
    summary_sql=clickhouse_customers.summary_sql,
    devices_sql=clickhouse_customers.devices_sql,
    top_events_sql=clickhouse_customers.top_events_sql,
    instant=_from_micros,
)

DIALECTS = {dialect.name: dialect for dialect in (DUCKDB, CLICKHOUSE)}


def dialect_of(store: object) -> Dialect:
    """The compiler for ``store``'s ``dialect`` attribute (DuckDB's when it has none)."""
    name = getattr(store, "dialect", DUCKDB.name)
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"no query compiler for the {name!r} SQL dialect") from None
