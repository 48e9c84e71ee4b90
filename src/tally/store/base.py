"""The event store interface the HTTP layer relies on, whatever engine or process holds the data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from tally.sink import Sink
from tally.store.query import (
    DiscardCount,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)
from tally.store.rows import EVENT_COLUMN_NAMES

if TYPE_CHECKING:  # Arrow is the store's; an HTTP worker does not load it
    import pyarrow as pa

EXPORT_COLUMNS: tuple[str, ...] = tuple(name for name in EVENT_COLUMN_NAMES if name != "app_id")
"""The columns an export carries, as the events table names them (the app is the export's)."""


class QueryTooLarge(Exception):
    """A read needed more memory than the store may use (DuckDB's ``TALLY_STORE_MEMORY``,
    ClickHouse's ``max_memory_usage``). Asking again will not help; a narrower query may."""


QUERY_TOO_LARGE = "query_too_large"
"""The error code the HTTP API answers ``QueryTooLarge`` with, and its kind on the store wire."""


class ExportQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which events to export, oldest first: ordered by (time, received_at, id)."""

    app_id: str
    since: datetime | None = None
    """Event time at or after."""
    until: datetime | None = None
    """Event time before."""
    user: str | None = None
    """Only this person's events: whose user or device id is this id or one linked to it."""


class Deletion(msgspec.Struct, kw_only=True):
    """A record of events deleted on request (a person forgotten) or by the retention period."""

    id: str
    app_id: str
    kind: str
    """``person`` (a GDPR erasure) or ``retention``."""
    person: str | None = None
    """The id the erasure was asked for."""
    ids: list[str] = msgspec.field(default_factory=list)
    """Every id found to be that person (the id and the ids linked to it)."""
    events_deleted: int = 0
    links_deleted: int = 0
    cutoff: datetime | None = None
    """Retention: events whose time was before this were deleted."""
    requested_at: datetime


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

    def export_batches(self, query: ExportQuery, batch_rows: int) -> AsyncIterator[pa.RecordBatch]:
        """Events for an export, oldest first, in ``EXPORT_COLUMNS``, at most ``batch_rows`` a
        batch, without holding them all at once (a cursor here, pages from a store process)."""
        ...

    async def count_events(self, query: ExportQuery) -> int: ...

    async def stored_ids(
        self, app_id: str, ids: list[str], since: datetime, until: datetime
    ) -> set[str]:
        """Of ``ids``, those stored for the app with an event time in [since, until]."""
        ...

    async def delete_person(self, app_id: str, user: str) -> Deletion:
        """Delete every event of the person (all linked ids) and their links; keep a record."""
        ...

    async def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        """Delete the app's events whose time is before ``before`` (the retention period)."""
        ...

    async def check_writable(self) -> None:
        """Raise ``StoreUnavailable`` if a write would fail now."""
        ...

    async def close(self) -> None: ...
