"""A real Tally app in-process for the fuzzers: the ASGI app with a real SQLite catalog and a
real embedded store in a temporary data folder, on an event loop of its own so that synchronous
hypothesis tests can drive it example after example."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tally.catalog import Catalog, NewApp, sqlite_url
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.store.embedded import EmbeddedStore


class Live:
    """A real Tally app in-process, with one app whose keys the fuzzers use."""

    def __init__(self, data_dir: Path) -> None:
        self.runner = asyncio.Runner()
        self.catalog = Catalog(sqlite_url(data_dir))
        self.catalog.migrate()
        self.new_app: NewApp = self.catalog.create_app("Fuzz")
        self.services = Services(
            catalog=self.catalog, store=EmbeddedStore(data_dir), limits=Limits()
        )
        self.app = TallyApp(self.services, close_services=False)
        self.client = self.runner.run(self._client())

    async def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=("198.51.100.7", 51000))
        return httpx.AsyncClient(transport=transport, base_url="http://tally.test", timeout=60)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.new_app.app.api_key, self.new_app.api_secret)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.request(method, url, **kwargs))

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def check_store(self) -> None:
        """Whatever was acknowledged loads into DuckDB: no request left a batch the loader
        cannot store (it would block every later one)."""
        store = self.services.store
        assert isinstance(store, EmbeddedStore)
        self.run(store.caught_up())
        assert store.loader.error is None, store.loader.error

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.services.close())
        self.runner.close()
