"""Resolving credentials to apps, and apps to their compiled rules, cached for a second so catalog
edits apply in running workers without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from tally.adapters.base import ApiCredentials, AppKey, BearerToken, Credentials
from tally.catalog import App, Catalog
from tally.catalog.definitions import Permission, PropertyType
from tally.pipeline.app_rules import AppRules


class AppResolver:
    def __init__(self, catalog: Catalog, ttl: float = 1.0) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self._by_key: dict[str, tuple[float, App | None]] = {}
        self._rules: dict[str, AppRules] = {}

    async def by_app_key(self, key: str) -> App | None:
        now = time.monotonic()
        hit = self._by_key.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        app = await asyncio.to_thread(self.catalog.app_by_key, key)
        if len(self._by_key) > 100_000:
            self._by_key.clear()
        self._by_key[key] = (now + self.ttl, app)
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
        """Drop what is cached about an app this process just changed, so the change applies
        here at once (other workers see it within ``ttl``)."""
        self._rules.pop(app_id, None)
        self._forget_app_record(app_id)

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
