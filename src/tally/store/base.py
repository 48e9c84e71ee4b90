"""The event store interface the HTTP layer relies on, whatever engine or process holds the data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any, Protocol

from tally.sink import Sink
from tally.store.query import (
    DiscardCount,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)


class EventStore(Sink, Protocol):
    """A sink that can also be read (the embedded default's sink is the store itself)."""

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]: ...

    async def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]: ...

    async def mark_replayed(self, app_id: str, replayed: list[ReplayedEvent]) -> None: ...

    async def discard_counts(
        self, app_id: str, since: date | None = None
    ) -> list[DiscardCount]: ...

    async def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        """Run a read-only analytics query compiled for this store's dialect."""
        ...

    def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events committed from now on (``store.live``)."""
        ...

    async def check_writable(self) -> None:
        """Raise ``StoreUnavailable`` if a write would fail now."""
        ...

    async def close(self) -> None: ...
