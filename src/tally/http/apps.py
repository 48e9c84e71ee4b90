"""Resolving credentials to apps, and apps to their compiled rules, cached so that catalog edits
apply in running workers without a restart: for a second, or, on PostgreSQL, until the catalog
announces a change to the app (``catalog.changes``; a minute at most, in case one is missed).

When the catalog cannot be reached (PostgreSQL down, the SQLite file unreadable), an app or rules
this process already knows are used as they are (asking the catalog again once a ``ttl``), so
ingest for known apps goes on; anything else raises ``CatalogUnavailable`` (503, Retry-After)."""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from tally.adapters.base import ApiCredentials, AppKey, BearerToken, Credentials
from tally.catalog import App, Catalog
from tally.catalog.changes import ChangeListener, listen_url
from tally.catalog.definitions import Permission, PropertyType
from tally.http.errors import ApiError, http_exception
from tally.pipeline.app_rules import AppRules


def utc_now() -> datetime:
    return datetime.now(UTC)


LISTENING_TTL = 60.0
"""How long an app record is trusted while the catalog's change announcements are heard."""
RETRY_AFTER = "1"
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError)
"""What the catalog's driver raises when the database cannot be reached or read, as opposed to a
bug (those stay 500s)."""
T = TypeVar("T")


class CatalogUnavailable(ApiError):
    """The catalog cannot be read right now: 503 with Retry-After (the read and management API
    render it as ``{"error": ...}``; ingest in the protocol's own shape)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            503,
            "catalog_unavailable",
            f"the catalog cannot be reached; retry later ({reason})",
            headers={"retry-after": RETRY_AFTER},
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def read_catalog(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` in a thread, with an unreachable catalog raised as ``CatalogUnavailable``."""
    try:
        return await asyncio.to_thread(call, *args)
    except UNREACHABLE as exc:
        raise CatalogUnavailable(_reason(exc)) from exc


CATALOG_DRIVER_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
"""Raised by catalog calls that do not go through ``read_catalog`` (the management and read
endpoints): the Starlette app answers them with ``catalog_unreachable``."""


async def catalog_unreachable(request: Request, exc: Exception) -> Response:
    """A catalog call failed because the database cannot be reached: 503, not a 500."""
    return await http_exception(request, CatalogUnavailable(_reason(exc)))


class AppResolver:
    def __init__(self, catalog: Catalog, ttl: float = 1.0, *, listen: bool = True) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self._by_key: dict[str, tuple[float, App | None]] = {}
        """App key -> (when it was read, the app)."""
        self._by_credentials: dict[tuple[str, bytes], tuple[float, App, datetime | None]] = {}
        """(API key, keyed digest of the secret) -> (when verified, the app, until when the
        secret holds: None for the current one)."""
        self._digest_key = os.urandom(32)
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
        known = hit[1] if hit is not None else None
        if known is not None and key != known.app_key and not known.accepts_app_key(key, utc_now()):
            # a rotated-away key whose overlap ended: nothing announces that moment
            self._by_key.pop(key, None)
            return None
        if hit is not None and hit[0] + self.current_ttl > now:
            return hit[1]
        try:
            app = await read_catalog(self.catalog.app_by_key, key)
        except CatalogUnavailable:
            if hit is None:
                raise
            self._by_key[key] = (now, hit[1])  # ask the catalog again in a ttl, not every request
            return hit[1]
        if len(self._by_key) > 100_000:
            self._by_key.clear()
        self._by_key[key] = (now, app)
        return app

    async def by_api_credentials(self, key: str, secret: str) -> App | None:
        """The app of these API credentials, remembered like app keys (a ttl, forgotten on a
        change) once they were right: every request with server credentials (EngageLab,
        Synerise, the read API) otherwise read the catalog, 22% of a worker's time under
        EngageLab batches. A previous secret is remembered only until its overlap ends."""
        entry = (key, self._digest(secret))
        return await self._remembered(entry, self.catalog.authenticate_until, key, secret)

    async def by_workspace_token(self, token: str) -> App | None:
        """The app of a Synerise workspace JWT, remembered like API credentials, until the token
        expires (or the overlap of the secret that made it ends)."""
        entry = ("", self._digest(token))  # no API key is empty: apart from credentials
        return await self._remembered(entry, self.catalog.workspace_token_until, token)

    def _digest(self, secret: str) -> bytes:
        """What a secret is remembered under: a keyed digest, never the secret itself."""
        return hmac.new(self._digest_key, secret.encode(), "sha256").digest()

    async def _remembered(
        self,
        entry: tuple[str, bytes],
        read: Callable[..., tuple[App, datetime | None] | None],
        *args: str,
    ) -> App | None:
        """The app ``read(*args)`` finds (with until when the finding holds), remembered under
        ``entry`` for a ttl once found; what is not found is never remembered."""
        self._ensure_listening()
        now = time.monotonic()
        hit = self._by_credentials.get(entry)
        if hit is not None and hit[2] is not None and utc_now() >= hit[2]:
            self._by_credentials.pop(entry, None)  # past its overlap or expiry
            hit = None
        if hit is not None and hit[0] + self.current_ttl > now:
            return hit[1]
        try:
            found = await read_catalog(read, *args)
        except CatalogUnavailable:
            if hit is None:
                raise
            self._by_credentials[entry] = (now, hit[1], hit[2])  # ask again in a ttl
            return hit[1]
        if found is None:
            self._by_credentials.pop(entry, None)
            return None
        if len(self._by_credentials) > 10_000:
            self._by_credentials.clear()
        self._by_credentials[entry] = (now, found[0], found[1])
        return found[0]

    async def resolve(self, credentials: Credentials) -> App | None:
        if isinstance(credentials, AppKey):
            return await self.by_app_key(credentials.key)
        if isinstance(credentials, BearerToken):
            return await self.by_workspace_token(credentials.token)
        assert isinstance(credentials, ApiCredentials)
        return await self.by_api_credentials(credentials.key, credentials.secret)

    def forget(self, app_id: str) -> None:
        """Read the app again on its next request (this process just changed it, or the catalog
        announced a change), so the change applies here at once. Its rules are rebuilt then if
        its catalog version or settings changed; until then they stay, for when the catalog
        cannot be reached."""
        self._forget_app_record(app_id)

    def forget_all(self) -> None:
        """Read every app again on its next request (kept, like ``forget``, for outages)."""
        self._by_key = {key: (-math.inf, app) for key, (_, app) in self._by_key.items()}
        self._by_credentials = {
            entry: (-math.inf, app, until)
            for entry, (_, app, until) in self._by_credentials.items()
        }

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()

    def _forget_app_record(self, app_id: str) -> None:
        """Read the app again on its next request; the record stays for when the catalog
        cannot be reached."""
        for key, hit in list(self._by_key.items()):
            if hit[1] is not None and hit[1].id == app_id:
                self._by_key[key] = (-math.inf, hit[1])
        for entry, (_, app, until) in list(self._by_credentials.items()):
            if app.id == app_id:
                self._by_credentials[entry] = (-math.inf, app, until)

    async def rules(self, app: App) -> AppRules:
        """The app's compiled rules; rebuilt when its catalog version or settings changed (the app
        record itself is at most ``ttl`` old)."""
        cached = self._rules.get(app.id)
        if cached is not None and cached.is_current(app):
            return cached
        try:
            definitions, aliases = await read_catalog(self._load, app.id)
        except CatalogUnavailable:
            if cached is None:
                raise
            return cached  # the rules as last read, until the catalog answers again
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
