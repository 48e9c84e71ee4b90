"""Resolving credentials to apps, and apps to their compiled rules, cached so that catalog edits
apply in running workers without a restart: for a second, or, on PostgreSQL, until the catalog
announces a change to the app (``catalog.changes``; a minute at most, in case one is missed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from tally.adapters.base import ApiCredentials, AppKey, BearerToken, Credentials
from tally.catalog import App, Catalog
from tally.catalog.changes import ChangeListener, listen_url
from tally.catalog.definitions import Permission, PropertyType
from tally.pipeline.app_rules import AppRules

LISTENING_TTL = 60.0
"""How long an app record is trusted while the catalog's change announcements are heard."""


class AppResolver:
    def __init__(self, catalog: Catalog, ttl: float = 1.0, *, listen: bool = True) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self._by_key: dict[str, tuple[float, App | None]] = {}
        """App key -> (when it was read, the app)."""
        self._rules: dict[str, AppRules] = {}
        self._listen_url = listen_url(catalog.url) if listen else None
        self.listener: ChangeListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def current_ttl(self) -> float:
        if self.listener is not None and self.listener.connected:
            return LISTENING_TTL
        return self.ttl

    def _ensure_listening(self) -> None:
        """Start hearing the catalog's change announcements (PostgreSQL), once, on the running
        loop's behalf."""
        if self._listen_url is None or self.listener is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.listener = ChangeListener(self._listen_url, self._announced)
        # changes made while not listening were not announced: forget everything
        self.listener.on_reconnect = lambda: self._on_loop(self.forget_all)
        self.listener.start()

    def _on_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _announced(self, app_id: str) -> None:
        self._on_loop(self.forget, app_id)

    async def by_app_key(self, key: str) -> App | None:
        self._ensure_listening()
        now = time.monotonic()
        hit = self._by_key.get(key)
        if hit is not None and hit[0] + self.current_ttl > now:
            return hit[1]
        app = await asyncio.to_thread(self.catalog.app_by_key, key)
        if len(self._by_key) > 100_000:
            self._by_key.clear()
        self._by_key[key] = (now, app)
        return app

    async def by_api_credentials(self, key: str, secret: str) -> App | None:
        return await asyncio.to_thread(self.catalog.authenticate, key, secret)

    async def resolve(self, credentials: Credentials) -> App | None:
        if isinstance(credentials, AppKey):
            return await self.by_app_key(credentials.key)
        if isinstance(credentials, BearerToken):
            return await asyncio.to_thread(self.catalog.app_by_workspace_token, credentials.token)
        assert isinstance(credentials, ApiCredentials)
        return await self.by_api_credentials(credentials.key, credentials.secret)

    def forget(self, app_id: str) -> None:
        """Drop what is cached about an app (this process just changed it, or the catalog
        announced a change), so the change applies here at once."""
        self._rules.pop(app_id, None)
        self._forget_app_record(app_id)

    def forget_all(self) -> None:
        self._by_key.clear()
        self._rules.clear()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()

    def _forget_app_record(self, app_id: str) -> None:
        self._by_key = {
            key: hit for key, hit in self._by_key.items() if hit[1] is None or hit[1].id != app_id
        }

    async def rules(self, app: App) -> AppRules:
        """The app's compiled rules; rebuilt when its catalog version or settings changed (the app
        record itself is at most ``ttl`` old)."""
        cached = self._rules.get(app.id)
        if cached is not None and cached.is_current(app):
            return cached
        definitions, aliases = await asyncio.to_thread(self._load, app.id)
        rules = AppRules(app, definitions, aliases)
        self._rules[app.id] = rules
        return rules

    def _load(self, app_id: str) -> tuple[list, list]:
        store = self.catalog.definitions
        return store.list(app_id), store.aliases(app_id)

    async def define_first_seen(
        self,
        app: App,
        seen: Mapping[str, Mapping[str, PropertyType]],
        permission: Permission,
    ) -> None:
        await asyncio.to_thread(
            self.catalog.definitions.define_first_seen, app.id, seen, permission
        )
        # Until this worker's next request reloads the app (at once: its record is dropped
        # here) and other workers theirs (within ``ttl``), the names are not asked for again.
        rules = self._rules.get(app.id)
        if rules is not None:
            for name, properties in seen.items():
                rules.report(name, list(properties))
        self._forget_app_record(app.id)
