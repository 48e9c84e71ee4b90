"""Where accepted and failed events go after the pipeline. Appends resolve only once durable.

The embedded default's sink is the event store itself, by group commit; in the scale-out setup it
is the log in front of the store.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import pyarrow as pa


class AppendBatch(msgspec.Struct, kw_only=True):
    """One request's accepted events (``store.columns.EVENT_SCHEMA``) and failed events."""

    events: pa.RecordBatch | None = None
    failed: pa.RecordBatch | None = None

    @property
    def rows(self) -> int:
        return (self.events.num_rows if self.events is not None else 0) + (
            self.failed.num_rows if self.failed is not None else 0
        )


class AppendResult(msgspec.Struct, frozen=True):
    accepted: int
    """Events newly stored."""
    duplicates: int
    """Events whose client-supplied id was already stored (within the dedup window)."""


class StoreUnavailable(Exception):
    """The sink cannot make events durable right now; nothing in the batch was acknowledged."""


class Sink(Protocol):
    async def append(self, batch: AppendBatch) -> AppendResult: ...
