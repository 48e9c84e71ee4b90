"""A database of its own for each ClickHouse test, on the session's server (``clickhouse_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tally.store.clickhouse_db import ClickHouseDB
from tally.testing.clickhouse_databases import drop_database, fresh_database_url


@pytest.fixture
def ch_url(clickhouse_url: str) -> Iterator[str]:
    """``clickhouse://.../tally_test_<random>``: created by the store, dropped afterwards."""
    url = fresh_database_url(clickhouse_url)
    yield url
    drop_database(url)


@pytest.fixture
def db(ch_url: str) -> Iterator[ClickHouseDB]:
    store = ClickHouseDB(ch_url)
    store.migrate()
    yield store
    store.close()
