"""``Tally``: the client for threads. Events are queued by the caller and sent by one background
thread, in batches; see docs/python-sdk.md."""

from __future__ import annotations

import atexit
import logging
import os
import threading
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

log = logging.getLogger("tally.client")
JOIN_GRACE = 2.0
"""Seconds ``close`` waits for the thread beyond its deadline (a last report, a callback)."""


def post_events(
    http: httpx.Client, settings: Settings, items: list[bytes], timeout: float
) -> Answer:
    """One ``POST /api/v1/events``; any failure to get an answer is an ``Answer`` with none."""
    credentials = settings.credentials
    headers = {"Content-Type": "application/json", **credentials.write_headers()}
    auth = credentials.write_auth()
    try:
        response = http.post(
            EVENTS_PATH,
            content=envelope(items),
            headers=headers,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        return Answer(None, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # never let the sending thread die
        log.exception("tally: unexpected error sending events")
        return Answer(None, error=f"{type(exc).__name__}: {exc}")
    return Answer(response.status_code, response.content, response.headers.get("retry-after"))


class Tally(EventMethods):
    """Sends events to a Tally server from a background thread, in batches, with retries.

    ``Tally(host, app_key=...)`` writes with the app's public key; ``Tally(host, api_key=...,
    api_secret=..., app_id=...)`` writes as a trusted server and can read (``events``,
    ``query``). ``track`` never blocks on the network and never raises for the server's sake;
    what the server refuses goes to ``on_error``. Queued events are sent at exit (``atexit``),
    or call ``flush()``/``close()``."""

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = Settings.of(
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
        self._setup(settings, transport)

    @classmethod
    def _of(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Tally:
        client = cls.__new__(cls)
        client._setup(settings, transport)
        return client

    def _setup(self, settings: Settings, transport: httpx.BaseTransport | None) -> None:
        self._settings = settings
        self._max_event_bytes = settings.max_event_bytes
        self._transport = transport
        self._buffer: Buffer = settings.new_buffer()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._deadline: float | None = None
        self._flush_target = 0
        self._send_at = 0.0
        self._http = self._new_http()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_after_fork"))
        self._exit_hook: Callable[[], None] | None = None
        if settings.flush_at_exit:
            self._exit_hook = lambda: _call(ref, "_at_exit")
            atexit.register(self._exit_hook)

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self._settings.base_url,
            timeout=self._settings.timeout,
            headers={"User-Agent": USER_AGENT},
            transport=self._transport,
        )

    # Queueing

    def _put(self, item: bytes) -> bool:
        with self._cond:
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
            if was_empty or buffer.batch_ready():
                self._cond.notify_all()
            self._start_worker()
            return True

    def _start_worker(self) -> None:
        """Start the sending thread if it is not running (the lock is held)."""
        if self._thread is not None and self._thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name="tally-client", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # at interpreter shutdown: close() sends from its own thread
            self._thread = None
            return
        self._thread = thread

    # The sending thread

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._deliver(batch)
            except Exception:  # pragma: no cover - a bug; keep the thread alive
                log.exception("tally: unexpected error delivering a batch")

    def _next_batch(self) -> list[bytes] | None:
        """Wait (the lock is held) until a batch is due; None when closed and empty."""
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
                self._cond.wait(self._send_at - now)
            elif self._closing:
                return None
            else:
                self._cond.wait()

    def _deliver(self, batch: list[bytes]) -> None:
        delivery = Delivery(batch, self._settings.policy)
        steps = delivery.run()
        try:
            step = next(steps)
            while True:
                if isinstance(step, Send):
                    answer: Any = self._post(step.items)
                else:
                    answer = self._wait(step.seconds)
                step = steps.send(answer)
        except StopIteration:
            pass
        report(self._settings.on_error, delivery.failures)
        with self._cond:
            self._buffer.settle(delivery)
            self._cond.notify_all()

    def _post(self, items: list[bytes]) -> Answer | None:
        timeout = self._settings.timeout
        deadline = self._deadline
        if deadline is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return None
            timeout = min(timeout, remaining)
        return post_events(self._http, self._settings, items, timeout)

    def _wait(self, seconds: float) -> bool:
        """Sleep, unless ``close`` sets a deadline that comes first: then False."""
        end = monotonic() + seconds
        with self._cond:
            while True:
                now = monotonic()
                if self._deadline is not None and now >= self._deadline:
                    return False
                if now >= end:
                    return True
                until = end if self._deadline is None else min(end, self._deadline)
                self._cond.wait(until - now)

    # Flushing and closing

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far and wait until the server answered for it (stored, or
        refused and reported to ``on_error``, or given up after the retries). Returns False if
        ``timeout`` seconds passed first (the events stay queued)."""
        if threading.current_thread() is self._thread:
            log.warning("tally: flush() from the sending thread (an on_error callback) is a no-op")
            return False
        end = None if timeout is None else monotonic() + timeout
        with self._cond:
            target = self._buffer.enqueued
            if self._buffer.settled >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            if not self._closing:
                self._start_worker()
            self._cond.notify_all()
            while self._buffer.settled < target:
                if self._thread is None or not self._thread.is_alive():
                    log.warning("tally: flush() cannot send: no sending thread (shutdown?)")
                    return False
                if end is None:
                    self._cond.wait()
                    continue
                remaining = end - monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (retrying for at most ``timeout`` seconds, default
        ``close_timeout``), then stop the thread. What is still unsent then is reported to
        ``on_error`` as ``close_timeout``. Later ``track`` calls drop their events."""
        if self._closed:
            return
        timeout = self._settings.close_timeout if timeout is None else timeout
        with self._cond:
            self._closing = True
            if self._deadline is None:
                self._deadline = monotonic() + timeout
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is threading.current_thread():
            return  # from on_error: the thread finishes by itself
        if thread is not None and thread.is_alive():
            thread.join(timeout + JOIN_GRACE)
            if thread.is_alive():
                log.warning("tally: the sending thread did not stop within %.1f s", timeout)
                return
        elif self._buffer.items:
            self._run()  # no thread (never started, or at shutdown): send from this one
        self._closed = True
        self._http.close()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None

    def _at_exit(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover
            log.exception("tally: error sending events at exit")

    def _after_fork(self) -> None:
        """In a forked child: a new lock, connection pool and queue (the parent sends its own)."""
        self._cond = threading.Condition()
        self._thread = None
        self._buffer = self._settings.new_buffer()
        self._flush_target = 0
        self._http = self._new_http()

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Reads (api_key, api_secret and app_id)

    def events(
        self,
        *,
        user: str | int | None = None,
        name: str | None = None,
        since: datetime | str | float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored events, newest first (``GET /api/v1/apps/{app_id}/events``). ``user`` matches
        the person: that id and every id linked to it. Call ``flush()`` first to read what this
        client sent."""
        path = self._settings.credentials.app_path("events")
        answer = self._read("GET", path, params=events_params(user, name, since, limit))
        events: list[dict[str, Any]] = answer["events"]
        return events

    def query(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """An analytics query (``POST /api/v1/apps/{app_id}/query``, docs/queries.md)."""
        answer: dict[str, Any] = self._read(
            "POST", self._settings.credentials.app_path("query"), json=dict(query)
        )
        return answer

    def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        auth = self._settings.credentials.read_auth()
        try:
            response = self._http.request(method, path, auth=auth, **kwargs)
        except httpx.TransportError as exc:
            raise TallyError(None, NETWORK_ERROR, f"{type(exc).__name__}: {exc}") from exc
        return read_result(response.status_code, response.content)


def _call(ref: weakref.ref[Any], method: str) -> None:
    client = ref()
    if client is not None:
        getattr(client, method)()
