"""A real ``tally loader`` SIGKILLed half-way through the log, then started again: every event the
collector acknowledged ends up in ClickHouse exactly once (as reads see it)."""

from __future__ import annotations

import asyncio
import time

import httpx
import nats
import pytest
from scaleout_support import Processes, StoredEvents, consumer_done, eventually, send

from tally.catalog import App

EVENTS = 20_000
PER_REQUEST = 500


async def test_loader_killed_mid_way_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    app: App,
    nats_client: nats.NATS,
    stream: str,
    log_url: str,
    store_url: str,
    processes: Processes,
) -> None:
    acknowledged = 0
    for start in range(0, EVENTS, PER_REQUEST):
        batch = [
            {"id": f"k{i}", "name": f"e{i % 7}", "user": f"u{i % 101}", "properties": {"i": i}}
            for i in range(start, start + PER_REQUEST)
        ]
        response = await send(client, app, batch)
        assert response.status_code == 200, response.text
        acknowledged += response.json()["accepted"]
    assert acknowledged == EVENTS

    stored = StoredEvents(store_url)
    try:
        # Small batches and a short ack wait, so the kill lands between inserts and the
        # redelivery of what the killed loader held comes quickly.
        options = ("--batch", "300", "--max-wait", "0.02", "--ack-wait", "2")
        js = nats_client.jetstream()
        held = 0
        for _ in range(5):  # until a kill lands while the loader holds unacknowledged messages
            loader = processes.loader(log_url, store_url, *options).wait_started()
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, loader.output()
                if stored.rows() >= EVENTS // 10:  # well under way
                    info = await js.consumer_info(stream, f"{stream}_loader")
                    if info.num_ack_pending:
                        break
                await asyncio.sleep(0.002)
            loader.kill()
            at_kill = stored.rows()
            if at_kill >= EVENTS:
                pytest.fail(f"the loader stored everything before the kill ({at_kill} rows)")
            held = (await js.consumer_info(stream, f"{stream}_loader")).num_ack_pending
            if held:
                break
        assert held, "no kill landed while the loader held messages"

        second = processes.loader(log_url, store_url, *options).wait_started()
        await eventually(
            lambda: consumer_done(nats_client, stream, EVENTS), "the second loader", timeout=120
        )
        assert second.terminate() == 0, second.output()

        assert stored.events() == EVENTS  # what reads see: each event once
        assert stored.distinct_ids() == EVENTS  # every acknowledged event is there
        assert stored.rows() >= EVENTS  # re-inserted copies, if any, are only collapsed
        assert (await nats_client.jetstream().stream_info(stream)).state.messages == 0
    finally:
        stored.close()
