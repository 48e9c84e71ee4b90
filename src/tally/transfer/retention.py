"""Retention: an app's ``retention_days`` setting deletes its events whose time is older.

The settings live in the catalog and the events in the event store, so the periodic run is a
small task in a server process, which has both (``Services``): ``RetentionTask`` reads every
app's settings once an hour and asks the store to delete what expired (``delete_expired``, a
store operation that reaches the store process with several workers). ``tally retention`` runs
the same thing once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from tally.catalog import App, Catalog
from tally.http.services import Services
from tally.store.base import Deletion, EventStore

INTERVAL_SECONDS: Final = 3600.0
log = logging.getLogger("tally.retention")


async def apply_retention(
    catalog: Catalog,
    store: EventStore,
    apps: Sequence[App] | None = None,
    now: datetime | None = None,
) -> list[Deletion]:
    """Delete, for each app with a retention period, its events older than the period."""
    if apps is None:
        apps = await asyncio.to_thread(catalog.list_apps)
    now = now or datetime.now(UTC)
    done = []
    for app in apps:
        days = app.settings.retention_days
        if days is None:
            continue
        done.append(await store.delete_expired(app.id, now - timedelta(days=days)))
    return done


class RetentionTask:
    """``apply_retention`` every hour while the server runs. Each HTTP process may run one: the
    deletes are idempotent, and a run that finds nothing expired records nothing."""

    def __init__(
        self,
        catalog: Catalog,
        store: EventStore,
        interval: float = INTERVAL_SECONDS,
        first_delay: float | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.interval = interval
        # Soon after start, spread out so that several workers do not all run at once.
        self.first_delay = random.uniform(30.0, 90.0) if first_delay is None else first_delay
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> list[Deletion]:
        try:
            done = await apply_retention(self.catalog, self.store)
        except Exception:
            log.exception("retention run failed; trying again in %.0f s", self.interval)
            return []
        for deletion in done:
            if deletion.events_deleted:
                log.info(
                    "retention: deleted %d events of app %s before %s",
                    deletion.events_deleted,
                    deletion.app_id,
                    deletion.cutoff,
                )
        return done

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def retention_running(services: Services) -> AsyncIterator[RetentionTask]:
    """Run the hourly retention for as long as the block (a server's lifespan) lasts."""
    task = RetentionTask(services.catalog, services.store)
    task.start()
    try:
        yield task
    finally:
        await task.stop()
