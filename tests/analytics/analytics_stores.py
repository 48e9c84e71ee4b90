"""The event stores the analytics tests run against: the embedded DuckDB store, and a
ClickHouseStore on a fresh database of the session's ClickHouse server (``clickhouse_url``).

A module fixture parametrized over ``STORES`` builds its services with ``open_store`` and loads
the same events into either; every oracle test then runs once per store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tally.store.base import EventStore
from tally.store.clickhouse_store import ClickHouseStore
from tally.store.embedded import EmbeddedStore
from tally.testing.clickhouse_databases import drop_database, fresh_database_url

STORES = ["duckdb", "clickhouse"]


@asynccontextmanager
async def open_store(
    kind: str, request: pytest.FixtureRequest, data_dir: Path
) -> AsyncIterator[EventStore]:
    """A new, empty store of ``kind``; closed (and its ClickHouse database dropped) after."""
    if kind == "duckdb":
        yield EmbeddedStore(data_dir)
        return
    url = fresh_database_url(request.getfixturevalue("clickhouse_url"))
    try:
        yield ClickHouseStore(url)
    finally:
        drop_database(url)
