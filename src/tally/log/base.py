"""The log interface: a ``Sink`` that makes a batch durable in a log in front of the store.

A collector's ``append`` returns once the log has acknowledged every event of the batch; a loader
(``tally loader``) reads the log and stores what it holds. The log can also say whether it takes
writes (``/readyz``) and carries the live stream between processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from tally.sink import AppendBatch, AppendResult

LiveHandler = Callable[[AppendBatch], Awaitable[None] | None]
"""Told each batch of events a loader stored (the live stream, from any loader)."""


class EventLog(Protocol):
    async def append(self, batch: AppendBatch) -> AppendResult:
        """Publish the batch; resolves once the log has every message (``StoreUnavailable``
        otherwise: then nothing of the batch counts as acknowledged)."""
        ...

    async def check_writable(self) -> None:
        """Raise ``StoreUnavailable`` if an append would fail now."""
        ...

    async def watch_live(self, handler: LiveHandler) -> None:
        """Call ``handler`` with the events every loader stores from now on."""
        ...

    async def close(self) -> None: ...
