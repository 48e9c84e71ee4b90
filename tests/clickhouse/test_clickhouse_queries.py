"""The query API and the customer API on ClickHouse, for what only ClickHouse has to get right
(people linked through several hops without a recursive CTE, redelivered copies not yet merged),
each answer compared with the embedded DuckDB store's for the same events, and written out.

The whole oracle suite (tests/analytics) runs on both stores as well.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tally.catalog import Catalog, NewApp
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.query.dialects import CLICKHOUSE, DUCKDB, dialect_of
from tally.store.clickhouse_persons import persons_of
from tally.store.clickhouse_store import ClickHouseStore
from tally.store.embedded import EmbeddedStore
from tally.testing.clickhouse_databases import create_cluster_tables

CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
PERIOD = {"from": "2026-03-01", "to": "2026-03-04", "tz": "UTC"}
DAYS = {**PERIOD, "interval": "day"}


@dataclass
class Stores:
    """One app, the same events, two stores: ``duck`` (embedded DuckDB) and ``ch``."""

    app: NewApp
    duck: httpx.AsyncClient
    ch: httpx.AsyncClient
    ch_store: ClickHouseStore

    @property
    def auth(self) -> tuple[str, str]:
        return (self.app.app.api_key, self.app.api_secret)

    async def send(self, events: list[dict[str, Any]]) -> None:
        for client in (self.duck, self.ch):
            reply = await client.post(
                "/api/v1/events",
                json={"events": events},
                headers={"x-tally-key": self.app.app.app_key, "user-agent": CHROME_ON_MAC},
            )
            assert reply.json()["accepted"] == len(events), reply.text

    async def query(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ClickHouse answer, after checking it is DuckDB's."""
        return await self._both("POST", f"/api/v1/apps/{self.app.app.id}/query", json=body)

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        return await self._both("GET", f"/api/v1/apps/{self.app.app.id}{path}", params=params)

    async def countly(self, moment: datetime, events: list[dict[str, Any]]) -> None:
        """Countly ``/i`` with ``events`` at ``moment``, to both stores."""
        params = {
            "app_key": self.app.app.app_key,
            "device_id": "device-1",
            "timestamp": str(int(moment.timestamp())),
            "events": json.dumps(events),
        }
        for client in (self.duck, self.ch):
            assert (await client.post("/i", data=params)).json() == {"result": "Success"}

    async def countly_read(self, **params: Any) -> dict[str, Any]:
        return await self._both("GET", "/o", params={"app_id": self.app.app.id, **params})

    async def _both(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        duck = await self.duck.request(method, url, auth=self.auth, **kwargs)
        ch = await self.ch.request(method, url, auth=self.auth, **kwargs)
        assert ch.status_code == duck.status_code == 200, (duck.text, ch.text)
        assert ch.json() == duck.json()
        return ch.json()


@pytest.fixture
async def stores(catalog: Catalog, data_dir: Path, ch_url: str) -> AsyncIterator[Stores]:
    app = catalog.create_app("Both stores")
    ch_store = ClickHouseStore(ch_url)
    duck = Services(catalog=catalog, store=EmbeddedStore(data_dir), limits=Limits())
    ch = Services(catalog=catalog, store=ch_store, limits=Limits())
    peer = ("198.51.100.7", 51000)
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=TallyApp(duck), client=peer),
                base_url="http://tally.test",
            ) as duck_http,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=TallyApp(ch), client=peer),
                base_url="http://tally.test",
            ) as ch_http,
        ):
            yield Stores(app, duck_http, ch_http, ch_store)
    finally:
        await duck.close()
        await ch.close()


def test_each_store_names_its_compiler() -> None:
    assert dialect_of(EmbeddedStore) is DUCKDB
    assert dialect_of(ClickHouseStore) is CLICKHOUSE
    assert dialect_of(object()) is DUCKDB


def test_persons_are_the_smallest_id_connected() -> None:
    links = [("d2", "u1"), ("d1", "u1"), ("d3", "u2"), ("d2", "u2"), ("x", "y")]
    assert persons_of(links) == {
        "d1": "d1",
        "d2": "d1",
        "d3": "d1",
        "u1": "d1",
        "u2": "d1",
        "x": "x",
        "y": "x",
    }
    assert persons_of([]) == {}


HOPS = [
    {"name": "view", "time": "2026-03-01T10:00:00Z", "device": "d1"},
    {"name": "view", "time": "2026-03-01T11:00:00Z", "device": "d1", "user": "u1"},
    {"name": "cart", "time": "2026-03-01T12:00:00Z", "device": "d2", "user": "u1"},
    {"name": "buy", "time": "2026-03-01T13:00:00Z", "device": "d2", "user": "u2"},
    {"name": "view", "time": "2026-03-02T10:00:00Z", "device": "d3", "user": "u2"},
    {"name": "view", "time": "2026-03-01T09:00:00Z", "device": "d9"},
    {"name": "cart", "time": "2026-03-02T09:00:00Z", "device": "d9"},
]
"""d1 - u1 - d2 - u2 - d3: one person (d1) through four links; d9 on its own."""


async def test_people_linked_through_several_hops(stores: Stores) -> None:
    await stores.send(HOPS)
    trend = await stores.query(
        {"kind": "trends", "events": [{"event": "view", "measure": "users"}], **DAYS}
    )
    [series] = trend["series"]
    assert series["total"] == 2
    assert [p["value"] for p in series["points"]] == [2, 1, 0]

    users = await stores.query({"kind": "users", **DAYS})
    assert [(p["active"], p["new"]) for p in users["points"]] == [(2, 2), (2, 0), (0, 0)]

    funnel = await stores.query(
        {
            "kind": "funnel",
            "steps": [{"event": "view"}, {"event": "cart"}, {"event": "buy"}],
            "window": {"value": 1, "unit": "day"},
            **PERIOD,
        }
    )
    assert [s["count"] for s in funnel["steps"]] == [2, 2, 1]
    # d1 entered at 10:00 (as d1), added to the cart at 12:00 (as d2), bought at 13:00 (as u2)
    assert funnel["steps"][2]["median_seconds_from_previous"] == 3600

    retention = await stores.query(
        {
            "kind": "retention",
            "start_event": {"event": "view"},
            "return_event": {"event": "view"},
            "periods": 2,
            **DAYS,
        }
    )
    assert [(c["size"], c["values"]) for c in retention["cohorts"]] == [
        (2, [2, 1]),
        (0, [0, 0]),
        (0, [0, 0]),
    ]

    profile = await stores.get("/customers/d3")
    assert profile["linked_ids"] == ["d1", "d2", "u1", "u2"]
    assert profile["events"] == 5
    assert profile["first_seen"] == "2026-03-01T10:00:00Z"
    assert [d["device"] for d in profile["devices"]] == ["d3", "d2", "d1"]


async def test_events_with_no_identity(stores: Stores) -> None:
    """Events with neither a user nor a device (the native API takes them) are one person who
    enters funnels and cohorts but never converts or returns, and is no active user."""
    anonymous = [
        {"name": "view", "time": "2026-03-01T08:00:00Z"},
        {"name": "cart", "time": "2026-03-01T08:30:00Z"},
        {"name": "view", "time": "2026-03-02T08:00:00Z"},
    ]
    await stores.send([*HOPS, *anonymous])
    funnel = await stores.query(
        {
            "kind": "funnel",
            "steps": [{"event": "view"}, {"event": "cart"}, {"event": "buy"}],
            "window": {"value": 1, "unit": "day"},
            **PERIOD,
        }
    )
    assert [s["count"] for s in funnel["steps"]] == [3, 2, 1]
    retention = await stores.query(
        {
            "kind": "retention",
            "start_event": {"event": "view"},
            "return_event": {"event": "view"},
            "periods": 2,
            **DAYS,
        }
    )
    assert (retention["cohorts"][0]["size"], retention["cohorts"][0]["values"]) == (3, [2, 1])
    users = await stores.query({"kind": "users", **DAYS})
    assert [p["active"] for p in users["points"]] == [2, 2, 0]
    trend = await stores.query(
        {"kind": "trends", "events": [{"event": "view", "measure": "users"}], **DAYS}
    )
    assert trend["series"][0]["total"] == 2
    await stores.query({"kind": "sessions", **DAYS})


async def test_countly_read_api_as_on_duckdb(stores: Stores) -> None:
    """Countly's ``/o?method=events`` (hours, days, segments: trends through the Runner)."""
    await stores.countly(
        datetime(2026, 2, 28, 23, 30, tzinfo=UTC),
        [{"key": "purchase", "count": 1, "sum": 10, "segmentation": {"country": "Turkey"}}],
    )
    await stores.countly(
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        [
            {"key": "purchase", "count": 2, "sum": 2.5, "segmentation": {"country": "Poland"}},
            {"key": "purchase", "dur": 3, "segmentation": {"country": "Spain", "items": 5}},
        ],
    )
    now = str(int(datetime(2026, 3, 3, 12, 0, tzinfo=UTC).timestamp()))
    tree = await stores.countly_read(
        method="events", event="purchase", period="7days", timestamp=now, tz="Europe/Warsaw"
    )
    assert tree["2026"]["c"] == 4
    assert tree["meta"]["country"] == ["Poland", "Spain", "Turkey"]
    by_country = await stores.countly_read(
        method="events", event="purchase", segmentation="country", period="7days", timestamp=now
    )
    assert by_country["2026"]["3"]["1"]["Poland"]["c"] == 2
    await stores.countly_read(method="get_events", timestamp=now)


async def test_redelivered_event_counted_once(stores: Stores) -> None:
    """Copies of stored events (two loaders inserting one batch) that ReplacingMergeTree has not
    merged yet count once: the queries read with FINAL."""
    await stores.send(HOPS)
    db = stores.ch_store.db
    db.conn.execute(f"INSERT INTO {db._t('events')} SELECT * FROM {db._t('events')}")
    [(stored,)] = db.conn.execute(f"SELECT count() FROM {db._t('events')}")
    assert stored == 2 * len(HOPS)
    trend = await stores.query(
        {
            "kind": "trends",
            "events": [{"event": "*"}, {"event": "view", "measure": "users"}],
            **DAYS,
        }
    )
    assert [s["total"] for s in trend["series"]] == [len(HOPS), 2]
    sessions = await stores.query({"kind": "sessions", **DAYS})
    assert sessions["total"]["sessions"] == 0


PROFILE_EVENTS = [
    {"name": "page.visit", "time": "2026-03-01T10:00:00Z", "device": "phone-1"},
    {"name": "signup", "time": "2026-03-01T10:05:00.250Z", "device": "phone-1", "user": "Ann"},
    {
        "name": "identity.identify",
        "time": "2026-03-01T10:06:00Z",
        "user": "Ann",
        "properties": {"plan": "free", "visits": 1},
    },
    {"name": "purchase", "time": "2026-03-02T09:00:00Z", "device": "laptop-2", "user": "Ann"},
    {"name": "purchase", "time": "2026-03-03T09:00:00Z", "device": "laptop-2", "user": "Ann"},
    {
        "name": "identity.identify",
        "time": "2026-03-03T09:01:00Z",
        "user": "Ann",
        "properties": {"plan": "pro"},
    },
    {"name": "page.visit", "time": "2026-03-04T09:00:00Z", "device": "tablet-annie"},
    {"name": "page.visit", "time": "2026-03-05T09:00:00Z", "user": "bob"},
]


async def test_customers_as_on_duckdb(stores: Stores) -> None:
    await stores.send(PROFILE_EVENTS)
    everyone = (await stores.get("/customers"))["customers"]
    assert [c["id"] for c in everyone] == ["bob", "tablet-annie", "Ann", "phone-1"]
    found = (await stores.get("/customers", search="ANN"))["customers"]
    assert [c["id"] for c in found] == ["tablet-annie", "Ann"]
    profile = await stores.get("/customers/phone-1")
    assert profile["linked_ids"] == ["Ann", "laptop-2"]
    assert profile["events"] == 6
    assert profile["properties"] == {"plan": "pro", "visits": 1}
    assert profile["devices"][1]["first_seen"] == "2026-03-01T10:00:00Z"
    assert profile["devices"][1]["last_seen"] == "2026-03-01T10:05:00.250000Z"
    missing = await stores.ch.get(
        f"/api/v1/apps/{stores.app.app.id}/customers/nobody", auth=stores.auth
    )
    assert missing.status_code == 404


async def test_queries_on_the_cluster_layout(catalog: Catalog, ch_url: str) -> None:
    """Through Distributed tables (the test server's one-shard cluster ``tally_test``, DDL run
    without ON CLUSTER as in test_clickhouse_store.py): FINAL, the persons table and the person's
    ids (GLOBAL IN) go through them. Skipped on a server without that cluster."""
    if not create_cluster_tables(ch_url, "tally_test"):
        pytest.skip("the server has no cluster tally_test (TALLY_TEST_CLICKHOUSE)")
    app = catalog.create_app("On a cluster")
    services = Services(
        catalog=catalog,
        store=ClickHouseStore(ch_url, cluster="tally_test", migrate=False),
        limits=Limits(),
    )
    transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))
    auth = (app.app.api_key, app.api_secret)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
            reply = await http.post(
                "/api/v1/events", json={"events": HOPS}, headers={"x-tally-key": app.app.app_key}
            )
            assert reply.json()["accepted"] == len(HOPS), reply.text
            base = f"/api/v1/apps/{app.app.id}"
            trend = await http.post(
                f"{base}/query",
                json={"kind": "trends", "events": [{"event": "view", "measure": "users"}], **DAYS},
                auth=auth,
            )
            assert trend.json()["series"][0]["total"] == 2, trend.text
            profile = (await http.get(f"{base}/customers/d3", auth=auth)).json()
            assert profile["linked_ids"] == ["d1", "d2", "u1", "u2"]
            assert profile["events"] == 5
    finally:
        await services.close()
