"""A collector SIGKILLed under load while its clients retry (on the other collector): afterwards
every event acknowledged to a client is in ClickHouse exactly once, as reads see it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import nats
from scaleout_support import (
    Processes,
    StoredEvents,
    consumer_done,
    create_app,
    eventually,
)

from support import App, Server

PER_REQUEST = 50


def _client(
    number: int,
    servers: list[Server],
    app: App,
    acked: set[str],
    stop: threading.Event,
    errors: list[str],
) -> None:
    """Sends requests of fresh ids; a request that fails is retried, on the next collector, until
    it is acknowledged."""
    sequence = 0
    with httpx.Client(timeout=10.0) as http:
        while not stop.is_set():
            ids = [f"c{number}-{sequence}-{i}" for i in range(PER_REQUEST)]
            sequence += 1
            events = [{"id": i, "name": "tick", "user": f"u{number}"} for i in ids]
            for attempt in range(200):
                server = servers[(number + attempt) % len(servers)]
                if not server.alive():
                    continue
                try:
                    response = server.ingest(http, app, events)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    body = response.json()
                    if body["accepted"] + body["duplicates"] != PER_REQUEST:
                        errors.append(f"partial answer {body}")
                    acked.update(ids)
                    break
                time.sleep(0.05)
            else:
                errors.append(f"request {ids[0]} never acknowledged")
                return


async def test_collector_killed_under_load(
    tmp_path: Path,
    postgres_catalog_url: str,
    log_url: str,
    store_url: str,
    stream: str,
    nats_client: nats.NATS,
    processes: Processes,
) -> None:
    app = create_app(postgres_catalog_url, tmp_path / "admin")
    options = ["--catalog", postgres_catalog_url, "--store", store_url, "--log", log_url]
    victim = processes.collector(options)
    survivor = processes.collector(options)
    processes.loader(log_url, store_url, "--max-wait", "0.05").wait_started()

    acked: set[str] = set()
    errors: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(
            target=_client, args=(n, [victim, survivor], app, acked, stop, errors), daemon=True
        )
        for n in range(4)
    ]
    for thread in clients:
        thread.start()
    await asyncio.sleep(2.0)
    before_kill = len(acked)
    victim.kill()  # SIGKILL, every process of the collector, mid-request for some clients
    await asyncio.sleep(2.0)
    stop.set()
    for thread in clients:
        thread.join(timeout=60)
    assert not errors, errors[:5]
    assert before_kill > 0 and len(acked) > before_kill

    stored = StoredEvents(store_url)
    try:

        async def all_there() -> bool:
            return stored.events() >= len(acked) and await consumer_done(nats_client, stream, 1)

        await eventually(all_there, "the acknowledged events in ClickHouse", timeout=120)
        ids = {
            event_id
            for (event_id,) in stored.client.execute(
                f"SELECT id FROM {stored.database}.events FINAL"
            )
        }
        assert acked <= ids  # nothing acknowledged is lost
        assert stored.events() == len(ids)  # and each is there once
        # Events of requests cut off by the kill and then retried are there once too: anything
        # stored beyond the acknowledged ids would be a lost retry's copy.
        assert ids == acked, sorted(ids - acked)[:10]
    finally:
        stored.close()
