"""An app's catalog compiled for the pipeline: built when the catalog changes, read per event."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Sequence

from tally.catalog.definitions import (
    BUILT_IN_EVENTS,
    EventAlias,
    EventDefinition,
    PropertyDefinition,
)
from tally.catalog.models import App, AppSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _globs(patterns: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(pattern, re.compile(fnmatch.translate(pattern))) for pattern in patterns]


class AppRules:
    """Everything the catalog steps need for one app, precomputed (globs compiled, definitions
    by name), so each event costs dictionary lookups."""

    def __init__(
        self,
        app: App,
        definitions: Sequence[EventDefinition] = (),
        aliases: Sequence[EventAlias] = (),
    ) -> None:
        settings: AppSettings = app.settings
        self.app_id = app.id
        self.catalog_version = app.catalog_version
        self.settings = settings
        self.definitions: dict[str, EventDefinition] = {d.name: d for d in BUILT_IN_EVENTS}
        self.definitions.update((d.name, d) for d in definitions)
        self.properties: dict[str, dict[str, PropertyDefinition]] = {
            name: {p.name: p for p in d.properties} for name, d in self.definitions.items()
        }
        self.required: dict[str, tuple[str, ...]] = {
            name: tuple(p.name for p in d.properties if p.required)
            for name, d in self.definitions.items()
        }
        self.aliases = {a.alias: a.name for a in aliases}
        self.denylist = _globs(settings.denylist)
        self.allowlist = _globs(settings.allowlist)
        self.internal_networks: list[IpNetwork] = [
            ipaddress.ip_network(n, strict=False) for n in settings.internal_ips
        ]
        self._reported: set[tuple[str, str | None]] = set()

    def is_current(self, app: App) -> bool:
        return app.catalog_version == self.catalog_version and app.settings == self.settings

    def same_event(self, name: str) -> list[str]:
        """Every name an event is stored under: its current name and the aliases that point to
        it (a query for either name sees both)."""
        current = self.aliases.get(name, name)
        return sorted({current, *(a for a, target in self.aliases.items() if target == current)})

    def reported(self, name: str, prop: str | None = None) -> bool:
        """Whether this worker already asked the catalog to define the event (or property)."""
        return (name, prop) in self._reported

    def report(self, name: str, properties: Sequence[str]) -> None:
        """Remember names sent to the catalog for definition on first sight, so each worker asks
        once; the reload that follows brings the definitions themselves."""
        self._reported.add((name, None))
        self._reported.update((name, prop) for prop in properties)
