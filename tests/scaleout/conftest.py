"""Fixtures for the scale-out tests: the NATS JetStream server running on this machine (each test
its own stream), a ClickHouse database of its own on the session's server, real ``tally loader``
and ``tally serve`` processes (helpers in scaleout_support.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import nats.js.errors
import pytest
from scaleout_support import Processes

from tally.catalog import Catalog
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.log.nats_log import NatsLog
from tally.log.store import LoggedStore
from tally.store.clickhouse_store import ClickHouseStore
from tally.testing.clickhouse_databases import drop_database, fresh_database_url

NATS_URL = os.environ.get("TALLY_TEST_NATS", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def nats_server() -> str:
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"NATS with JetStream is required for the scale-out tests ({NATS_URL}): {exc}; "
            "set TALLY_TEST_NATS to a server URL"
        )
    return NATS_URL


@pytest.fixture
def stream() -> Iterator[str]:
    """A stream name of this test's own; the stream is deleted afterwards."""
    name = f"TALLYTEST_{uuid.uuid4().hex[:10]}"
    yield name

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


@pytest.fixture
def log_url(nats_server: str, stream: str) -> str:
    return f"{nats_server}?stream={stream}"


@pytest.fixture
def store_url(clickhouse_url: str) -> Iterator[str]:
    """A database of this test's own on the session's ClickHouse; dropped afterwards."""
    url = fresh_database_url(clickhouse_url, prefix="tally_scaleout")
    yield url
    drop_database(url)


@pytest.fixture
async def nats_client(nats_server: str) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(nats_server)
    yield nc
    await nc.close()


@pytest.fixture
async def scaleout(catalog: Catalog, log_url: str, store_url: str) -> AsyncIterator[Services]:
    """A collector in-process: the NATS log as its sink, ClickHouse as its reader."""
    store = LoggedStore(NatsLog(log_url), ClickHouseStore(store_url))
    yield Services(catalog=catalog, store=store, limits=Limits())
    await store.close()


@pytest.fixture
async def client(scaleout: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=TallyApp(scaleout), client=("198.51.100.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Real ``tally loader`` / ``tally serve`` processes, all killed when the test ends."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()
