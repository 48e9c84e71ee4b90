"""The event store interface the HTTP layer relies on, whatever engine or process holds the data."""

from __future__ import annotations

from typing import Any, Protocol

from tally.sink import Sink
from tally.store.query import EventQuery


class EventStore(Sink, Protocol):
    """A sink that can also be read (the embedded default's sink is the store itself)."""

    async def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]: ...

    async def check_writable(self) -> None:
        """Raise ``StoreUnavailable`` if a write would fail now."""
        ...

    async def close(self) -> None: ...
