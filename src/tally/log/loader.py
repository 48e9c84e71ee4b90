"""``tally loader``: moves events from the log into the ClickHouse store.

Each loader pulls from one durable JetStream consumer (several loaders may share it: JetStream
hands each message to one of them), gathers up to ``batch`` messages or ``max_wait`` seconds after
the first, stores them with one insert per table, and only then acknowledges them. A loader that
dies before its acknowledgements loses nothing: JetStream redelivers what was not acknowledged
after ``ack_wait``. Nor does it duplicate anything: a redelivered event has the same
ReplacingMergeTree key (app, day, name, person, id), reads use FINAL, and a failed event keeps its
message id as its id.
Discard counts are the exception (a SummingMergeTree): a redelivered count is added again.

After each insert the loader publishes the stored events on ``STREAM.live`` (core NATS) for the
collectors' live streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from clickhouse_driver.errors import Error as ClickHouseError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from tally import heap
from tally.log.messages import LIVE, MSG_ID, decode, live_payloads
from tally.log.nats_log import connect, ensure_stream
from tally.log.url import NatsUrl
from tally.sink import AppendResult
from tally.store.clickhouse_db import ClickHouseDB

log = logging.getLogger("tally.loader")

BATCH = 10_000
MAX_WAIT = 0.2
ACK_WAIT = 60.0
IDLE_FETCH = 1.0
"""How long one empty pull waits (also how soon an idle loader notices a stop)."""
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass
class LoaderStats:
    batches: int = 0
    events: int = 0
    failed: int = 0
    unreadable: int = 0


async def ensure_consumer(
    js: JetStreamContext, url: NatsUrl, *, ack_wait: float, batch: int
) -> None:
    try:
        info = await js.consumer_info(url.stream, url.durable)
        if info.config.ack_wait is not None and abs(info.config.ack_wait - ack_wait) > 0.001:
            log.warning(
                "consumer %s exists with ack_wait %ss; keeping it (asked for %ss)",
                url.durable,
                info.config.ack_wait,
                ack_wait,
            )
        return
    except nats.js.errors.NotFoundError:
        pass
    config = ConsumerConfig(
        durable_name=url.durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max(100_000, batch * 8),
    )
    try:
        await js.add_consumer(url.stream, config)
    except nats.js.errors.BadRequestError:
        await js.consumer_info(url.stream, url.durable)  # made by another loader meanwhile


class Loader:
    def __init__(
        self,
        log_url: str | NatsUrl,
        store_url: str,
        *,
        batch: int = BATCH,
        max_wait: float = MAX_WAIT,
        ack_wait: float = ACK_WAIT,
        cluster: str | None = None,
    ) -> None:
        self.url = NatsUrl.parse(log_url) if isinstance(log_url, str) else log_url
        self.store_url = store_url
        self.batch = batch
        self.max_wait = max_wait
        self.ack_wait = ack_wait
        self.cluster = cluster
        self.stats = LoaderStats()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Load until ``stop`` is set; the batch in hand is stored and acknowledged first."""
        db = await asyncio.to_thread(ClickHouseDB, self.store_url, cluster=self.cluster)
        try:
            await asyncio.to_thread(db.migrate)
            await self._load(db)
        finally:
            await asyncio.to_thread(db.close)

    async def _load(self, db: ClickHouseDB) -> None:
        nc = await connect(self.url, name="tally-loader")
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.url)
            await ensure_consumer(js, self.url, ack_wait=self.ack_wait, batch=self.batch)
            sub = await js.pull_subscribe_bind(durable=self.url.durable, stream=self.url.stream)
            log.info(
                "loading %s (consumer %s) into %s",
                self.url.stream,
                self.url.durable,
                db.url.database,
            )
            while not self.stop.is_set():
                messages = await self._gather(sub)
                if not messages:
                    continue
                stored = await self._store(db, messages)
                if stored is None:
                    break  # stopping while the store fails: JetStream redelivers them
                for message in messages:
                    await message.ack()
                await nc.flush()
                await self._publish_live(nc, stored)
        finally:
            await nc.close()

    async def _gather(self, sub: Any) -> list[Any]:
        """Up to ``batch`` messages: wait for the first, then collect for ``max_wait`` more."""
        try:
            messages = list(await sub.fetch(self.batch, timeout=IDLE_FETCH))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        deadline = time.monotonic() + self.max_wait
        while len(messages) < self.batch and not self.stop.is_set():
            left = deadline - time.monotonic()
            if left < 0.01:
                break
            try:
                messages.extend(await sub.fetch(self.batch - len(messages), timeout=left))
            except (TimeoutError, nats.errors.TimeoutError):
                break
        return messages

    async def _store(self, db: ClickHouseDB, messages: list[Any]) -> list[tuple] | None:
        """Insert until it works (the event rows stored), or until asked to stop (None:
        nothing may be acknowledged)."""
        incoming = decode([(m.subject, m.data, (m.headers or {}).get(MSG_ID)) for m in messages])
        if incoming.unreadable:
            log.error("skipping %d unreadable messages", incoming.unreadable)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result: AppendResult = await asyncio.to_thread(
                    db.append, incoming.batch, check_stored=False, failed_ids=incoming.failed_ids
                )
                break
            except Exception:
                if self.stop.is_set():
                    log.exception("the ClickHouse insert failed while stopping")
                    return None
                wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                log.exception("the ClickHouse insert failed; retrying in %ss", wait)
                for message in messages:  # keep them ours while we retry
                    await message.in_progress()
                await asyncio.sleep(wait)
        self.stats.batches += 1
        self.stats.events += result.accepted
        self.stats.failed += len(incoming.batch.failed)
        self.stats.unreadable += incoming.unreadable
        log.info(
            "stored %d events, %d failed events from %d messages in %.0f ms",
            result.accepted,
            len(incoming.batch.failed),
            len(messages),
            (time.perf_counter() - started) * 1000,
        )
        return incoming.batch.events

    async def _publish_live(self, nc: Any, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            for payload in live_payloads(rows):
                await nc.publish(self.url.subject(LIVE), payload)
        except nats.errors.Error:
            log.exception("live stream publish failed")  # best effort, like the live view


def run_loader(log_url: str, store_url: str, **options: Any) -> LoaderStats:
    """``tally loader``: run until SIGTERM or SIGINT, then finish the batch in hand."""
    import signal

    from tally.sink import StoreUnavailable

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not store_url.startswith("clickhouse://"):
        raise ValueError(f"--store takes a clickhouse:// URL (got {store_url!r})")
    loader = Loader(log_url, store_url, **options)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, loader.stop.set)
        heap.settle()
        attempt = 0
        while not loader.stop.is_set():
            batches = loader.stats.batches
            try:
                await loader.run()
            except (StoreUnavailable, OSError, nats.errors.Error, ClickHouseError) as exc:
                # NATS or ClickHouse away: what was taken and not acknowledged is redelivered.
                attempt = 0 if loader.stats.batches > batches else attempt + 1
                wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                log.error("loader stopped (%s); starting again in %ss", exc, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(loader.stop.wait(), wait)

    asyncio.run(main())
    log.info("stopped after %d batches, %d events", loader.stats.batches, loader.stats.events)
    return loader.stats
