"""Events as the pipeline leaves them, and batches of them, for the store tests (DuckDB, journal,
ClickHouse)."""

from __future__ import annotations

from datetime import UTC, datetime

from tally.ids import uuid7
from tally.model import DropReason, Event, FailedEvent
from tally.sink import AppendBatch
from tally.store.rows import event_rows

APP = "a" * 24
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ev(name: str = "signup", id: str | None = None, *, now: datetime = NOW, **fields) -> Event:  # type: ignore[no-untyped-def]
    """An event as the pipeline leaves it; without ``id`` it gets a server-made one."""
    return Event(
        index=0,
        protocol="native",
        name=name,
        id=id or uuid7(),
        client_id=id is not None,
        time=fields.pop("time", now),
        received_at=fields.pop("received_at", now),
        count=fields.pop("count", 1),
        **fields,
    )


def batch(*events: Event, app_id: str = APP) -> AppendBatch:
    return AppendBatch(events=event_rows(app_id, list(events)))


def failed(reason: DropReason = DropReason.INVALID_NAME, **fields) -> FailedEvent:  # type: ignore[no-untyped-def]
    """A failed event as the pipeline records it."""
    return FailedEvent(
        app_id=fields.pop("app_id", APP),
        received_at=fields.pop("received_at", NOW),
        protocol=fields.pop("protocol", "native"),
        reason=reason,
        message=fields.pop("message", "bad"),
        payload=fields.pop("payload", b"{}"),
        **fields,
    )
