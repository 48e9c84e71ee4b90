"""Read-back queries over stored events (the debugging read API; analytics queries come later)."""

from __future__ import annotations

from datetime import date, datetime

import msgspec


class EventCursor(msgspec.Struct, frozen=True, array_like=True):
    """A position in the newest-first order of events: the last event of a page."""

    time: datetime
    received_at: datetime
    id: str


class EventQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    name: str | None = None
    names: list[str] | None = None
    """Any of these names (an event and its aliases)."""
    user: str | None = None
    """Matches the event's user id or its device id."""
    since: datetime | None = None
    before: EventCursor | None = None
    """Only events after this one in the newest-first order (the next page)."""
    limit: int = 100


class FailedQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    ids: list[str] | None = None
    reason: str | None = None
    name: str | None = None
    since: datetime | None = None
    """Received at or after."""
    until: datetime | None = None
    """Received before."""
    replayed: bool | None = None
    """True: only replayed; False: only not yet replayed; None: both."""
    limit: int = 100
    with_payload: bool = False
    """Include the payload and the replay state (inspecting one, replaying)."""


class ReplayedEvent(msgspec.Struct, frozen=True, array_like=True):
    failed_id: str
    event_id: str


class FailedSummary(msgspec.Struct, kw_only=True):
    """A failed event as listed (``GET .../failed-events``)."""

    id: str
    received_at: datetime
    protocol: str
    reason: str
    message: str
    name: str | None
    event_index: int | None
    replayable: bool
    """False when the request could not be decoded into events (resend it instead)."""
    replayed_at: datetime | None
    replayed_as: str | None
    """The id the event was stored under when replayed."""


class FailedRecord(FailedSummary, kw_only=True):
    payload: bytes | None = None
    replay: bytes | None = None


class DiscardCount(msgspec.Struct, kw_only=True):
    rule: str
    day: date
    count: int
