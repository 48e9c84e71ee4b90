"""What the injection tests share: the hostile strings, a deployment with two apps whose events
are named, keyed and valued with those strings (and a canary app whose data must never show in
the other's answers), and the row counts of every table, to show nothing was written or dropped.

The payloads are stored as data first, so a read that treats them as literals can be checked to
find exactly the seeded event: a property literally named ``a'b`` is defined and matches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from analytics.analytics_stores import open_store
from tally.catalog import Catalog, sqlite_url
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.store.base import EventStore

PAYLOADS: dict[str, str] = {
    "quote": "'",
    "double-quote": '"',
    "or-true": "' OR 1=1 --",
    "or-true-double": '" OR ""="',
    "drop-table": "'; DROP TABLE events; --",
    "union": '") UNION SELECT id, app_id, name FROM events --',
    "union-quote": "' UNION SELECT * FROM events WHERE '1'='1",
    "stacked": "1; DELETE FROM events",
    "comment": "x' /* */ --",
    "json-root": "$.x",
    "json-index": "a.b[0]",
    "json-wildcard": "$..*",
    "backslash": "a\\' b\\",
    "nul": "a\x00b",
    "percent": "%s %(x)s %% %d",
    "brace": "{0} ${x} {{y}}",
    "zone": "UTC' ; SELECT 1 --",
    "number-text": "1e400",
    "huge-number": "9" * 40,
    "unicode": "zażółć \u202e\U0001f600 \u0000\u00ff",
    "newline": "a\nb\r\tc",
    "long": "x'" * 120,
}
"""Hostile strings, each a parameter value, property name, event name, user id... in turn."""
CLICKHOUSE_PAYLOADS = (
    "quote",
    "or-true",
    "drop-table",
    "union",
    "backslash",
    "nul",
    "percent",
    "newline",
    "unicode",
)
"""The payloads also sent to the ClickHouse store (its queries cost more): one of each kind of
character its literals escape or its parameter substitution could trip on."""
NAME_LIMIT = 255
"""Longer event names are refused at ingest (native name rule): those events are not stored."""
MARKER = "canary-0ZQ7"
"""In every field of the canary app's own events; no answer to the target app may contain it."""
EVENT_TIME = "2026-03-02T10:00:00Z"
PERIOD = {"from": "2026-03-01", "to": "2026-03-08"}
"""A query period holding every seeded event."""
COUNTLY_PERIOD = '["01-03-2026","07-03-2026"]'
"""The same days as a Countly ``period``."""
PROBE = "probe"
"""The event carrying the hostile property names (``properties.<payload>``) and values
(``properties.text``)."""
VALUE_OF = "literal-"
"""``properties.<payload>`` of the probe is ``literal-<payload id>``."""


def user_of(key: str) -> str:
    """The user whose one ``visit`` event has device ``dev-<key>``: the payload itself."""
    return PAYLOADS[key]


def seed_events(*, canary: bool) -> list[dict[str, Any]]:
    """Events of one app: for each payload, an event named by it, a probe with a property named
    by it and the payload as ``text``, a visit of a user named by it. The canary app gets the same
    (so a query escaping its app would count twice) plus events marked with ``MARKER``."""
    events: list[dict[str, Any]] = []
    for key, payload in PAYLOADS.items():
        events += [
            {"id": f"name-{key}", "name": payload, "device": f"named-{key}"},
            {
                "id": f"prop-{key}",
                "name": PROBE,
                "device": f"probe-{key}",
                "properties": {payload: VALUE_OF + key, "text": payload},
            },
            {"id": f"user-{key}", "name": "visit", "user": payload, "device": f"dev-{key}"},
        ]
    if canary:
        events += [
            {
                "id": f"{MARKER}-{i}",
                "name": f"{MARKER}-event",
                "user": f"{MARKER}-user",
                "device": f"{MARKER}-device",
                "label": MARKER,
                "properties": {"text": MARKER, f"{MARKER}-prop": MARKER},
            }
            for i in range(3)
        ]
        for i, payload in enumerate(PAYLOADS.values()):
            events.append(
                {
                    "id": f"{MARKER}-p{i}",
                    "name": PROBE,
                    "user": payload,
                    "device": f"{MARKER}-d{i}",
                    "properties": {payload: MARKER, "text": MARKER},
                }
            )
    for event in events:
        event["time"] = EVENT_TIME
    return events


def failing_events(*, canary: bool) -> list[dict[str, Any]]:
    """One failed event per payload name (an unreadable time), for the failed-events listings."""
    prefix = f"{MARKER}-" if canary else ""
    return [
        {"id": f"{prefix}bad-{key}", "name": payload, "time": "not a time", "user": prefix + "u"}
        for key, payload in PAYLOADS.items()
    ]


@dataclass
class AppAccess:
    id: str
    app_key: str
    auth: tuple[str, str]


@dataclass
class Deployment:
    """A server in-process over a real store, with the target app and the canary app seeded."""

    kind: str
    client: httpx.AsyncClient
    services: Services
    catalog: Catalog
    app: AppAccess
    canary: AppAccess
    baseline: dict[str, int] = field(default_factory=dict)

    def path(self, rest: str) -> str:
        return f"/api/v1/apps/{self.app.id}{rest}"

    async def get(self, rest: str, **params: Any) -> httpx.Response:
        return await self.client.get(self.path(rest), params=params, auth=self.app.auth)

    async def query(self, body: Any) -> httpx.Response:
        return await self.client.post(self.path("/query"), json=body, auth=self.app.auth)

    async def counts(self) -> dict[str, int]:
        return await table_counts(self.services.store, self.catalog, self.kind, self.baseline)

    async def assert_intact(self) -> None:
        assert await self.counts() == self.baseline


async def table_counts(
    store: EventStore, catalog: Catalog, kind: str = "duckdb", known: Iterable[str] = ()
) -> dict[str, int]:
    """Rows of every table of the event store (``known``'s, once listed: a table dropped since
    makes the count fail) and of the catalog."""
    tables = [name[len("store.") :] for name in known if name.startswith("store.")]
    if not tables:
        if kind == "clickhouse":
            listing = "SELECT name FROM system.tables WHERE database = currentDatabase()"
        else:
            listing = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        tables = sorted(name for (name,) in await store.run_sql(listing, []))
    assert "events" in tables and "failed_events" in tables, tables
    counts = " UNION ALL ".join(
        f"SELECT '{name}' AS t, count(*) AS n FROM {name}" for name in tables
    )
    found = {f"store.{t}": int(n) for t, n in await store.run_sql(counts, [])}
    with catalog.engine.connect() as conn:
        for name in sorted(sa.inspect(catalog.engine).get_table_names()):
            found[f"catalog.{name}"] = conn.execute(
                sa.text(f'SELECT count(*) FROM "{name}"')
            ).scalar_one()
    return found


def assert_clean(response: httpx.Response, *, shape: str = "api") -> None:
    """No 5xx, nothing of the canary app, and a refusal in the endpoint's own error shape
    (``api``: ``{"error": {"code", "message"}}``; ``countly``: ``{"result": message}``)."""
    assert response.status_code < 500, response.text
    assert MARKER not in response.text, response.text[:2000]
    if response.status_code >= 400:
        body = response.json()
        if shape == "countly":
            assert set(body) == {"result"} and isinstance(body["result"], str), body
        else:
            assert set(body) == {"error"}, body
            assert isinstance(body["error"]["code"], str) and body["error"]["message"], body


async def _send(
    client: httpx.AsyncClient, key: str, events: list[dict[str, Any]], rejected: int
) -> None:
    response = await client.post(
        "/api/v1/events", json={"events": events}, headers={"x-tally-key": key}
    )
    assert response.status_code in (200, 400), response.text
    assert len(response.json()["rejected"]) == rejected, response.text


@asynccontextmanager
async def deployment(
    kind: str, request: pytest.FixtureRequest, data_dir: Path
) -> AsyncIterator[Deployment]:
    """Both apps created and seeded on a new store of ``kind`` (``duckdb`` or ``clickhouse``)."""
    catalog = Catalog(sqlite_url(data_dir))
    catalog.migrate()
    target = catalog.create_app("Target")
    canary = catalog.create_app("Canary")
    async with open_store(kind, request, data_dir) as store:
        services = Services(catalog=catalog, store=store, limits=Limits())
        transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
                for new, is_canary in ((target, False), (canary, True)):
                    events = seed_events(canary=is_canary)
                    too_long = sum(len(e["name"]) > NAME_LIMIT for e in events)
                    await _send(http, new.app.app_key, events, too_long)
                    failing = failing_events(canary=is_canary)
                    await _send(http, new.app.app_key, failing, len(failing))
                found = Deployment(
                    kind=kind,
                    client=http,
                    services=services,
                    catalog=catalog,
                    app=AppAccess(
                        target.app.id, target.app.app_key, (target.app.api_key, target.api_secret)
                    ),
                    canary=AppAccess(
                        canary.app.id, canary.app.app_key, (canary.app.api_key, canary.api_secret)
                    ),
                )
                found.baseline = await found.counts()
                yield found
        finally:
            await services.close()
