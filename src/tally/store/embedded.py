"""The embedded store as the server uses it in-process: a journal in front of DuckDB.

Appends are acknowledged once the journal has them on disk (group commit: requests that arrive
together share one append and sync); the journal loader stores them in DuckDB behind the replies.
Every read and every change to stored data first waits until what was acknowledged before it is
in DuckDB, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.base import Deletion, ExportQuery
from tally.store.duckdb_store import DuckDBStore
from tally.store.group_commit import GroupCommitter
from tally.store.journal import MIN_FREE_BYTES, Journal
from tally.store.journal_loader import MAX_LOAD_ROWS, JournalLoader
from tally.store.journal_writer import JournalWriter
from tally.store.live import LiveHub
from tally.store.query import (
    DiscardCount,
    EventCursor,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)
from tally.store.recent_ids import RecentIds
from tally.store.wire import SealedBatch, decode_batch, seal

T = TypeVar("T")

CATCH_UP_TIMEOUT = 60.0
"""How long a read waits for the loader before answering that the store is unavailable."""


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class EmbeddedStore:
    dialect = "duckdb"
    """The SQL ``run_sql`` takes (``tally.query.dialects``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        dedup_window: timedelta = timedelta(days=7),
        dedup_max_ids: int = 0,
        commit_delay: float = 0.002,
        migrate: bool = True,
    ) -> None:
        # locks the data folder
        self.db = DuckDBStore(data_dir, dedup_window=dedup_window, dedup_max_ids=dedup_max_ids)
        if migrate:
            self.db.migrate()
        self.live = LiveHub()
        self.db.on_commit = self.live.publish
        self.journal = Journal(data_dir)
        self._recover()
        self.loader = JournalLoader(
            self.db, self._loaded, on_failed=self._load_failed, loaded_seq=self.journal.last_seq
        )
        recent = RecentIds()
        for hi, lo in reversed(self.db.newest_client_ids(recent.capacity)):
            recent.add(RecentIds.key(hi, lo))
        self.recent = recent
        writer = JournalWriter(self.journal, self.loader, recent)
        self.committer = GroupCommitter(writer.write_group, max_delay=commit_delay)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tally-read")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def _recover(self) -> None:
        """Store what the journal holds beyond DuckDB's position (a crash, a failed load)."""
        chunk: list[AppendBatch] = []
        rows, last = 0, 0
        for seq, payload in self.journal.replay(after=self.db.journal_position()):
            batch = decode_batch(payload)
            chunk.append(batch)
            rows, last = rows + batch.rows, seq
            if rows >= MAX_LOAD_ROWS:
                self.db.commit_group(chunk, position=last)
                chunk, rows = [], 0
        if chunk:
            self.db.commit_group(chunk, position=last)
        self.journal.release(self.journal.last_seq)

    def _loaded(self, seq: int) -> None:
        """From the loader thread: wake the reads waiting for records up to ``seq``."""
        self.journal.loaded_through = seq
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, seq)

    def _load_failed(self) -> None:
        """From the loader thread: reads waiting for it go ahead with what is loaded."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, None)

    def _wake(self, seq: int | None) -> None:
        """Resolve the waiters for records up to ``seq`` (None: every waiter)."""
        waiting = []
        for target, future in self._waiters:
            if seq is None or target <= seq:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((target, future))
        self._waiters = waiting

    async def caught_up(self, *, strict: bool = False) -> None:
        """Wait until every batch acknowledged so far is in DuckDB.

        While loading fails (a full disk, say) a read does not wait: it answers from what is
        loaded, and ``check_writable`` (``/readyz``) reports the failure. A change to stored
        data (``strict``: forgetting a person, say) must see every acknowledged event, so it
        is refused with ``StoreUnavailable`` instead."""
        self._loop = asyncio.get_running_loop()
        target = self.journal.last_seq
        while self.loader.loaded_seq < target:
            if self.loader.error is not None:
                if strict:
                    raise StoreUnavailable(
                        f"the event store cannot load its journal: {self.loader.error}"
                    )
                return
            future: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append((target, future))
            self.loader.hurry()
            if self.loader.loaded_seq >= target or self.loader.error is not None:
                self._wake(None)  # loaded or failed while the waiter was being registered
            try:
                await asyncio.wait_for(future, CATCH_UP_TIMEOUT)
            except TimeoutError:
                raise StoreUnavailable("the event store is behind its journal") from None

    def loaded(self, timeout: float = CATCH_UP_TIMEOUT) -> DuckDBStore:
        """The DuckDB store once every batch acknowledged so far is in it (blocks the calling
        thread: for tools and tests that read the file directly)."""
        if not self.loader.wait_loaded(self.journal.last_seq, timeout):
            raise StoreUnavailable("the event store is behind its journal")
        return self.db

    async def append(self, batch: AppendBatch) -> AppendResult:
        return await self.committer.append(seal(batch))

    async def append_sealed(self, sealed: SealedBatch) -> AppendResult:
        """An append as the store process receives it from an HTTP worker, still encoded."""
        return await self.committer.append(sealed)

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        return await self._read(self.db.fetch_events, query)

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        await self.caught_up()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._reopening, True, function, *args)

    async def _change(self, function: Callable[..., T], *args: Any) -> T:
        await self.caught_up(strict=True)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._reopening, False, function, *args)

    def _reopening(self, retry: bool, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``; if DuckDB has invalidated the store, it is opened again (else every
        later call fails too) and a read is tried once more; a change is not (it may be done)."""
        conn = self.db.conn
        try:
            return function(*args)
        except duckdb.Error as error:
            if not self.db.invalidated(error):
                raise
            self.db.reopen_after(error, conn)
            if not retry:
                raise
        return function(*args)

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        return await self._read(self.db.fetch_failed, query)

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None:
        await self._change(self.db.mark_replayed, app_id, replayed)

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
        return await self._change(self.db.delete_person, app_id, user)

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        return await self._change(self.db.delete_expired, app_id, before)

    async def check_writable(self) -> None:
        free = self.journal.free_bytes()
        if free < MIN_FREE_BYTES:
            raise StoreUnavailable(f"the data folder's disk is full ({free} bytes free)")
        if self.loader.error is not None:
            raise StoreUnavailable(f"the event store cannot load its journal: {self.loader.error}")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._readers, self.db.check_writable)
        except Exception as exc:
            raise StoreUnavailable(f"the event store is not writable: {exc}") from exc

    async def close(self) -> None:
        await self.committer.close()
        await asyncio.get_running_loop().run_in_executor(None, self.loader.close)
        self.journal.close()
        if self.loader.loaded_seq >= self.journal.last_seq:
            self.journal.release(self.journal.last_seq)
        self._readers.shutdown(wait=True)
        self.db.close()
