"""The log on NATS JetStream: a collector's ``append`` publishes every message of the batch at
once (many in flight), then waits for JetStream's acknowledgement of each; only then does the
client get its answer. A retry of a client-supplied event id inside the stream's duplicate window
is dropped by JetStream (``Nats-Msg-Id``) and counted as a duplicate.

The stream (file storage, work-queue retention: a message is gone once a loader acknowledged it)
is created when missing. Subjects and payloads: ``log.messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from tally.log.base import LiveHandler
from tally.log.messages import DISCARDED, EVENT, FAILED, LIVE, MSG_ID, decode_live, outgoing
from tally.log.url import NatsUrl
from tally.sink import AppendBatch, AppendResult, StoreUnavailable

log = logging.getLogger("tally.log")

PUBLISH_TIMEOUT = 5.0
"""How long a batch waits for JetStream's acknowledgements before the client gets a 503."""
CONNECT_TIMEOUT = 2.0
MAX_IN_FLIGHT = 4000
"""Publishes awaiting their acknowledgement at once, per process."""


async def connect(url: NatsUrl, *, name: str, connect_timeout: float = CONNECT_TIMEOUT) -> Client:
    """A connection that reconnects by itself for a while (publishes wait, then time out); once
    it gives up it is closed, and the next caller makes a new one."""

    async def quiet(exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=list(url.servers),
                name=name,
                connect_timeout=connect_timeout,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=20,
                error_cb=quiet,
            ),
            timeout=connect_timeout * 4,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise StoreUnavailable(f"cannot reach NATS at {', '.join(url.servers)}: {exc}") from exc


async def ensure_stream(js: JetStreamContext, url: NatsUrl) -> None:
    """Create the stream if it is missing (the same config again is a no-op for JetStream)."""
    subjects = [url.subject(kind) for kind in (EVENT, FAILED, DISCARDED)]
    try:
        await js.stream_info(url.stream)
        return
    except nats.js.errors.NotFoundError:
        pass
    config = StreamConfig(
        name=url.stream,
        subjects=subjects,
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        duplicate_window=url.duplicate_window,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.stream_info(url.stream)  # created by another process meanwhile


class NatsLog:
    def __init__(
        self,
        url: str | NatsUrl,
        *,
        publish_timeout: float = PUBLISH_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.url = NatsUrl.parse(url) if isinstance(url, str) else url
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock: asyncio.Lock | None = None
        self._live_handlers: list[LiveHandler] = []
        self._live_sub: Any = None
        self._stream_checked = False
        """False after a failed publish: the next append makes sure the stream is there."""

    def _ready(self) -> bool:
        return (
            self._stream_checked
            and self._js is not None
            and self._nc is not None
            and not self._nc.is_closed
        )

    async def _context(self) -> JetStreamContext:
        if self._ready():
            assert self._js is not None
            return self._js
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ready():
                assert self._js is not None
                return self._js
            if self._js is not None and self._nc is not None and not self._nc.is_closed:
                try:  # connected, but the last publish failed: is the stream still there?
                    await ensure_stream(self._js, self.url)
                except (TimeoutError, nats.errors.Error) as exc:
                    raise StoreUnavailable(f"JetStream stream {self.url.stream}: {exc}") from exc
                self._stream_checked = True
                return self._js
            nc = await connect(
                self.url, name="tally-collector", connect_timeout=self.connect_timeout
            )
            js = nc.jetstream(timeout=self.publish_timeout, publish_async_max_pending=MAX_IN_FLIGHT)
            try:
                await ensure_stream(js, self.url)
            except (TimeoutError, nats.errors.Error) as exc:
                await nc.close()
                raise StoreUnavailable(f"JetStream stream {self.url.stream}: {exc}") from exc
            self._nc, self._js, self._live_sub = nc, js, None
            self._stream_checked = True
            if self._live_handlers:
                await self._subscribe_live(nc)
            return js

    async def append(self, batch: AppendBatch) -> AppendResult:
        js = await self._context()
        messages = list(outgoing(batch))
        futures: list[asyncio.Future[Any]] = []
        try:
            for message in messages:
                headers = {MSG_ID: message.msg_id} if message.msg_id else None
                futures.append(
                    await js.publish_async(
                        self.url.subject(message.kind),
                        message.payload,
                        wait_stall=self.publish_timeout,
                        headers=headers,
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.publish_timeout)
        except (TimeoutError, nats.errors.Error) as exc:
            for future in futures:
                future.cancel()  # frees its place among the publishes in flight
            self._stream_checked = False
            raise StoreUnavailable(
                f"JetStream did not acknowledge the events: {type(exc).__name__} {exc}".strip()
            ) from exc
        duplicates = sum(
            1
            for message, ack in zip(messages, acks, strict=True)
            if message.kind == EVENT and message.client_id and ack.duplicate
        )
        return AppendResult(accepted=len(batch.events) - duplicates, duplicates=duplicates)

    async def check_writable(self) -> None:
        js = await self._context()
        try:
            await js.stream_info(self.url.stream)
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(f"JetStream stream {self.url.stream}: {exc}") from exc

    async def watch_live(self, handler: LiveHandler) -> None:
        self._live_handlers.append(handler)
        await self._context()
        if self._nc is not None and self._live_sub is None:
            await self._subscribe_live(self._nc)

    async def _subscribe_live(self, nc: Client) -> None:
        async def on_message(msg: Any) -> None:
            try:
                batch = decode_live(msg.data)
            except Exception:
                log.exception("unreadable live message on %s", msg.subject)
                return
            for handler in self._live_handlers:
                result = handler(batch)
                if inspect.isawaitable(result):
                    await result

        self._live_sub = await nc.subscribe(self.url.subject(LIVE), cb=on_message)
        await nc.flush()  # the server has the subscription: nothing published from now is missed

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.drain()
