"""The catalog (PostgreSQL) and the scale-out log (NATS JetStream) going away and coming back, for
real: a TCP proxy (tests/faults.py) between Tally and the real server is cut and restored.

While a dependency is down, ingest that needs it answers 503 with Retry-After in the protocol's
shape, what was acknowledged stays, /healthz keeps answering and /readyz says not ready; once it
is back, Tally takes requests again without a restart. (A full disk: tests/test_disk_full.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats
import nats.js.errors
import pytest

from faults import TcpProxy
from tally.catalog import Catalog
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.log.messages import MSG_ID
from tally.log.nats_log import NatsLog
from tally.log.store import LoggedStore
from tally.store.base import EventStore
from tally.store.clickhouse_store import ClickHouseStore
from tally.store.embedded import EmbeddedStore
from tally.store.query import EventQuery
from tally.testing.clickhouse_databases import drop_database, fresh_database_url

NATS_URL = "nats://127.0.0.1:4222"


async def eventually_ok(send: Callable[[], Awaitable[httpx.Response]], what: str) -> None:
    """Until ``send()`` answers 200; every other answer meanwhile must be a 503."""
    deadline = time.monotonic() + 30
    while True:
        response = await send()
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {response.status_code} {response.text}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def in_process(services: Services, **transport: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of Tally's ASGI app over ``services``, in this process."""
    app = httpx.ASGITransport(app=TallyApp(services), **transport)
    async with httpx.AsyncClient(transport=app, base_url="http://t") as http:
        yield http


@contextlib.asynccontextmanager
async def on_clickhouse(
    catalog: Catalog, store: EventStore, database_url: str
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Tally in this process over ``store`` (on the ClickHouse database ``database_url``); the
    store closed and the database dropped afterwards."""
    services = Services(catalog=catalog, store=store, limits=Limits())
    try:
        async with in_process(services) as http:
            yield services, http
    finally:
        await store.close()
        drop_database(database_url)


def ingest(http: httpx.AsyncClient, key: str, *ids: str) -> Awaitable[httpx.Response]:
    events = [{"name": "signup", "id": i} for i in ids]
    return http.post("/api/v1/events", json={"events": events}, headers={"x-tally-key": key})


@pytest.fixture
async def pg_through_proxy(
    postgres_catalog_url: str, data_dir: Path
) -> AsyncIterator[tuple[TcpProxy, Services, httpx.AsyncClient]]:
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        catalog = Catalog(proxy.url_for(postgres_catalog_url))
        catalog.migrate()
        services = Services(catalog=catalog, store=EmbeddedStore(data_dir), limits=Limits())
        try:
            async with in_process(services, client=("198.51.100.7", 5000)) as http:
                yield proxy, services, http
        finally:
            await services.close()


async def test_catalog_down_answers_503_keeps_known_apps_and_recovers(
    pg_through_proxy: tuple[TcpProxy, Services, httpx.AsyncClient],
) -> None:
    proxy, services, http = pg_through_proxy
    known = services.catalog.create_app("Known").app
    unseen = services.catalog.create_app("Unseen").app
    acked = ["k1"]
    assert (await ingest(http, known.app_key, "k1")).status_code == 200

    proxy.cut()
    # an app this process knows goes on being served from what it read
    response = await ingest(http, known.app_key, "k2")
    assert response.status_code == 200, response.text
    acked.append("k2")
    # one it never read cannot be told from an unknown key: 503, in each protocol's shape
    refused = await ingest(http, unseen.app_key, "u1")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "catalog_unavailable"
    assert refused.headers["retry-after"] == "1"
    countly = await http.get("/i", params={"app_key": unseen.app_key, "device_id": "d1"})
    assert countly.status_code == 503 and "result" in countly.json()
    assert countly.headers["retry-after"] == "1"
    # the read API, authenticated through the catalog, answers 503 too (not 500)
    read = await http.get(f"/api/v1/apps/{known.id}/events", auth=("k", "s"))
    assert read.status_code == 503 and read.json()["error"]["code"] == "catalog_unavailable"
    # so does an endpoint that reads the catalog directly (a dashboard session's lookup)
    http.cookies.set("tally_session", "a-session-id")
    apps = await http.get("/api/v1/apps")
    http.cookies.clear()
    assert apps.status_code == 503 and apps.json()["error"]["code"] == "catalog_unavailable"
    assert apps.headers["retry-after"] == "1"
    assert (await http.get("/healthz")).status_code == 200
    ready = await http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "catalog_unavailable"

    proxy.restore()
    await eventually_ok(lambda: ingest(http, unseen.app_key, "u1"), "the catalog back")
    assert (await http.get("/readyz")).status_code == 200
    stored = await services.store.fetch_events(EventQuery(app_id=known.id, limit=100))
    assert sorted(e["id"] for e in stored) == acked
    stored = await services.store.fetch_events(EventQuery(app_id=unseen.id, limit=100))
    assert [e["id"] for e in stored] == ["u1"]


@pytest.fixture
def stream() -> str:
    return f"TALLYFAULT_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def collector(
    catalog: Catalog, clickhouse_url: str, stream: str
) -> AsyncIterator[tuple[TcpProxy, Services, httpx.AsyncClient]]:
    """A collector in-process whose log is the real NATS server behind a proxy."""
    store_url = fresh_database_url(clickhouse_url, prefix="tally_fault")
    with TcpProxy(("127.0.0.1", 4222)) as proxy:
        log = NatsLog(f"{proxy.url_for(NATS_URL)}?stream={stream}", publish_timeout=1.0)
        store = LoggedStore(log, ClickHouseStore(store_url))
        try:
            async with on_clickhouse(catalog, store, store_url) as (services, http):
                yield proxy, services, http
        finally:
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().delete_stream(stream)
            except nats.js.errors.NotFoundError:
                pass
            finally:
                await nc.close()


async def stream_ids(stream: str) -> set[str]:
    """The ``app/id`` of every event message in the stream (no loader runs: nothing is taken)."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        found = set()
        for seq in range(1, last + 1):
            message = await js.get_msg(stream, seq)
            if message.headers and message.subject.endswith(".event"):
                found.add(message.headers[MSG_ID])
        return found
    finally:
        await nc.close()


async def test_log_down_answers_503_and_recovers_without_losing_acknowledged_events(
    collector: tuple[TcpProxy, Services, httpx.AsyncClient], app, stream: str
) -> None:
    proxy, _, http = collector
    acked: list[str] = []
    for i in range(3):
        assert (await ingest(http, app.app_key, f"before-{i}")).status_code == 200
        acked.append(f"before-{i}")

    proxy.cut()
    for i in range(3):
        response = await ingest(http, app.app_key, f"during-{i}")
        if response.status_code == 200:  # cannot be: nothing reaches JetStream
            pytest.fail(f"acknowledged while the log was cut: {response.text}")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 503

    proxy.restore()
    await eventually_ok(lambda: ingest(http, app.app_key, "after"), "the log back")
    acked.append("after")
    assert (await http.get("/readyz")).status_code == 200
    stored = await stream_ids(stream)
    assert {f"{app.id}/{i}" for i in acked} <= stored


@pytest.fixture
async def clickhouse_through_proxy(
    catalog: Catalog, clickhouse_url: str
) -> AsyncIterator[tuple[TcpProxy, Services, httpx.AsyncClient]]:
    """A server in-process whose event store is the real ClickHouse server behind a proxy."""
    store_url = fresh_database_url(clickhouse_url, prefix="tally_fault")
    parts = urlsplit(store_url)
    assert parts.hostname and parts.port
    with TcpProxy((parts.hostname, parts.port)) as proxy:
        store = ClickHouseStore(proxy.url_for(store_url))
        async with on_clickhouse(catalog, store, store_url) as (services, http):
            yield proxy, services, http


async def test_reads_answer_503_while_clickhouse_is_cut_and_recover(
    clickhouse_through_proxy: tuple[TcpProxy, Services, httpx.AsyncClient], catalog: Catalog
) -> None:
    proxy, _, http = clickhouse_through_proxy
    new = catalog.create_app("Reads")
    auth = (new.app.api_key, new.api_secret)
    assert (await ingest(http, new.app.app_key, "r1")).status_code == 200
    base = f"/api/v1/apps/{new.app.id}"
    query = {
        "kind": "trends",
        "events": [{"event": "signup"}],
        "from": "2026-01-01",
        "to": "2027-01-01",
        "interval": "month",
    }

    countly = {"method": "events", "app_id": new.app.id, "event": "signup", "period": "30days"}

    def reads() -> list[Awaitable[httpx.Response]]:
        return [
            http.post(f"{base}/query", json=query, auth=auth),
            http.get(f"{base}/events", auth=auth),
            http.get(f"{base}/users/someone/activity", auth=auth),
        ]

    def countly_read() -> Awaitable[httpx.Response]:
        return http.get("/o", params=countly, auth=auth)

    for response in [await read for read in [*reads(), countly_read()]]:
        assert response.status_code == 200, response.text

    proxy.cut()
    for response in [await read for read in reads()]:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
    response = await countly_read()  # Countly's read API, in its own shape
    assert response.status_code == 503, response.text
    assert response.json()["result"].startswith("The event store is unavailable; retry later")
    assert response.headers["retry-after"] == "1"

    proxy.restore()
    await eventually_ok(lambda: http.post(f"{base}/query", json=query, auth=auth), "ClickHouse")
    for response in [await read for read in [*reads(), countly_read()]]:
        assert response.status_code == 200, response.text
