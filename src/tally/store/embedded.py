"""The embedded store as the server uses it in-process: DuckDB behind a group committer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.base import Deletion, ExportQuery
from tally.store.duckdb_store import DuckDBStore
from tally.store.group_commit import GroupCommitter
from tally.store.live import LiveHub
from tally.store.query import (
    DiscardCount,
    EventCursor,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)

T = TypeVar("T")


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class EmbeddedStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        dedup_window: timedelta = timedelta(days=7),
        commit_delay: float = 0.002,
        migrate: bool = True,
    ) -> None:
        self.db = DuckDBStore(data_dir, dedup_window=dedup_window)
        if migrate:
            self.db.migrate()
        self.live = LiveHub()
        self.db.on_commit = self.live.publish
        self.committer = GroupCommitter(self.db.commit_group, max_delay=commit_delay)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tally-read")

    async def append(self, batch: AppendBatch) -> AppendResult:
        return await self.committer.append(batch)

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        return await self._read(self.db.fetch_events, query)

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, function, *args)

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        return await self._read(self.db.fetch_failed, query)

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None:
        await self._read(self.db.mark_replayed, app_id, replayed)

    async def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        return await self._read(self.db.discard_counts, app_id, since)

    async def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        return await self._read(self.db.run_sql, sql, params)

    def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.live.subscribe(app_id, names)

    async def export_batches(
        self, query: ExportQuery, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """One query streamed from a DuckDB cursor, a batch at a time, on the reader threads."""
        cursor, reader = await self._read(self.db.export_reader, query, batch_rows)
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[pa.RecordBatch | None] | None = None
        try:
            while True:
                pending = loop.run_in_executor(self._readers, _next_batch, reader)
                batch = await pending
                if batch is None:
                    return
                if batch.num_rows:
                    yield batch
        finally:
            # A reader thread may still be reading (the consumer went away mid-batch): close the
            # cursor once it is done, never under it.
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda _: cursor.close())
            else:
                cursor.close()

    async def export_page(
        self, query: ExportQuery, after: EventCursor | None, limit: int
    ) -> pa.Table:
        return await self._read(self.db.export_page, query, after, limit)

    async def count_events(self, query: ExportQuery) -> int:
        return await self._read(self.db.count_events, query)

    async def stored_ids(
        self, app_id: str, ids: list[str], since: datetime, until: datetime
    ) -> set[str]:
        return await self._read(self.db.stored_ids, app_id, ids, since, until)

    async def delete_person(self, app_id: str, user: str) -> Deletion:
        return await self._read(self.db.delete_person, app_id, user)

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        return await self._read(self.db.delete_expired, app_id, before)

    async def check_writable(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._readers, self.db.check_writable)
        except Exception as exc:
            raise StoreUnavailable(f"the event store is not writable: {exc}") from exc

    async def close(self) -> None:
        await self.committer.close()
        self._readers.shutdown(wait=True)
        self.db.close()
