"""``AsyncTally``: the client for asyncio. Events are queued by the caller and sent by one task
of the running event loop, in batches; see docs/python-sdk.md."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from time import monotonic
from typing import Any

import httpx

from tally.client._core import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    EVENTS_PATH,
    NETWORK_ERROR,
    SERVER_MAX_EVENT_BYTES,
    USER_AGENT,
    Answer,
    Buffer,
    Delivery,
    EventMethods,
    Failure,
    Send,
    Settings,
    TallyError,
    envelope,
    events_params,
    read_result,
    report,
)
from tally.client.sync import JOIN_GRACE, Tally

log = logging.getLogger("tally.client")


class AsyncTally(EventMethods):
    """The asyncio twin of ``Tally``: the same arguments, ``track``/``identify``/``alias`` are
    plain calls (they only queue), and ``flush``, ``close``, ``events`` and ``query`` are
    coroutines. Call ``track`` from the event loop's thread. Use ``async with`` or ``await
    close()``; events still queued when the program exits are sent by a last synchronous
    attempt at exit (not possible with an async-only ``transport``)."""

    def __init__(
        self,
        host: str,
        *,
        app_key: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        app_id: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_retries: int | None = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        timeout: float = DEFAULT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        max_event_bytes: int = SERVER_MAX_EVENT_BYTES,
        on_error: Callable[[Failure], Any] | None = None,
        flush_at_exit: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = Settings.of(
            host,
            app_key=app_key,
            api_key=api_key,
            api_secret=api_secret,
            app_id=app_id,
            batch_size=batch_size,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            timeout=timeout,
            close_timeout=close_timeout,
            max_event_bytes=max_event_bytes,
            on_error=on_error,
            flush_at_exit=flush_at_exit,
        )
        self._max_event_bytes = max_event_bytes
        self._transport = transport
        self._buffer: Buffer = self._settings.new_buffer()
        self._inflight: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._closing = False
        self._closed = False
        self._deadline: float | None = None
        self._flush_target = 0
        self._send_at = 0.0
        self._http = self._new_http()
        self._http_used = False
        self._exit_hook: Callable[[], None] | None = None
        if flush_at_exit:
            ref = weakref.ref(self)

            def hook() -> None:
                client = ref()
                if client is not None:
                    client._at_exit()

            self._exit_hook = hook
            atexit.register(hook)

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._settings.base_url,
            timeout=self._settings.timeout,
            headers={"User-Agent": USER_AGENT},
            transport=self._transport,
        )

    # Queueing

    def _put(self, item: bytes) -> bool:
        buffer = self._buffer
        if self._closing:
            if not buffer.dropped_closed:
                log.warning("tally: the client is closed; new events are dropped")
            buffer.dropped_closed += 1
            buffer.dropped += 1
            return False
        was_empty = not buffer.items
        if not buffer.put(item):
            return False
        if was_empty:
            self._send_at = monotonic() + self._settings.flush_interval
        self._ensure_task()
        if was_empty or buffer.batch_ready():
            self._wake.set()
        return True

    def _ensure_task(self) -> bool:
        """Start the sending task in the running loop if it is not running; False without a
        running loop (the task starts at the next call from inside one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._task is not None and not self._task.done() and self._loop is loop:
            return True
        if self._inflight:  # a task cancelled mid-batch (its loop ended): send the batch again
            self._buffer.requeue(self._inflight)
            self._inflight = []
        self._bind(loop)
        self._task = loop.create_task(self._run(), name="tally-client")
        return True

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on: asyncio objects and connections belong to one loop."""
        if self._loop is loop:
            return
        if self._loop is not None and self._http_used:
            self._http = self._new_http()  # the old pool belongs to the old loop
        self._loop = loop
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()

    # The sending task

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            self._inflight = batch
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise  # the batch stays in _inflight, to be sent again
            except Exception:  # pragma: no cover - a bug; keep the task alive
                log.exception("tally: unexpected error delivering a batch")
            self._inflight = []

    async def _sleep(self, seconds: float | None) -> None:
        """Until woken (a new event, flush, close) or ``seconds`` pass."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _next_batch(self) -> list[bytes] | None:
        buffer = self._buffer
        while True:
            now = monotonic()
            if buffer.items:
                if self._closing and self._deadline is not None and now >= self._deadline:
                    return buffer.take_all()  # too late: reported as close_timeout
                if (
                    self._closing
                    or buffer.batch_ready()
                    or buffer.taken < self._flush_target
                    or now >= self._send_at
                ):
                    return buffer.take()
                await self._sleep(self._send_at - now)
            elif self._closing:
                return None
            else:
                await self._sleep(None)

    async def _deliver(self, batch: list[bytes]) -> None:
        delivery = Delivery(batch, self._settings.policy)
        steps = delivery.run()
        try:
            step = next(steps)
            while True:
                if isinstance(step, Send):
                    answer: Any = await self._post(step.items)
                else:
                    answer = await self._wait(step.seconds)
                step = steps.send(answer)
        except StopIteration:
            pass
        report(self._settings.on_error, delivery.failures)
        self._buffer.settle(delivery)
        self._settled.set()

    async def _post(self, items: list[bytes]) -> Answer | None:
        timeout = self._settings.timeout
        if self._deadline is not None:
            remaining = self._deadline - monotonic()
            if remaining <= 0:
                return None
            timeout = min(timeout, remaining)
        credentials = self._settings.credentials
        headers = {"Content-Type": "application/json", **credentials.write_headers()}
        auth = credentials.write_auth()
        self._http_used = True
        try:
            response = await self._http.post(
                EVENTS_PATH,
                content=envelope(items),
                headers=headers,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("tally: unexpected error sending events")
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        return Answer(response.status_code, response.content, response.headers.get("retry-after"))

    async def _wait(self, seconds: float) -> bool:
        end = monotonic() + seconds
        while True:
            now = monotonic()
            if self._deadline is not None and now >= self._deadline:
                return False
            if now >= end:
                return True
            until = end if self._deadline is None else min(end, self._deadline)
            await self._sleep(until - now)

    # Flushing and closing

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far and wait until the server answered for it. Returns False
        if ``timeout`` seconds passed first (the events stay queued)."""
        if self._task is not None and asyncio.current_task() is self._task:
            log.warning("tally: flush() from the sending task (an on_error callback) is a no-op")
            return False
        buffer = self._buffer
        target = buffer.enqueued
        if buffer.settled >= target:
            return True
        self._flush_target = max(self._flush_target, target)
        self._ensure_task()
        self._wake.set()
        end = None if timeout is None else monotonic() + timeout
        while buffer.settled < target:
            task = self._task
            if task is None or task.done():
                return False
            remaining = None if end is None else end - monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued (retrying for at most ``timeout`` seconds, default
        ``close_timeout``), then stop the task and close the connections."""
        if self._closed:
            return
        timeout = self._settings.close_timeout if timeout is None else timeout
        self._closing = True
        if self._deadline is None:
            self._deadline = monotonic() + timeout
        if self._buffer.items or self._inflight:
            self._ensure_task()
        else:
            self._bind(asyncio.get_running_loop())  # the pool may belong to a finished loop
        self._wake.set()
        task = self._task
        if task is not None and task is asyncio.current_task():
            return  # from on_error: the task finishes by itself
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout + JOIN_GRACE)
            except TimeoutError:
                log.warning("tally: the sending task did not stop within %.1f s", timeout)
                task.cancel()
        self._closed = True
        await self._http.aclose()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None

    def _at_exit(self) -> None:
        """The program exits without ``close()``: send what is left (queued, or cut off mid-way
        when ``asyncio.run`` cancelled the task) with a synchronous client."""
        if self._closed:
            return
        items = [*self._inflight, *self._buffer.items]
        if not items:
            return
        transport = self._transport
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            log.warning("tally: %d events were not sent before exit (call close())", len(items))
            return
        settings = dataclasses.replace(self._settings, flush_at_exit=False)
        last = Tally._of(settings, transport)
        for item in items:
            last._buffer.put(item)
        try:
            last.close()
        except Exception:  # pragma: no cover
            log.exception("tally: error sending events at exit")

    async def __aenter__(self) -> AsyncTally:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Reads (api_key, api_secret and app_id)

    async def events(
        self,
        *,
        user: str | int | None = None,
        name: str | None = None,
        since: datetime | str | float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored events, newest first; see ``Tally.events``."""
        path = self._settings.credentials.app_path("events")
        answer = await self._read("GET", path, params=events_params(user, name, since, limit))
        events: list[dict[str, Any]] = answer["events"]
        return events

    async def query(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """An analytics query (``POST /api/v1/apps/{app_id}/query``, docs/queries.md)."""
        answer: dict[str, Any] = await self._read(
            "POST", self._settings.credentials.app_path("query"), json=dict(query)
        )
        return answer

    async def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        auth = self._settings.credentials.read_auth()
        self._bind(asyncio.get_running_loop())
        self._http_used = True
        try:
            response = await self._http.request(method, path, auth=auth, **kwargs)
        except httpx.TransportError as exc:
            raise TallyError(None, NETWORK_ERROR, f"{type(exc).__name__}: {exc}") from exc
        return read_result(response.status_code, response.content)
