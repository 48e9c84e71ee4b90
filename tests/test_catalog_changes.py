"""Catalog edits reach every running server at once on PostgreSQL: a trigger announces each change
to an app's row and each server's resolver, listening, forgets that app (tests against the real
PostgreSQL server)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from tally.catalog import Catalog
from tally.catalog.changes import listen_url
from tally.catalog.definitions import EventDefinition
from tally.http.apps import LISTENING_TTL, AppResolver


async def _until(predicate, timeout: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` (a coroutine function) is true; fails after ``timeout``."""
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, "the change never arrived"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_an_edit_by_another_process_applies_at_once(postgres_catalog_url: str) -> None:
    editor = Catalog(postgres_catalog_url)  # another server, or `tally catalog` on a laptop
    editor.migrate()
    server = Catalog(postgres_catalog_url)
    resolver = AppResolver(server, ttl=3600.0)  # without announcements: an hour stale
    app = editor.create_app("Shop").app
    try:
        assert (await resolver.by_app_key(app.app_key)) == app
        assert resolver.listener is not None and resolver.listener.wait_connected(5)
        assert resolver.current_ttl == LISTENING_TTL

        editor.definitions.put(app.id, EventDefinition(name="checkout"))

        async def sees_new_version() -> bool:
            found = await resolver.by_app_key(app.app_key)
            return found is not None and found.catalog_version > app.catalog_version

        assert await _until(sees_new_version) < 1.0

        # no overlap: the old app key stops working at once
        editor.rotate_secret(app.id, app_key=True, overlap=timedelta(0))

        async def old_key_refused() -> bool:
            return await resolver.by_app_key(app.app_key) is None

        assert await _until(old_key_refused) < 1.0
    finally:
        resolver.close()
        server.close()
        editor.close()


def test_only_postgresql_catalogs_are_listened_to() -> None:
    assert listen_url("postgresql+psycopg://u@h:5432/db") == "postgresql://u@h:5432/db"
    assert listen_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert listen_url("sqlite:////tmp/catalog.sqlite") is None


async def test_a_sqlite_catalog_rereads_within_the_ttl(catalog: Catalog) -> None:
    resolver = AppResolver(catalog, ttl=0.05)
    app = catalog.create_app("Shop").app
    assert (await resolver.by_app_key(app.app_key)) == app
    assert resolver.listener is None and resolver.current_ttl == 0.05
    catalog.definitions.put(app.id, EventDefinition(name="checkout"))
    await asyncio.sleep(0.06)
    found = await resolver.by_app_key(app.app_key)
    assert found is not None and found.catalog_version == app.catalog_version + 1
