"""Read-back queries over stored events (the debugging read API; analytics queries come later)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class EventQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    name: str | None = None
    user: str | None = None
    """Matches the event's user id or its device id."""
    since: datetime | None = None
    limit: int = 100
