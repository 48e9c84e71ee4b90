"""Where accepted and failed events go after the pipeline. Appends resolve only once durable.

The embedded default's sink is the event store itself, by group commit; in the scale-out setup it
is the log in front of the store.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class AppendBatch(msgspec.Struct, kw_only=True, array_like=True):
    """One request's accepted events and failed events, as rows (see ``store.rows``)."""

    events: list[tuple] = msgspec.field(default_factory=list)
    failed: list[tuple] = msgspec.field(default_factory=list)
    discarded: list[tuple[str, str, int]] = msgspec.field(default_factory=list)
    """(app id, rule, events) for events discarded on purpose, counted durably per day."""

    @property
    def rows(self) -> int:
        return len(self.events) + len(self.failed)

    @property
    def empty(self) -> bool:
        return not (self.events or self.failed or self.discarded)


class AppendResult(msgspec.Struct, frozen=True):
    accepted: int
    """Events newly stored."""
    duplicates: int
    """Events whose client-supplied id was already stored (within the dedup window)."""


class StoreUnavailable(Exception):
    """The sink cannot make events durable right now; nothing in the batch was acknowledged."""


class Sink(Protocol):
    async def append(self, batch: AppendBatch) -> AppendResult: ...
