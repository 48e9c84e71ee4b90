"""Resolving credentials to apps, cached for a second so catalog edits apply without a restart."""

from __future__ import annotations

import asyncio
import time

from tally.adapters.base import ApiCredentials, AppKey, Credentials
from tally.catalog import App, Catalog


class AppResolver:
    def __init__(self, catalog: Catalog, ttl: float = 1.0) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self._by_key: dict[str, tuple[float, App | None]] = {}

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
        assert isinstance(credentials, ApiCredentials)
        return await self.by_api_credentials(credentials.key, credentials.secret)
