"""The ClickHouse event store (scale-out): the ``EventStore`` interface over ``ClickHouseDB``,
whose blocking driver calls run on a thread pool, as ``EmbeddedStore`` runs DuckDB's.

An append is one batch, inserted as it comes: there is no group commit here, because the callers
that write to ClickHouse (the loaders behind the log) batch already, and ClickHouse wants few,
large inserts. Reads are newest-first and exports oldest-first as in the embedded store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
from clickhouse_driver.errors import NetworkError, SocketTimeoutError

from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.base import Deletion, ExportQuery
from tally.store.clickhouse_db import ClickHouseDB
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

UNREACHABLE = (NetworkError, SocketTimeoutError, EOFError, OSError)
"""What the driver raises when ClickHouse cannot be reached or the connection drops: any call
then fails with ``StoreUnavailable`` (503 over HTTP), not an unexpected error."""

EXPORT_PAGE_ROWS = 50_000
"""Rows per export query; each page is handed on in batches of the caller's size."""


class ClickHouseStore:
    dialect = "clickhouse"
    """The SQL ``run_sql`` takes (``tally.query.dialects``)."""

    def __init__(
        self,
        url: str,
        *,
        cluster: str | None = None,
        dedup_window: timedelta = timedelta(days=7),
        migrate: bool = True,
        threads: int = 4,
    ) -> None:
        """``url``: ``clickhouse://[user[:password]@]host:port/database[?cluster=NAME]``; the
        database is created if missing. ``cluster`` (or the URL's) creates the tables on every
        host of that cluster behind Distributed tables (see ``clickhouse_schema``)."""
        self.db = ClickHouseDB(url, cluster=cluster, dedup_window=dedup_window)
        if migrate:
            self.db.migrate()
        self.live = LiveHub()
        self.db.on_commit = self._publish
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tally-clickhouse")

    def _publish(self, events: pa.Table) -> None:
        if self.live.active:
            self.live.publish(events)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, function, *args)
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"ClickHouse cannot be reached: {exc}") from exc

    async def migrate(self) -> list[int]:
        return await self._run(self.db.migrate)

    async def append(self, batch: AppendBatch) -> AppendResult:
        try:
            return await self._run(self.db.append, batch)
        except Exception as exc:
            raise StoreUnavailable(f"the ClickHouse insert failed: {exc}") from exc

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        return await self._run(self.db.fetch_events, query)

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        return await self._run(self.db.fetch_failed, query)

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None:
        await self._run(self.db.mark_replayed, app_id, replayed)

    async def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        return await self._run(self.db.discard_counts, app_id, since)

    async def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        """``sql`` with positional ``%s`` parameters (``clickhouse_client.positional``), as
        ``tally.query.dialects.CLICKHOUSE`` compiles it; a parameter may stand for a table of
        people (``clickhouse_persons``)."""
        return await self._run(self.db.run_sql, sql, params)

    def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events this process appends from now on (a loader's; collectors share them through
        the log later, not through ClickHouse)."""
        return self.live.subscribe(app_id, names)

    async def export_batches(
        self, query: ExportQuery, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Pages of ``EXPORT_PAGE_ROWS`` (keyset paging on (time, received_at, id)), handed on in
        batches of at most ``batch_rows``: one page in memory at a time."""
        page_rows = max(batch_rows, EXPORT_PAGE_ROWS)
        after: EventCursor | None = None
        while True:
            page = await self.export_page(query, after, page_rows)
            for batch in page.to_batches(max_chunksize=batch_rows):
                if batch.num_rows:
                    yield batch
            if page.num_rows < page_rows:
                return
            last = page.slice(page.num_rows - 1).to_pylist()[0]
            after = EventCursor(last["time"], last["received_at"], last["id"])

    async def export_page(
        self, query: ExportQuery, after: EventCursor | None, limit: int
    ) -> pa.Table:
        return await self._run(self.db.export_page, query, after, limit)

    async def count_events(self, query: ExportQuery) -> int:
        return await self._run(self.db.count_events, query)

    async def stored_ids(
        self, app_id: str, ids: list[str], since: datetime, until: datetime
    ) -> set[str]:
        return await self._run(self.db.stored_ids, app_id, ids, since, until)

    async def delete_person(self, app_id: str, user: str) -> Deletion:
        return await self._run(self.db.delete_person, app_id, user)

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        return await self._run(self.db.delete_expired, app_id, before)

    async def deletions(self, app_id: str) -> list[Deletion]:
        return await self._run(self.db.deletions, app_id)

    async def check_writable(self) -> None:
        try:
            await self._run(self.db.check_writable)
        except Exception as exc:
            raise StoreUnavailable(f"the event store is not writable: {exc}") from exc

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.db.close()
