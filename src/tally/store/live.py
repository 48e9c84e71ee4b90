"""Committed events fanned out to live subscribers (``GET /api/v1/apps/{app_id}/live``).

The store publishes what each commit stored, from its writer thread; each subscriber gets the
events of its app (and names) on its own event loop. The live view is best effort: a subscriber
that falls more than ``QUEUE_SIZE`` events behind loses the oldest and is told how many.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from tally.store.rows import EVENT_COLUMN_NAMES

if TYPE_CHECKING:
    import pyarrow as pa

QUEUE_SIZE: Final = 10_000
SUBSCRIBED: Final = "subscribed"
"""Key of the first item of every subscription: from then on, no committed event is missed."""
LIVE_COLUMNS: Final = EVENT_COLUMN_NAMES
"""Every stored field, so live events have the read API's shape."""
_json = msgspec.json.Decoder()


class Subscription:
    def __init__(self, app_id: str, names: Sequence[str] | None, loop: asyncio.AbstractEventLoop):
        self.app_id = app_id
        self.names = frozenset(names) if names else None
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.missed = 0

    def offer(self, rows: list[dict[str, Any]]) -> None:
        """Runs on the subscriber's loop."""
        for row in rows:
            if self.queue.qsize() >= QUEUE_SIZE:
                self.queue.get_nowait()
                self.missed += 1
            self.queue.put_nowait(row)


class LiveHub:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._subscriptions)

    def publish(self, events: pa.Table) -> None:
        """Called with the rows a commit stored (any thread)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        if not subscriptions or not events.num_rows:
            return
        import pyarrow.compute as pc  # store side only: HTTP workers import this module too

        by_app: dict[str, list[dict[str, Any]]] = {}
        for app_id in {s.app_id for s in subscriptions}:
            mine = events.filter(pc.equal(events["app_id"], app_id))
            if mine.num_rows:
                by_app[app_id] = [_row(r) for r in mine.select(list(LIVE_COLUMNS)).to_pylist()]
        for subscription in subscriptions:
            rows = by_app.get(subscription.app_id)
            if rows and subscription.names is not None:
                rows = [r for r in rows if r["name"] in subscription.names]
            if rows:
                subscription.loop.call_soon_threadsafe(subscription.offer, rows)

    async def subscribe(
        self, app_id: str, names: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of this app (with these names) committed from now on: first
        ``{"subscribed": True}`` once registered, then the events; ``{"missed": n}`` items say
        how many were lost by falling behind."""
        subscription = Subscription(app_id, names, asyncio.get_running_loop())
        with self._lock:
            self._subscriptions.add(subscription)
        try:
            yield {SUBSCRIBED: True}
            while True:
                row = await subscription.queue.get()
                if subscription.missed:
                    yield {"missed": subscription.missed}
                    subscription.missed = 0
                yield row
        finally:
            with self._lock:
                self._subscriptions.discard(subscription)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """As ``fetch_events`` gives a stored event, with times as text (they cross processes)."""
    row["properties"] = _json.decode(row["properties"]) if row["properties"] else {}
    row["undefined_properties"] = row["undefined_properties"] or []
    row["coerced_properties"] = row["coerced_properties"] or []
    for key in ("time", "received_at"):
        row[key] = row[key].isoformat() + "Z"
    return row
