"""``tally serve``: one process, or HTTP workers in front of one store process.

With ``workers == 1`` everything runs in one process. With more, the supervisor binds the port,
starts a store process that owns the DuckDB file and group-commits for everyone, and starts the
HTTP workers, which share the listening socket and run the pipeline on every core. A worker answers
a client only after the store process has committed the client's events.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import time
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally import heap
from tally.config import Settings
from tally.process import exit_with_parent

if TYPE_CHECKING:
    from tally.store.base import EventStore

log = logging.getLogger("tally.serve")
_spawn = multiprocessing.get_context("spawn")


UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,
    "log_level": "warning",
    "timeout_keep_alive": 30,
    "timeout_graceful_shutdown": 10,
}
"""The server stack's settings; bench/ serves its bare-ASGI ceiling with the same ones."""


def _uvicorn_config(app: object, settings: Settings):  # type: ignore[no-untyped-def]
    import uvicorn

    options = {**UVICORN_OPTIONS, "http": header_timeout_protocol(settings.limits.header_timeout)}
    return uvicorn.Config(app, host=settings.host, port=settings.port, **options)


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's httptools protocol with a deadline for each request's headers.

    uvicorn times out idle keep-alive connections only after a response, and any byte received
    cancels that: a client that opens connections and sends headers a byte at a time (slowloris)
    would keep each open for ever. Here a connection must deliver a request's headers within
    ``seconds`` of opening or of the previous response; else it gets a plain 408 (the protocol
    cannot be told yet) and is closed, or is just closed if it sent nothing. Slow bodies are
    the ingest endpoints' own timeout (``Limits.body_timeout``).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        """One timer per connection, re-armed only when it fires early: a request costs two
        attribute writes, not a timer's cancel and re-creation."""

        _header_timer: asyncio.TimerHandle | None = None
        _receiving_headers = False
        _idle_since = 0.0
        """When the connection opened or its last response ended (the loop's clock)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle_since = self.loop.time()
            self._arm_header_timer(seconds)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._receiving_headers = True

        def on_headers_complete(self) -> None:
            self._receiving_headers = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle_since = self.loop.time()
            if self._header_timer is None and not self.transport.is_closing():
                self._arm_header_timer(seconds)

        def _arm_header_timer(self, delay: float) -> None:
            self._header_timer = self.loop.call_later(delay, self._header_deadline)

        def _header_deadline(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered; its response starts the clock again
            left = self._idle_since + seconds - self.loop.time()
            if left > 0:  # a response ended since the timer was armed
                self._arm_header_timer(left)
                return
            if self._receiving_headers:
                self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    return HeaderTimeoutProtocol


_TIMEOUT_TEXT = b"request headers not received in time"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: "
    + str(len(_TIMEOUT_TEXT)).encode()
    + b"\r\nconnection: close\r\n\r\n"
    + _TIMEOUT_TEXT
)


def prepare(settings: Settings) -> list[str]:
    """Create the data folder and run every pending migration; returns what was done."""
    from tally.catalog import Catalog

    settings.ensure_data_dir()
    done = []
    catalog = Catalog(settings.catalog_url)
    try:
        for version in catalog.migrate():
            done.append(f"catalog schema -> version {version}")
    finally:
        catalog.close()
    for version in _migrate_event_store(settings):
        done.append(f"event store schema -> version {version}")
    return done


def _migrate_event_store(settings: Settings) -> list[int]:
    if settings.store is not None:
        from tally.store.clickhouse_db import ClickHouseDB

        clickhouse = ClickHouseDB(settings.store, dedup_window=_dedup_window(settings))
        try:
            return clickhouse.migrate()
        finally:
            clickhouse.close()
    from tally.store.duckdb_store import DuckDBStore

    store = DuckDBStore(settings.data_dir)
    try:
        return store.migrate()
    finally:
        store.close()


def first_run_hint(settings: Settings) -> str | None:
    """What to do when the catalog has no dashboard user yet (None once it has one)."""
    from tally.catalog import Catalog

    catalog = Catalog(settings.catalog_url)
    try:
        if catalog.users.count():
            return None
    finally:
        catalog.close()
    where = f"--data {settings.data_dir}" + (" --catalog URL" if settings.catalog else "")
    return (
        f"No dashboard user yet: create one with `tally users create EMAIL {where}`, "
        f"or try `tally demo {where}` (a demo app and user)"
    )


def _dedup_window(settings: Settings) -> timedelta:
    return timedelta(days=settings.limits.dedup_window_days)


def external_store(settings: Settings) -> EventStore:
    """The event store of one collector process when the events live outside the data folder:
    ClickHouse for reads, and the log (if any) as the sink (``tally.log.store``)."""
    from tally.store.clickhouse_store import ClickHouseStore

    reader = ClickHouseStore(
        settings.store or "", dedup_window=_dedup_window(settings), migrate=False
    )
    if settings.log is None:
        return reader  # every request one ClickHouse insert: small set-ups and tests only
    from tally.log.nats_log import NatsLog
    from tally.log.store import LoggedStore

    return LoggedStore(NatsLog(settings.log), reader)


def _run_single(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    from tally.catalog import Catalog
    from tally.http.app import TallyApp
    from tally.http.services import Services
    from tally.store.embedded import EmbeddedStore

    store: EventStore
    if settings.external_store:
        store = external_store(settings)
    else:
        store = EmbeddedStore(
            settings.data_dir,
            dedup_window=_dedup_window(settings),
            dedup_max_ids=settings.limits.dedup_max_ids,
            commit_delay=settings.commit_delay,
            migrate=False,
        )
    services = Services(catalog=Catalog(settings.catalog_url), store=store, limits=settings.limits)
    server = uvicorn.Server(_uvicorn_config(TallyApp(services), settings))
    heap.settle()
    server.run(sockets=[sock])


def _worker_main(
    settings: Settings, sock: socket.socket, socket_path: Path, supervisor: int
) -> None:
    exit_with_parent(supervisor)
    import uvicorn

    from tally.catalog import Catalog
    from tally.http.app import TallyApp
    from tally.http.services import Services
    from tally.store.remote import RemoteStore

    services = Services(
        catalog=Catalog(settings.catalog_url),
        store=external_store(settings) if settings.external_store else RemoteStore(socket_path),
        limits=settings.limits,
    )
    server = uvicorn.Server(_uvicorn_config(TallyApp(services), settings))
    heap.settle()
    server.run(sockets=[sock])


def _store_main(settings: Settings, socket_path: Path, ready: Any, supervisor: int) -> None:
    exit_with_parent(supervisor)
    from tally.store import server

    server.run(
        settings.data_dir,
        socket_path,
        ready.set,
        dedup_window=_dedup_window(settings),
        dedup_max_ids=settings.limits.dedup_max_ids,
        commit_delay=settings.commit_delay,
    )


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.socket_path = settings.run_dir / "store.sock"
        self.store: BaseProcess | None = None
        self.workers: list[BaseProcess] = []
        self.stopping = False

    def start_store(self) -> None:
        ready = _spawn.Event()
        process = _spawn.Process(
            target=_store_main,
            args=(self.settings, self.socket_path, ready, os.getpid()),
            name="tally-store",
            daemon=False,
        )
        process.start()
        while not ready.wait(timeout=0.1):
            if not process.is_alive():
                raise RuntimeError(
                    f"the store process failed to start (exit code {process.exitcode})"
                )
        self.store = process

    def start_worker(self) -> BaseProcess:
        process = _spawn.Process(
            target=_worker_main,
            args=(self.settings, self.sock, self.socket_path, os.getpid()),
            name="tally-http",
            daemon=False,
        )
        process.start()
        return process

    def run(self) -> None:
        from tally import metrics

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        if not self.settings.external_store:  # else each worker reaches the store itself
            self.start_store()
        self.workers = [self.start_worker() for _ in range(self.settings.workers)]
        while not self.stopping:
            time.sleep(0.2)
            if self.store is not None and not self.store.is_alive() and not self.stopping:
                log.error("store process exited (code %s); restarting it", self.store.exitcode)
                self.start_store()
            for i, worker in enumerate(self.workers):
                if not worker.is_alive() and not self.stopping:
                    log.error("HTTP worker exited (code %s); restarting it", worker.exitcode)
                    if worker.pid is not None:
                        metrics.mark_process_dead(worker.pid)
                    self.workers[i] = self.start_worker()
        self.shutdown()

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Workers first (they finish in-flight requests), then the store (it commits the rest)."""
        for worker in self.workers:
            if worker.is_alive() and worker.pid:
                os.kill(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.join(timeout=15)
            if worker.is_alive():
                worker.kill()
        if self.store is not None and self.store.is_alive() and self.store.pid:
            os.kill(self.store.pid, signal.SIGTERM)
            self.store.join(timeout=30)
            if self.store.is_alive():
                self.store.kill()


class PrepareError(Exception):
    """Migrating before start-up failed for a reason the user can act on (the message says)."""


def _explain(exc: BaseException, settings: Settings) -> str | None:
    """A user-facing message for a start-up failure, or None if it is unexpected."""
    module = type(exc).__module__
    if module.startswith(("duckdb", "_duckdb")):
        if type(exc).__name__ == "OutOfMemoryException":  # (duckdb is not imported here)
            return (
                f"the event store in {settings.data_dir} cannot start within the memory it may "
                f"use; raise TALLY_STORE_MEMORY: {exc}"
            )
        if re.search(r"\block\b", str(exc), re.IGNORECASE):  # not "could not allocate block"
            return (
                f"the event store in {settings.data_dir} is in use by another process "
                f"(another tally serve?): {exc}"
            )
    if module.startswith("clickhouse_driver"):
        return f"cannot use the event store {settings.store}: {exc}"
    return None


def _prepare_and_hint(settings: Settings) -> tuple[list[str], str | None]:
    try:
        return prepare(settings), first_run_hint(settings)
    except Exception as exc:
        message = _explain(exc, settings)
        if message is not None:
            raise PrepareError(message) from exc
        raise


def _prepare_child(settings: Settings, conn: Any) -> None:
    try:
        conn.send(("ok", *_prepare_and_hint(settings)))
    except PrepareError as exc:
        conn.send(("error", str(exc), None))
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}", None))
    finally:
        conn.close()


def _prepare_in_child(settings: Settings) -> tuple[list[str], str | None]:
    """``prepare`` and ``first_run_hint`` in a short-lived process: the supervisor of several
    workers then never imports DuckDB, Arrow or SQLAlchemy (about 100 MB it would hold for the
    server's whole life while doing nothing but supervising)."""
    parent, child = _spawn.Pipe(duplex=False)
    process = _spawn.Process(target=_prepare_child, args=(settings, child), name="tally-migrate")
    process.start()
    child.close()
    try:
        outcome, first, second = parent.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"migrating failed (exit code {process.exitcode})") from None
    process.join()
    if outcome == "error":
        raise PrepareError(first)
    if outcome == "failed":
        raise RuntimeError(f"migrating failed: {first}")
    return first, second


def serve(settings: Settings) -> None:
    settings.check()
    done, hint = (
        _prepare_and_hint(settings) if settings.workers == 1 else _prepare_in_child(settings)
    )
    for line in done:
        print(f"migrated {line}", file=sys.stderr)
    run_dir = settings.run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "metrics").mkdir(parents=True)
    if settings.workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "metrics")
    sock = bind(settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    port = sock.getsockname()[1]
    shape = (
        "one process"
        if settings.workers == 1
        else f"{settings.workers} HTTP workers"
        + ("" if settings.external_store else " + 1 store process")
    )
    if settings.external_store:
        shape += f"; events to {settings.log or settings.store}, read from {settings.store}"
    print(
        f"Tally listening on http://{host}:{port} ({shape}; data in {settings.data_dir})",
        flush=True,
    )
    print(
        f"Dashboard: http://{host}:{port}/ (create apps there, or with "
        f"`tally apps create NAME --data {settings.data_dir}`)",
        flush=True,
    )
    if hint is not None:
        log.warning(hint)
    if settings.workers == 1:
        _run_single(settings, sock)
    else:
        Supervisor(settings, sock).run()
