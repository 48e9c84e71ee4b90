"""A database of its own for each ClickHouse test, on the session's server (``clickhouse_url``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tally.store.clickhouse_client import ClickHouseUrl
from tally.store.clickhouse_db import ClickHouseDB


@pytest.fixture
def ch_url(clickhouse_url: str) -> Iterator[str]:
    """``clickhouse://.../tally_test_<random>``: created by the store, dropped afterwards."""
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    url = urlunsplit(urlsplit(clickhouse_url)._replace(path=f"/{name}"))
    yield url
    client = ClickHouseUrl.parse(url).client(database="default")
    try:
        client.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        client.disconnect()


@pytest.fixture
def db(ch_url: str) -> Iterator[ClickHouseDB]:
    store = ClickHouseDB(ch_url)
    store.migrate()
    yield store
    store.close()
