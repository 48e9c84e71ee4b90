"""An HTTP worker's view of the store process: the ``EventStore`` interface over a Unix socket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.base import QUERY_TOO_LARGE, Deletion, ExportQuery, QueryTooLarge
from tally.store.query import (
    DiscardCount,
    EventCursor,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)
from tally.store.wire import frame, read_frame, sealed_message

if TYPE_CHECKING:
    import pyarrow as pa


class RemoteStore:
    dialect = "duckdb"
    """The SQL ``run_sql`` takes (``tally.query.dialects``): the store server's DuckDB."""
    export_page_rows = 50_000
    """Rows per export page message."""

    def __init__(self, socket_path: Path, connect_timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._connect_lock = asyncio.Lock()

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        async with self._connect_lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(self.socket_path)), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                raise StoreUnavailable(f"cannot reach the store process: {exc}") from exc
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_replies(reader, writer))
            return writer

    async def _read_replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                reply = await read_frame(reader)
                future = self._pending.pop(reply.get("rid"), None)
                if future is None or future.done():
                    continue
                if reply.get("ok"):
                    future.set_result(reply.get("result"))
                else:
                    future.set_exception(_error(reply))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            lost = StoreUnavailable("the store process connection was lost")
            for rid, future in list(self._pending.items()):
                if not future.done():
                    future.set_exception(lost)
                self._pending.pop(rid, None)

    async def _call(self, message: dict[str, Any]) -> Any:
        writer = await self._connection()
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        message["rid"] = rid
        try:
            writer.write(frame(message))
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(rid, None)
            raise StoreUnavailable(f"cannot reach the store process: {exc}") from exc
        return await future

    async def append(self, batch: AppendBatch) -> AppendResult:
        result = await self._call(sealed_message(batch))
        return msgspec.convert(result, AppendResult)

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        rows = await self._call({"op": "fetch", "query": msgspec.to_builtins(query)})
        for row in rows:
            for key in ("time", "received_at"):
                row[key] = datetime.fromisoformat(row[key])
        return rows

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        rows = await self._call({"op": "fetch_failed", "query": msgspec.to_builtins(query)})
        return msgspec.convert(rows, list[FailedRecord])

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None:
        await self._call(
            {"op": "mark_replayed", "app_id": app_id, "replayed": msgspec.to_builtins(replayed)}
        )

    async def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        rows = await self._call(
            {"op": "discard_counts", "app_id": app_id, "since": since and since.isoformat()}
        )
        return msgspec.convert(rows, list[DiscardCount])

    async def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        rows = await self._call({"op": "sql", "sql": sql, "params": params})
        return [tuple(row) for row in rows]

    async def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Live events, over a connection of its own (it carries nothing else)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path)), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot reach the store process: {exc}") from exc
        request = {"op": "subscribe", "rid": 1, "app_id": app_id, "names": list(names or [])}
        writer.write(frame(request))
        try:
            while True:
                try:
                    reply = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    raise StoreUnavailable("the store process connection was lost") from exc
                yield reply["result"]
        finally:
            writer.close()

    async def export_batches(
        self, query: ExportQuery, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Page after page (keyset on time, received_at and id), one message each, so neither
        process holds the whole export. Each page query scans what is left of the export, so
        pages are large (``export_page_rows``) and handed on in batches of ``batch_rows``."""
        import pyarrow as pa  # here, not at the top: an HTTP worker loads Arrow only to export

        page_rows = max(batch_rows, self.export_page_rows)
        after: EventCursor | None = None
        while True:
            data = await self._call(
                {
                    "op": "export_page",
                    "query": msgspec.to_builtins(query),
                    "after": msgspec.to_builtins(after) if after is not None else None,
                    "limit": page_rows,
                }
            )
            page = pa.ipc.open_stream(data).read_all()
            for batch in page.to_batches(max_chunksize=batch_rows):
                if batch.num_rows:
                    yield batch
            if page.num_rows < page_rows:
                return
            last = page.slice(page.num_rows - 1).to_pylist()[0]
            time, received_at = (last[k].replace(tzinfo=UTC) for k in ("time", "received_at"))
            after = EventCursor(time, received_at, last["id"])

    async def count_events(self, query: ExportQuery) -> int:
        return int(await self._call({"op": "count_events", "query": msgspec.to_builtins(query)}))

    async def stored_ids(
        self, app_id: str, ids: list[str], since: datetime, until: datetime
    ) -> set[str]:
        found = await self._call(
            {
                "op": "stored_ids",
                "app_id": app_id,
                "ids": ids,
                "since": since.isoformat(),
                "until": until.isoformat(),
            }
        )
        return set(found)

    async def delete_person(self, app_id: str, user: str) -> Deletion:
        record = await self._call({"op": "delete_person", "app_id": app_id, "user": user})
        return msgspec.convert(record, Deletion)

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        record = await self._call(
            {"op": "delete_expired", "app_id": app_id, "before": before.isoformat()}
        )
        return msgspec.convert(record, Deletion)

    async def check_writable(self) -> None:
        await self._call({"op": "ping"})

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()


def _error(reply: dict[str, Any]) -> Exception:
    """The exception a failed reply stands for: a query too large for the store's memory, or
    the store failing (``StoreUnavailable``, answered 503)."""
    message = str(reply.get("error", "store error"))
    if reply.get("kind") == QUERY_TOO_LARGE:
        return QueryTooLarge(message)
    return StoreUnavailable(message)
