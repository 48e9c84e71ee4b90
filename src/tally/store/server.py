"""The store process: owns the DuckDB file and serves appends and reads to the HTTP workers.

DuckDB allows one writing process per file, so with several HTTP workers (to use every core for
decoding and rules) one process holds the store and group-commits what all workers send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from tally import heap
from tally.store.base import QUERY_TOO_LARGE, ExportQuery, QueryTooLarge
from tally.store.embedded import EmbeddedStore
from tally.store.query import EventCursor, EventQuery, FailedQuery, ReplayedEvent
from tally.store.wire import frame, read_frame, unseal_message

log = logging.getLogger("tally.store")


def _time_fields(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key in ("time", "received_at"):
            row[key] = row[key].isoformat()
    return rows


def _ipc(table: pa.Table) -> bytes:
    """An Arrow table as an IPC stream (how export pages travel)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class StoreServer:
    def __init__(self, store: EmbeddedStore, socket_path: Path) -> None:
        self.store = store
        self.socket_path = socket_path
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._connections.add(current)
        current.add_done_callback(self._connections.discard)
        tasks: set[asyncio.Task[None]] = set()
        streams: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await read_frame(reader)
                if message.get("op") == "subscribe":
                    stream = asyncio.create_task(self._stream(message, writer))
                    streams.add(stream)
                    stream.add_done_callback(streams.discard)
                    continue
                task = asyncio.create_task(self._handle(message, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for stream in streams:  # a live subscription ends with its connection
                stream.cancel()
            if streams:
                await asyncio.gather(*streams, return_exceptions=True)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _stream(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """A live subscription: one reply frame per committed event, until the peer goes."""
        rid = message.get("rid")
        async for event in self.store.subscribe(message["app_id"], message.get("names")):
            if writer.is_closing():
                return
            writer.write(frame({"rid": rid, "ok": True, "result": event}))
            await writer.drain()

    async def _handle(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        rid = message.get("rid")
        try:
            result = await self._dispatch(message)
            reply = {"rid": rid, "ok": True, "result": result}
        except QueryTooLarge as exc:  # the query's, not the store's, fault
            reply = {"rid": rid, "ok": False, "error": str(exc), "kind": QUERY_TOO_LARGE}
        except Exception as exc:
            log.exception("store request failed")
            reply = {"rid": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not writer.is_closing():
            writer.write(frame(reply))

    async def _dispatch(self, message: dict[str, Any]) -> Any:
        op = message["op"]
        if op == "append":
            result = await self.store.append_sealed(unseal_message(message))
            return msgspec.to_builtins(result)
        if op == "fetch":
            query = msgspec.convert(message["query"], EventQuery)
            return _time_fields(await self.store.fetch_events(query))
        if op == "fetch_failed":
            failed = msgspec.convert(message["query"], FailedQuery)
            return msgspec.to_builtins(
                await self.store.fetch_failed(failed), builtin_types=(bytes, datetime)
            )
        if op == "mark_replayed":
            replayed = msgspec.convert(message["replayed"], list[ReplayedEvent])
            await self.store.mark_replayed(message["app_id"], replayed)
            return None
        if op == "discard_counts":
            since = date.fromisoformat(message["since"]) if message.get("since") else None
            return msgspec.to_builtins(await self.store.discard_counts(message["app_id"], since))
        if op == "sql":
            return [
                list(row) for row in await self.store.run_sql(message["sql"], message["params"])
            ]
        if op == "export_page":
            query = msgspec.convert(message["query"], ExportQuery)
            after = message.get("after")
            cursor = msgspec.convert(after, EventCursor) if after is not None else None
            return _ipc(await self.store.export_page(query, cursor, int(message["limit"])))
        if op == "count_events":
            return await self.store.count_events(msgspec.convert(message["query"], ExportQuery))
        if op == "stored_ids":
            found = await self.store.stored_ids(
                message["app_id"],
                message["ids"],
                datetime.fromisoformat(message["since"]),
                datetime.fromisoformat(message["until"]),
            )
            return sorted(found)
        if op == "delete_person":
            record = await self.store.delete_person(message["app_id"], message["user"])
            return msgspec.to_builtins(record, builtin_types=(datetime,))
        if op == "delete_expired":
            before = datetime.fromisoformat(message["before"])
            record = await self.store.delete_expired(message["app_id"], before)
            return msgspec.to_builtins(record, builtin_types=(datetime,))
        if op == "ping":
            await self.store.check_writable()
            return "pong"
        raise ValueError(f"unknown operation {op!r}")

    async def close(self, drain_timeout: float = 15.0) -> None:
        """Stop taking connections, let connected workers finish (they disconnect as they exit),
        then commit what is queued and close the store."""
        if self._server is not None:
            self._server.close()
        if self._connections:
            _, still_open = await asyncio.wait(set(self._connections), timeout=drain_timeout)
            for task in still_open:
                task.cancel()
            await asyncio.gather(*still_open, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self.store.close()


async def _main(
    data_dir: Path, socket_path: Path, on_ready: Callable[[], None] | None, **options: Any
) -> None:
    store = EmbeddedStore(data_dir, migrate=False, **options)
    server = StoreServer(store, socket_path)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    heap.settle()
    if on_ready is not None:
        on_ready()
    await stop.wait()
    await server.close()


def run(
    data_dir: Path,
    socket_path: Path,
    on_ready: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Entry point of the store process (started by ``tally serve``)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        pass
    asyncio.run(_main(data_dir, socket_path, on_ready, **options))
