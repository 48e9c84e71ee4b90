"""Catalog records as the rest of Tally sees them."""

from __future__ import annotations

from datetime import datetime

import msgspec


class AppSettings(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-app options, stored as one JSON document so new options need no schema change."""

    countly_salt: str | None = None
    """When set, Countly requests must carry a checksum or checksum256 made with this salt."""


class App(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """24 hex characters."""
    name: str
    app_key: str
    """Public key for browser and SDK writes."""
    api_key: str
    """Server key for server-side writes and reads, used with the secret."""
    created_at: datetime
    settings: AppSettings = AppSettings()


class NewApp(msgspec.Struct, frozen=True, kw_only=True):
    """A just-created app with its API secret, which is shown this once and stored only hashed."""

    app: App
    api_secret: str

    def to_dict(self) -> dict[str, object]:
        data = msgspec.to_builtins(self.app)
        data["api_secret"] = self.api_secret
        return data
