"""The event stores the analytics tests run against: the embedded DuckDB store, and a
ClickHouseStore on a fresh database of the session's ClickHouse server (``clickhouse_url``).

A module fixture parametrized over ``STORES`` builds its services with ``open_store`` and loads
the same events into either; every oracle test then runs once per store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tally.store.base import EventStore
from tally.store.clickhouse_client import ClickHouseUrl
from tally.store.clickhouse_store import ClickHouseStore
from tally.store.embedded import EmbeddedStore

STORES = ["duckdb", "clickhouse"]


def fresh_clickhouse_url(server_url: str) -> str:
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    parsed = ClickHouseUrl.parse(url)
    client = parsed.client(database="default")
    try:
        client.execute(f"DROP DATABASE IF EXISTS {parsed.database}")
    finally:
        client.disconnect()


@asynccontextmanager
async def open_store(
    kind: str, request: pytest.FixtureRequest, data_dir: Path
) -> AsyncIterator[EventStore]:
    """A new, empty store of ``kind``; closed (and its ClickHouse database dropped) after."""
    if kind == "duckdb":
        yield EmbeddedStore(data_dir)
        return
    url = fresh_clickhouse_url(request.getfixturevalue("clickhouse_url"))
    try:
        yield ClickHouseStore(url)
    finally:
        drop_database(url)
