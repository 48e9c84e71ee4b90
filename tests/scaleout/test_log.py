"""The NATS JetStream log and the loader, in-process against the real NATS and ClickHouse servers:
a collector answers only once JetStream has every event, a retry is a duplicate stored once, the
loader acknowledges only what ClickHouse has."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import nats
import pytest
from scaleout_support import StoredEvents, auth, consumer_done, eventually, send

from support import free_port
from tally.catalog import App, Catalog, NewApp
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.log.loader import Loader
from tally.log.messages import MSG_ID
from tally.log.nats_log import NatsLog
from tally.log.store import LoggedStore
from tally.store.clickhouse_db import ClickHouseDB
from tally.store.clickhouse_store import ClickHouseStore


class RunningLoader:
    def __init__(self, log_url: str, store_url: str) -> None:
        self.loader = Loader(log_url, store_url, max_wait=0.05)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Loader:
        self.task = asyncio.create_task(self.loader.run())
        return self.loader

    async def __aexit__(self, *exc: object) -> None:
        self.loader.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)


async def test_answer_comes_after_jetstream_has_every_event(
    client: httpx.AsyncClient, app: App, nats_client: nats.NATS, stream: str
) -> None:
    events = [{"id": f"c{i}", "name": "signup", "user": f"u{i}"} for i in range(40)]
    events += [{"name": "view", "user": "u1"} for _ in range(10)]  # ids made by the server
    events.append({"name": "", "user": "u1"})  # a failed event travels through the log too
    response = await send(client, app, events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 50

    # No loader runs: what the client was told is accepted is in the stream, nowhere else.
    js = nats_client.jetstream()
    info = await js.stream_info(stream)
    assert info.state.messages == 51
    first = await js.get_msg(stream, 1)
    assert first.headers is not None and first.headers[MSG_ID] == f"{app.id}/c0"
    last_event = await js.get_msg(stream, 50)
    assert not (last_event.headers or {}).get(MSG_ID)  # a server-made id is never retried


async def test_retry_is_a_duplicate_and_stored_once(
    client: httpx.AsyncClient,
    app: App,
    new_app: NewApp,
    nats_client: nats.NATS,
    stream: str,
    log_url: str,
    store_url: str,
) -> None:
    events = [{"id": f"r{i}", "name": "purchase", "user": f"u{i % 3}"} for i in range(20)]
    first = await send(client, app, events)
    assert first.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    retry = await send(client, app, events)
    assert retry.json() == {"accepted": 0, "duplicates": 20, "rejected": []}
    half = await send(client, app, [*events[:5], {"id": "r-new", "name": "purchase"}])
    assert half.json() == {"accepted": 1, "duplicates": 5, "rejected": []}
    assert (await nats_client.jetstream().stream_info(stream)).state.messages == 21

    async with RunningLoader(log_url, store_url):
        await eventually(lambda: consumer_done(nats_client, stream, 21), "the loader")
    stored = StoredEvents(store_url)
    try:
        assert stored.rows() == 21
        assert stored.events() == 21
    finally:
        stored.close()
    # Reads go to ClickHouse: each event once.
    read = await client.get(
        f"/api/v1/apps/{app.id}/events", params={"limit": 100}, auth=auth(new_app)
    )
    assert read.status_code == 200, read.text
    assert sorted(e["id"] for e in read.json()["events"]) == sorted(
        [f"r{i}" for i in range(20)] + ["r-new"]
    )


async def test_loader_stores_then_acknowledges(
    client: httpx.AsyncClient,
    app: App,
    new_app: NewApp,
    nats_client: nats.NATS,
    stream: str,
    log_url: str,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [{"id": f"a{i}", "name": "open", "user": "u1"} for i in range(30)]
    events += [{"name": "", "user": "u1"}, {"name": "", "user": "u2"}]
    assert (await send(client, app, events)).status_code == 200

    # The first inserts fail (ClickHouse away): nothing may be acknowledged meanwhile.
    failures = {"left": 2}
    real_append = ClickHouseDB.append

    def flaky_append(self: ClickHouseDB, *args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("ClickHouse is away")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(ClickHouseDB, "append", flaky_append)
    js = nats_client.jetstream()
    async with RunningLoader(log_url, store_url) as loader:

        async def failed_once() -> bool:
            return failures["left"] < 2

        await eventually(failed_once, "a failed insert")
        info = await js.consumer_info(stream, f"{stream}_loader")
        assert info.num_ack_pending == 32  # taken, not acknowledged
        assert (await js.stream_info(stream)).state.messages == 32
        await eventually(lambda: consumer_done(nats_client, stream, 32), "the loader")
        assert loader.stats.events == 30 and loader.stats.failed == 2

    # Acknowledged means stored: the work-queue stream dropped the messages, ClickHouse has them.
    assert (await js.stream_info(stream)).state.messages == 0
    stored = StoredEvents(store_url)
    try:
        assert stored.events() == 30
        assert stored.scalar("SELECT count() FROM {db}.failed_events FINAL") == 2
    finally:
        stored.close()
    failed = await client.get(f"/api/v1/apps/{app.id}/failed-events", auth=auth(new_app))
    assert failed.status_code == 200, failed.text
    assert len(failed.json()["failed_events"]) == 2


async def test_failed_events_keep_their_message_ids(
    client: httpx.AsyncClient,
    app: App,
    nats_client: nats.NATS,
    stream: str,
    log_url: str,
    store_url: str,
) -> None:
    """A redelivered failed event replaces itself (its id is its message id)."""
    events = [{"name": "ok", "user": "u1"}, {"name": "", "user": "u1"}]
    assert (await send(client, app, events)).status_code == 200
    message = await nats_client.jetstream().get_msg(stream, 2)  # after the event
    assert message.headers is not None
    msg_id = message.headers[MSG_ID]
    async with RunningLoader(log_url, store_url):
        await eventually(lambda: consumer_done(nats_client, stream, 2), "the loader")
    stored = StoredEvents(store_url)
    try:
        [(failed_id,)] = stored.client.execute(f"SELECT id FROM {stored.database}.failed_events")
    finally:
        stored.close()
    assert failed_id == msg_id


async def test_log_unreachable_answers_503(catalog: Catalog, app: App, store_url: str) -> None:
    log = NatsLog(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5)
    services = Services(
        catalog=catalog, store=LoggedStore(log, ClickHouseStore(store_url)), limits=Limits()
    )
    transport = httpx.ASGITransport(app=TallyApp(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
            response = await send(http, app, [{"id": "x1", "name": "signup"}])
            assert response.status_code == 503, response.text
            assert "store_unavailable" in response.text
            assert (await http.get("/readyz")).status_code == 503
    finally:
        await services.store.close()


async def test_stream_gone_answers_503_then_recovers(
    client: httpx.AsyncClient, app: App, nats_client: nats.NATS, stream: str
) -> None:
    """JetStream not acknowledging (here: the stream was deleted under a connected collector)."""
    assert (await send(client, app, [{"id": "s1", "name": "a"}])).status_code == 200
    await nats_client.jetstream().delete_stream(stream)
    response = await send(client, app, [{"id": "s2", "name": "a"}])
    assert response.status_code == 503, response.text
    # The next append makes sure the stream exists again (it is created when missing).
    response = await send(client, app, [{"id": "s2", "name": "a"}])
    assert response.status_code == 200, response.text
    assert (await nats_client.jetstream().stream_info(stream)).state.messages == 1
