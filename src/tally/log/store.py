"""The event store as a collector sees it in the scale-out setup: appends go to the log (and are
acknowledged once the log has them), reads go to the store the loaders fill (ClickHouse).

Reads therefore lag the log by the loaders' delay (a fraction of a second when they keep up): a
client does not always read its own write at once, unlike in the embedded default. The live
stream comes from the loaders through the log (``EventLog.watch_live``), so every collector shows
every event once it is stored, whichever collector took it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from tally.log.base import EventLog
from tally.sink import AppendBatch, AppendResult
from tally.store.base import Deletion, EventStore, ExportQuery
from tally.store.columns import events_table
from tally.store.live import LiveHub
from tally.store.query import DiscardCount, EventQuery, FailedQuery, FailedRecord, ReplayedEvent


class LoggedStore:
    """``EventStore`` whose sink is ``log`` and whose reads are ``reader``'s."""

    def __init__(self, log: EventLog, reader: EventStore) -> None:
        self.log = log
        self.reader = reader
        self.live = LiveHub()
        self._watching: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:
        # Whatever else the reader offers (its SQL dialect, export pages, deletions, ...).
        if name == "reader":
            raise AttributeError(name)
        return getattr(self.reader, name)

    async def append(self, batch: AppendBatch) -> AppendResult:
        return await self.log.append(batch)

    async def check_writable(self) -> None:
        """Ready when the log takes writes: ingest does not depend on the store behind it."""
        await self.log.check_writable()

    def _on_stored(self, batch: AppendBatch) -> None:
        if self.live.active and batch.events:
            self.live.publish(events_table(batch.events))

    async def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        if self._watching is None:
            self._watching = asyncio.ensure_future(self.log.watch_live(self._on_stored))
        try:
            await asyncio.shield(self._watching)
        except Exception:
            self._watching = None  # try again with the next subscriber
            raise
        async for item in self.live.subscribe(app_id, names):
            yield item

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        return await self.reader.fetch_events(query)

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        return await self.reader.fetch_failed(query)

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None:
        await self.reader.mark_replayed(app_id, replayed)

    async def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        return await self.reader.discard_counts(app_id, since)

    async def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        return await self.reader.run_sql(sql, params)

    def export_batches(self, query: ExportQuery, batch_rows: int) -> AsyncIterator[pa.RecordBatch]:
        return self.reader.export_batches(query, batch_rows)

    async def count_events(self, query: ExportQuery) -> int:
        return await self.reader.count_events(query)

    async def stored_ids(
        self, app_id: str, ids: list[str], since: datetime, until: datetime
    ) -> set[str]:
        return await self.reader.stored_ids(app_id, ids, since, until)

    async def delete_person(self, app_id: str, user: str) -> Deletion:
        return await self.reader.delete_person(app_id, user)

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        return await self.reader.delete_expired(app_id, before)

    async def close(self) -> None:
        await self.log.close()
        await self.reader.close()
