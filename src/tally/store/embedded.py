"""The embedded store as the server uses it in-process: DuckDB behind a group committer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.duckdb_store import DuckDBStore
from tally.store.group_commit import GroupCommitter
from tally.store.live import LiveHub
from tally.store.query import (
    DiscardCount,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)

T = TypeVar("T")


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
