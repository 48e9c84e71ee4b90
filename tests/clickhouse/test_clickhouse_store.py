"""The ClickHouse event store against a real server (Debian's clickhouse-server 18.16 unless
TALLY_TEST_CLICKHOUSE names another): the behaviours tests/test_store.py checks for DuckDB, plus
redelivery (the same rows inserted twice are read once) and what only ClickHouse has (property
arrays, mutations, the cluster layout)."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, date, datetime, timedelta

import duckdb
import msgspec
import pytest
from clickhouse_driver.errors import ServerException

import stored_events
from stored_events import batch
from support import free_port
from tally.model import LINK_EVENT, LINK_PREVIOUS, DropReason, Event, FailedEvent
from tally.sink import AppendBatch, AppendResult, Sink, StoreUnavailable
from tally.store import clickhouse_store
from tally.store.base import EXPORT_COLUMNS, EventStore, ExportQuery, QueryTooLarge
from tally.store.clickhouse_client import ClickHouseUrl, Connections
from tally.store.clickhouse_db import ClickHouseDB, time_bound
from tally.store.clickhouse_rows import INSERT_COLUMNS, insert_columns
from tally.store.clickhouse_schema import MIGRATIONS, Ddl, Layout
from tally.store.clickhouse_store import ClickHouseStore
from tally.store.embedded import EmbeddedStore
from tally.store.query import EventCursor, EventQuery, FailedQuery, ReplayedEvent
from tally.store.rows import event_rows, failed_rows
from tally.testing.clickhouse_databases import create_cluster_tables

APP = stored_events.APP
OTHER_APP = "b" * 24
NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def ev(name: str = "signup", id: str | None = None, **fields) -> Event:  # type: ignore[no-untyped-def]
    """``stored_events.ev`` at this module's ``NOW`` (microseconds make the round trip)."""
    return stored_events.ev(name, id, now=NOW, **fields)


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


def raw_count(db: ClickHouseDB, table: str = "events") -> int:
    """Rows as stored, before FINAL collapses copies."""
    [(count,)] = db.conn.execute(f"SELECT count() FROM {db.layout.table(table)}")
    return int(count)


# schema


def test_migrations_run_once_and_record_the_version(ch_url: str) -> None:
    store = ClickHouseDB(ch_url)
    assert store.schema_version() == 0
    assert store.migrate() == [m.version for m in MIGRATIONS]
    assert store.migrate() == []
    assert store.schema_version() == len(MIGRATIONS)
    tables = {row[0] for row in store.conn.execute("SHOW TABLES")}
    assert tables == {
        "tally_schema",
        "events",
        "failed_events",
        "identity_links",
        "discarded_events",
        "deletions",
    }
    store.close()
    reopened = ClickHouseDB(ch_url)
    assert reopened.migrate() == []
    reopened.close()


def test_a_newer_schema_is_refused(db: ClickHouseDB) -> None:
    db.conn.execute("INSERT INTO tally_schema SELECT 'events', 99, 'from the future', now()")
    with pytest.raises(RuntimeError, match="newer than this Tally"):
        db.migrate()


def test_the_database_is_created_from_the_url(ch_url: str) -> None:
    name = ClickHouseUrl.parse(ch_url).database
    store = ClickHouseDB(ch_url)
    databases = {row[0] for row in store.conn.execute("SHOW DATABASES")}
    store.close()
    assert name in databases


def test_urls() -> None:
    url = ClickHouseUrl.parse("clickhouse://tally:p%40ss@ch.example:9001/analytics?cluster=main")
    assert url == ClickHouseUrl("ch.example", 9001, "analytics", "tally", "p@ss", "main")
    assert ClickHouseUrl.parse("clickhouse://localhost") == ClickHouseUrl("localhost")
    with pytest.raises(ValueError, match="unknown ClickHouse URL options: secure"):
        ClickHouseUrl.parse("clickhouse://localhost/db?secure=1")
    with pytest.raises(ValueError, match="not a ClickHouse URL"):
        ClickHouseUrl.parse("postgresql://localhost/db")


def test_the_cluster_layout_creates_local_tables_and_distributed_ones() -> None:
    """One server cannot run ON CLUSTER DDL (it needs ZooKeeper): the statements are checked
    here, and run without ON CLUSTER in the next test."""
    ddl = Ddl(Layout("analytics", cluster="main"))
    for migration in MIGRATIONS:
        migration.apply(ddl)
    creates = [s for s in ddl.statements if s.startswith("CREATE TABLE")]
    assert all(" ON CLUSTER `main` " in s for s in creates)
    assert len(creates) == 10  # five tables, each local + Distributed
    [events_local, events] = [s for s in creates if "`events" in s.split("(")[0]]
    assert events_local.startswith("CREATE TABLE IF NOT EXISTS `analytics`.`events_local`")
    assert "ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(" in events_local
    assert "ORDER BY (app_id, toDate(" in events_local
    assert events.startswith("CREATE TABLE IF NOT EXISTS `analytics`.`events` ON CLUSTER")
    assert "AS `analytics`.`events_local` ENGINE = Distributed(`main`, `analytics`" in events
    single = Ddl(Layout("analytics"))
    MIGRATIONS[0].apply(single)
    assert not any("ON CLUSTER" in s or "Distributed" in s for s in single.statements)


def test_the_cluster_tables_work_on_one_server(ch_url: str, clickhouse_url: str) -> None:
    """The Distributed DDL, without ON CLUSTER, over the test server's one-shard cluster
    ``tally_test`` (tests/clickhouse_server.py): inserts through the Distributed table land in the
    local one and are read back once. Skipped on a server without that cluster."""
    if not create_cluster_tables(ch_url, "tally_test"):
        pytest.skip("the server has no cluster tally_test (TALLY_TEST_CLICKHOUSE)")
    db = ClickHouseDB(ch_url, cluster="tally_test")
    rows = batch(ev(id="e1", user_id="u1", device_id="d1"), ev(id="e2", device_id="d1"))
    assert db.append(rows) == AppendResult(2, 0)
    db.append(AppendBatch(events=rows.events))  # redelivered: the dedup lookup counts them
    assert ids(db.fetch_events(EventQuery(app_id=APP))) == ["e2", "e1"]
    assert raw_count(db, "events_local") == 2
    assert ids(db.fetch_events(EventQuery(app_id=APP, user="u1"))) == ["e2", "e1"]
    db.close()


# appends and reads


def test_append_stores_every_field(db: ClickHouseDB) -> None:
    event = ev(
        "purchase",
        id="order-1",
        label="Bought",
        user_id="u1",
        device_id="d1",
        session_id="s1",
        count=2,
        sum=19.99,
        dur=3.5,
        properties={"item": "rolex", "tags": ["a", "b"], "n": 1},
        undefined_properties=["n"],
        sdk_name="tally-py",
        sdk_version="0.1",
        ip="192.0.2.1",
        user_agent="ua",
        browser="Chrome",
        os="Linux",
        device_type="desktop",
        url="https://example.com/a",
        referrer="https://example.com/",
        locale="en-GB",
        timezone="Europe/London",
        internal=True,
        country_code="GB",
        city="London",
        location="51.5,-0.12",
        coerced_properties=["n"],
        received_at=NOW + timedelta(seconds=2, microseconds=7),
    )
    assert db.append(batch(event)) == AppendResult(1, 0)
    [row] = db.fetch_events(EventQuery(app_id=APP))
    assert row == {
        "app_id": APP,
        "id": "order-1",
        "name": "purchase",
        "label": "Bought",
        "time": NOW,
        "received_at": NOW + timedelta(seconds=2, microseconds=7),
        "user_id": "u1",
        "device_id": "d1",
        "session_id": "s1",
        "count": 2,
        "sum": 19.99,
        "dur": 3.5,
        "properties": {"item": "rolex", "tags": ["a", "b"], "n": 1},
        "undefined_properties": ["n"],
        "protocol": "native",
        "sdk_name": "tally-py",
        "sdk_version": "0.1",
        "ip": "192.0.2.1",
        "user_agent": "ua",
        "browser": "Chrome",
        "os": "Linux",
        "device_type": "desktop",
        "url": "https://example.com/a",
        "referrer": "https://example.com/",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "internal": True,
        "country_code": "GB",
        "city": "London",
        "location": "51.5,-0.12",
        "coerced_properties": ["n"],
    }


def test_an_event_with_only_the_required_fields_reads_back_empty(db: ClickHouseDB) -> None:
    db.append(batch(ev("bare")))
    [row] = db.fetch_events(EventQuery(app_id=APP))
    assert row["properties"] == {} and row["undefined_properties"] == []
    assert row["label"] is None and row["user_id"] is None and row["sum"] is None
    assert row["internal"] is False


def test_property_arrays_hold_what_duckdb_json_extract_string_gives(db: ClickHouseDB) -> None:
    properties = {
        "plan": "pro",
        "n": 1,
        "price": 19.5,
        "big": 12345678901234567890,
        "ok": True,
        "no": False,
        "nothing": None,
        "tags": ["a", 1],
        "nested": {"x": {"y": "z"}},
        "quote": 'say "hi"',
        "unicode": "żółw",
    }
    db.append(batch(ev("props", properties=properties)))
    [(keys, values)] = db.run_sql("SELECT prop_keys, prop_values FROM events", [])
    encoded = msgspec.json.encode(properties).decode()
    expected = {}
    for key in properties:
        [(value,)] = duckdb.execute(
            "SELECT json_extract_string(?::JSON, ?)", [encoded, f"$.{key}"]
        ).fetchall()
        if value is not None:
            expected[key] = value
    assert dict(zip(keys, values, strict=True)) == expected
    assert "nothing" not in keys
    # filter and group on a property, as the query compiler will
    rows = db.run_sql(
        "SELECT prop_values[indexOf(prop_keys, %s)] AS plan, count() FROM events FINAL "
        "WHERE app_id = %s GROUP BY plan",
        ["plan", APP],
    )
    assert rows == [("pro", 1)]


def test_client_ids_are_stored_once_within_a_batch_and_across_appends(db: ClickHouseDB) -> None:
    assert db.append(batch(ev(id="e1"), ev(id="e2"), ev(id="e1"))) == AppendResult(2, 1)
    assert db.append(batch(ev(id="e2"), ev(id="e3"), ev("no-id"))) == AppendResult(2, 1)
    assert db.append(batch(ev(id="e1"), ev(id="e4"))) == AppendResult(1, 1)
    rows = db.fetch_events(EventQuery(app_id=APP))
    assert sorted(r["id"] for r in rows if r["name"] == "signup") == ["e1", "e2", "e3", "e4"]
    assert len(rows) == 5
    assert raw_count(db) == 5  # duplicates were not inserted at all


def test_the_same_client_id_in_two_apps_is_two_events(db: ClickHouseDB) -> None:
    assert db.append(batch(ev(id="e1"))) == AppendResult(1, 0)
    assert db.append(batch(ev(id="e1"), app_id=OTHER_APP)) == AppendResult(1, 0)
    assert ids(db.fetch_events(EventQuery(app_id=OTHER_APP))) == ["e1"]


def test_ids_stored_before_the_dedup_window_are_not_looked_up(ch_url: str) -> None:
    db = ClickHouseDB(ch_url, dedup_window=timedelta(days=7))
    db.migrate()
    db.append(batch(ev(id="recent")))
    old = event_rows(APP, [ev(id="old")])
    columns = ", ".join(f"`{c}`" for c in INSERT_COLUMNS)
    db.conn.execute(  # stored eight days ago
        f"INSERT INTO events ({columns}, stored_at) VALUES",
        [*insert_columns(old), [datetime.now(UTC) - timedelta(days=8)]],
        columnar=True,
    )
    assert db.append(batch(ev(id="old"), ev(id="recent"))) == AppendResult(1, 1)
    db.close()


def test_redelivered_rows_are_counted_once(db: ClickHouseDB) -> None:
    """Rows that reach the table twice (two loaders at once, or a lookup outside the window):
    ReplacingMergeTree's key collapses them, and every read sees one event."""
    rows = event_rows(
        APP,
        [
            ev(id="client-1", user_id="u1", time=NOW - timedelta(hours=1)),
            ev("server-made", device_id="d1"),
            ev("later", id="client-2", user_id="u1", device_id="d1"),
        ],
    )
    db.append(AppendBatch(events=rows))
    # again, as a loader would without the lookup: straight into the table
    insert = f"INSERT INTO events ({', '.join(f'`{c}`' for c in INSERT_COLUMNS)}) VALUES"
    db.conn.execute(insert, insert_columns(rows), columnar=True)
    assert raw_count(db) == 6
    assert len(db.fetch_events(EventQuery(app_id=APP))) == 3
    assert db.count_events(ExportQuery(app_id=APP)) == 3
    export = db.export_page(ExportQuery(app_id=APP), None, 100)
    assert export.num_rows == 3
    assert len(db.fetch_events(EventQuery(app_id=APP, user="u1"))) == 3
    # and once the parts merge, the copies are gone from the table itself
    db.conn.execute("OPTIMIZE TABLE events FINAL")
    assert raw_count(db) == 3


def test_a_whole_batch_appended_twice_is_counted_once(db: ClickHouseDB) -> None:
    """The same AppendBatch twice (a retried request): client ids count as duplicates, server-made
    ids are inserted again and collapsed by the key."""
    twice = batch(ev(id="c1"), ev("server-made"))
    assert db.append(twice) == AppendResult(2, 0)
    assert db.append(twice) == AppendResult(1, 1)
    assert db.count_events(ExportQuery(app_id=APP)) == 2


def test_failed_events_are_kept_with_reason_and_payload(db: ClickHouseDB) -> None:
    failed = FailedEvent(
        app_id=APP,
        received_at=NOW,
        protocol="native",
        reason=DropReason.MISSING_NAME,
        message="event name is missing or empty",
        payload=b'{"name": ""}\xff\x00',  # not UTF-8: stored and read back as bytes
        name=None,
        event_index=3,
        replay=b"\x01\x02",
    )
    assert db.append(AppendBatch(failed=failed_rows([failed]))) == AppendResult(0, 0)
    [record] = db.fetch_failed(FailedQuery(app_id=APP, with_payload=True))
    assert record.id  # every failed event has an id, for replay
    assert (record.received_at, record.protocol, record.reason, record.message) == (
        NOW,
        "native",
        "missing_name",
        "event name is missing or empty",
    )
    assert (record.payload, record.replay) == (b'{"name": ""}\xff\x00', b"\x01\x02")
    assert (record.name, record.event_index, record.replayable) == (None, 3, True)
    assert record.replayed_at is None and record.replayed_as is None
    [listed] = db.fetch_failed(FailedQuery(app_id=APP))
    assert listed.payload is None
    assert db.fetch_failed(FailedQuery(app_id=OTHER_APP)) == []


def test_fetch_failed_filters(db: ClickHouseDB) -> None:
    def failure(reason: DropReason, name: str | None, at: datetime) -> FailedEvent:
        return FailedEvent(
            app_id=APP,
            received_at=at,
            protocol="native",
            reason=reason,
            message="m",
            payload=b"{}",
            name=name,
            event_index=0,
        )

    db.append(
        AppendBatch(
            failed=failed_rows(
                [
                    failure(DropReason.MISSING_NAME, None, NOW - timedelta(hours=2)),
                    failure(DropReason.UNDEFINED_EVENT, "x", NOW - timedelta(hours=1)),
                    failure(DropReason.UNDEFINED_EVENT, "y", NOW),
                ]
            )
        )
    )
    everything = db.fetch_failed(FailedQuery(app_id=APP))
    assert [r.name for r in everything] == ["y", "x", None]  # newest first
    assert [r.replayable for r in everything] == [False] * 3
    assert [r.name for r in db.fetch_failed(FailedQuery(app_id=APP, reason="undefined_event"))] == [
        "y",
        "x",
    ]
    assert [r.name for r in db.fetch_failed(FailedQuery(app_id=APP, name="x"))] == ["x"]
    window = FailedQuery(app_id=APP, since=NOW - timedelta(hours=1), until=NOW)
    assert [r.name for r in db.fetch_failed(window)] == ["x"]
    assert [r.name for r in db.fetch_failed(FailedQuery(app_id=APP, limit=1))] == ["y"]
    picked = FailedQuery(app_id=APP, ids=[everything[2].id])
    assert [r.id for r in db.fetch_failed(picked)] == [everything[2].id]
    assert db.fetch_failed(FailedQuery(app_id=APP, ids=[])) == []


def test_replayed_failed_events_are_marked(db: ClickHouseDB) -> None:
    failed = [
        FailedEvent(
            app_id=APP,
            received_at=NOW,
            protocol="native",
            reason=DropReason.UNDEFINED_EVENT,
            message="m",
            payload=f"{{{i}}}".encode(),
            name=f"e{i}",
            event_index=i,
            replay=b"r",
        )
        for i in range(3)
    ]
    db.append(AppendBatch(failed=failed_rows(failed)))
    by_name = {r.name: r for r in db.fetch_failed(FailedQuery(app_id=APP))}
    db.mark_replayed(
        APP,
        [
            ReplayedEvent(by_name["e0"].id, "event-0"),
            ReplayedEvent(by_name["e2"].id, "event-2"),
        ],
    )
    db.mark_replayed(OTHER_APP, [ReplayedEvent(by_name["e1"].id, "wrong-app")])  # no effect
    replayed = db.fetch_failed(FailedQuery(app_id=APP, replayed=True, with_payload=True))
    assert sorted((r.name, r.replayed_as) for r in replayed) == [
        ("e0", "event-0"),
        ("e2", "event-2"),
    ]
    assert all(r.replayed_at is not None and r.payload and r.replay == b"r" for r in replayed)
    assert {r.payload for r in replayed} == {b"{0}", b"{2}"}
    [waiting] = db.fetch_failed(FailedQuery(app_id=APP, replayed=False))
    assert (waiting.name, waiting.replayed_at, waiting.replayed_as) == ("e1", None, None)
    assert len(db.fetch_failed(FailedQuery(app_id=APP))) == 3  # versions collapse


def test_fetch_filters_and_orders_newest_first(db: ClickHouseDB) -> None:
    events = [
        ev("a", id="1", user_id="u1", time=NOW - timedelta(hours=3)),
        ev("b", id="2", user_id="u2", time=NOW - timedelta(hours=2)),
        ev("a", id="3", device_id="u1", time=NOW - timedelta(hours=1)),
    ]
    db.append(batch(*events))
    assert ids(db.fetch_events(EventQuery(app_id=APP))) == ["3", "2", "1"]
    assert ids(db.fetch_events(EventQuery(app_id=APP, name="a"))) == ["3", "1"]
    assert ids(db.fetch_events(EventQuery(app_id=APP, names=["a", "b"]))) == ["3", "2", "1"]
    assert ids(db.fetch_events(EventQuery(app_id=APP, user="u1"))) == ["3", "1"]
    since = NOW - timedelta(hours=2)
    assert ids(db.fetch_events(EventQuery(app_id=APP, since=since))) == ["3", "2"]
    assert ids(db.fetch_events(EventQuery(app_id=APP, limit=1))) == ["3"]
    assert db.fetch_events(EventQuery(app_id=OTHER_APP)) == []


def test_pages_follow_time_then_received_at_then_id(db: ClickHouseDB) -> None:
    """Ties on time are broken by received_at, then id, newest first; ``before`` continues."""
    later = NOW + timedelta(microseconds=1)
    db.append(
        batch(
            ev(id="a", time=NOW, received_at=NOW),
            ev(id="b", time=NOW, received_at=NOW),
            ev(id="c", time=NOW, received_at=later),
            ev(id="d", time=later, received_at=NOW),
            ev(id="e", time=NOW - timedelta(microseconds=1), received_at=later),
        )
    )
    seen: list[str] = []
    cursor = None
    while True:
        page = db.fetch_events(EventQuery(app_id=APP, before=cursor, limit=2))
        if not page:
            break
        seen += ids(page)
        last = page[-1]
        cursor = EventCursor(last["time"], last["received_at"], last["id"])
    assert seen == ["d", "c", "b", "a", "e"]


def test_a_person_is_every_id_linked_to_it(db: ClickHouseDB) -> None:
    """d1 <-> u1 (an event with both), then a link event moves d2 to u1's person, and d3 is linked
    to d2 only: asking for any of them finds the events of all four (three hops from d3)."""
    db.append(
        batch(
            ev("view", id="1", device_id="d1", time=NOW - timedelta(hours=5)),
            ev("login", id="2", device_id="d1", user_id="u1", time=NOW - timedelta(hours=4)),
            ev("view", id="3", device_id="d2", time=NOW - timedelta(hours=3)),
            ev(
                LINK_EVENT,
                id="4",
                user_id="u1",
                internal=True,
                properties={LINK_PREVIOUS: "d2"},
                time=NOW - timedelta(hours=2),
            ),
            ev("view", id="5", device_id="d3", time=NOW - timedelta(hours=1)),
            ev(LINK_EVENT, id="6", device_id="d3", internal=True, properties={LINK_PREVIOUS: "d2"}),
            ev("view", id="7", device_id="stranger"),
        )
    )
    db.append(batch(ev("view", id="8", device_id="d1"), app_id=OTHER_APP))
    for who in ("u1", "d1", "d2", "d3"):
        found = ids(db.fetch_events(EventQuery(app_id=APP, user=who)))
        assert found == ["6", "5", "4", "3", "2", "1"], who
    assert db.person_ids(APP, "d3") == ["d1", "d2", "d3", "u1"]
    assert ids(db.fetch_events(EventQuery(app_id=APP, user="stranger"))) == ["7"]
    # a link event that is not internal states no link
    db.append(batch(ev(LINK_EVENT, id="9", user_id="x", properties={LINK_PREVIOUS: "y"})))
    assert db.person_ids(APP, "x") == ["x"]
    links = db.run_sql(
        "SELECT from_id, to_id FROM identity_links WHERE app_id = %s ORDER BY from_id", [APP]
    )
    assert links == [("d1", "u1"), ("d2", "d3"), ("d2", "u1")]


def test_stored_ids(db: ClickHouseDB) -> None:
    db.append(
        batch(ev(id="in"), ev(id="early", time=NOW - timedelta(days=2)), ev(id="other-app")),
    )
    db.append(batch(ev(id="x"), app_id=OTHER_APP))
    found = db.stored_ids(
        APP, ["in", "early", "missing", "x"], NOW - timedelta(days=1), NOW + timedelta(days=1)
    )
    assert found == {"in"}
    assert db.stored_ids(APP, [], NOW, NOW) == set()


def test_discard_counts_are_summed_per_rule_and_day(db: ClickHouseDB) -> None:
    db.append(AppendBatch(discarded=[(APP, "deny_list", 3), (APP, "bot", 1)]))
    db.append(AppendBatch(discarded=[(APP, "deny_list", 2), (OTHER_APP, "bot", 9)]))
    today = datetime.now(UTC).date()
    counts = db.discard_counts(APP)
    assert [(c.rule, c.day, c.count) for c in counts] == [
        ("bot", today, 1),
        ("deny_list", today, 5),
    ]
    assert db.discard_counts(APP, since=today + timedelta(days=1)) == []
    assert [c.count for c in db.discard_counts(OTHER_APP, since=date(2020, 1, 1))] == [9]


def test_run_sql_takes_positional_parameters(db: ClickHouseDB) -> None:
    db.append(batch(ev("it's", id="q1", user_id="o'brien"), ev("other", id="q2")))
    rows = db.run_sql(
        "SELECT id FROM events FINAL WHERE app_id = %s AND name = %s AND user_id IN %s "
        "AND name LIKE 'it%%'",
        [APP, "it's", ("o'brien", "nobody")],
    )
    assert rows == [("q1",)]
    by_day = db.run_sql(
        "SELECT toDate(toDateTime(intDiv(time, 1000000)), %s) AS day, count() FROM events FINAL "
        "GROUP BY day",
        ["Pacific/Kiritimati"],  # UTC+14: noon UTC on 1 March is 2 March there
    )
    assert by_day == [(date(2026, 3, 2), 2)]


# exports


async def test_export_is_oldest_first_in_pages_and_batches(
    ch_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clickhouse_store, "EXPORT_PAGE_ROWS", 4)
    store = ClickHouseStore(ch_url)
    events = [
        ev(id=f"e{i:02}", time=NOW - timedelta(minutes=i % 5), received_at=NOW + timedelta(i))
        for i in range(11)
    ]
    await store.append(batch(*events))
    await store.append(batch(ev(id="elsewhere"), app_id=OTHER_APP))
    query = ExportQuery(app_id=APP)
    batches = [b async for b in store.export_batches(query, batch_rows=3)]
    assert all(b.num_rows <= 3 for b in batches)
    assert batches[0].schema.names == list(EXPORT_COLUMNS)
    rows = [row for b in batches for row in b.to_pylist()]
    expected = sorted(events, key=lambda e: (e.time, e.received_at, e.id))
    assert [r["id"] for r in rows] == [e.id for e in expected]
    assert rows[0]["time"] == expected[0].time.replace(tzinfo=None)
    assert await store.count_events(query) == 11
    window = ExportQuery(app_id=APP, since=NOW - timedelta(minutes=2), until=NOW)
    assert await store.count_events(window) == 4  # minutes 2 and 1 before NOW, two each
    await store.close()


async def test_export_of_a_person(ch_url: str) -> None:
    store = ClickHouseStore(ch_url)
    await store.append(
        batch(
            ev(id="1", device_id="d1", time=NOW - timedelta(hours=1)),
            ev(id="2", device_id="d1", user_id="u1"),
            ev(id="3", device_id="d9"),
        )
    )
    query = ExportQuery(app_id=APP, user="u1")
    rows = [r for b in [b async for b in store.export_batches(query, 100)] for r in b.to_pylist()]
    assert [r["id"] for r in rows] == ["1", "2"]
    assert rows[0]["undefined_properties"] is None and rows[0]["internal"] is False
    assert await store.count_events(query) == 2
    await store.close()


# deletions


def test_delete_person_removes_every_linked_id_and_records_it(db: ClickHouseDB) -> None:
    db.append(
        batch(
            ev(id="1", device_id="d1", time=NOW - timedelta(days=400)),
            ev(id="2", device_id="d1", user_id="u1"),
            ev(id="3", device_id="d2", user_id="u1"),
            ev(id="4", device_id="other", user_id="u2"),
        )
    )
    db.append(batch(ev(id="5", device_id="d1"), app_id=OTHER_APP))
    deletion = db.delete_person(APP, "d2")
    assert (deletion.kind, deletion.person, deletion.ids) == ("person", "d2", ["d1", "d2", "u1"])
    assert (deletion.events_deleted, deletion.links_deleted) == (3, 2)
    # the call returned once the mutations ran: nothing of the person is left, even unmerged
    assert raw_count(db) == 2
    assert ids(db.fetch_events(EventQuery(app_id=APP))) == ["4"]
    assert db.person_ids(APP, "u1") == ["u1"]
    assert db.person_ids(APP, "u2") == ["other", "u2"]
    assert ids(db.fetch_events(EventQuery(app_id=OTHER_APP))) == ["5"]
    [record] = db.deletions(APP)
    assert record == deletion


def test_delete_expired_removes_old_events_of_the_app_only(db: ClickHouseDB) -> None:
    db.append(batch(ev(id="old", time=NOW - timedelta(days=40)), ev(id="new")))
    db.append(batch(ev(id="old-elsewhere", time=NOW - timedelta(days=40)), app_id=OTHER_APP))
    cutoff = NOW - timedelta(days=30)
    deletion = db.delete_expired(APP, cutoff)
    assert (deletion.kind, deletion.events_deleted, deletion.cutoff) == ("retention", 1, cutoff)
    assert ids(db.fetch_events(EventQuery(app_id=APP))) == ["new"]
    assert ids(db.fetch_events(EventQuery(app_id=OTHER_APP))) == ["old-elsewhere"]
    assert db.delete_expired(APP, cutoff).events_deleted == 0
    assert [d.id for d in db.deletions(APP)] == [deletion.id]  # an empty run is not recorded


# the async store


async def test_store_round_trip_live_and_writable(ch_url: str) -> None:
    store = ClickHouseStore(ch_url)
    assert await store.migrate() == []
    stream = store.subscribe(APP, names=["signup"])
    assert await anext(stream) == {"subscribed": True}
    assert await store.append(batch(ev(id="e1"), ev("other"))) == AppendResult(2, 0)
    assert await store.append(batch(ev(id="e1"))) == AppendResult(0, 1)
    live = await asyncio.wait_for(anext(stream), 5)
    assert (live["id"], live["name"], live["time"]) == (
        "e1",
        "signup",
        "2026-03-01T12:00:00.123456Z",
    )
    await stream.aclose()
    rows = await store.fetch_events(EventQuery(app_id=APP, name="signup"))
    assert ids(rows) == ["e1"]
    await store.check_writable()
    await store.close()


async def test_an_unreachable_server_is_unavailable(ch_url: str) -> None:
    store = ClickHouseStore(ch_url)
    store.db.conn.close()
    store.db.conn = Connections(ClickHouseUrl("127.0.0.1", free_port()))  # nobody listens
    with pytest.raises(StoreUnavailable, match="insert failed"):
        await store.append(batch(ev(id="e1")))
    with pytest.raises(StoreUnavailable, match="not writable"):
        await store.check_writable()
    await store.close()


def test_the_store_has_the_whole_event_store_interface() -> None:
    names = {
        name
        for protocol in (EventStore, Sink)
        for name, member in vars(protocol).items()
        if not name.startswith("_") and callable(member)
    }
    assert {"append", "fetch_events", "export_batches", "delete_person", "close"} <= names
    for name in names:
        mine = getattr(ClickHouseStore, name, None)
        assert mine is not None, name
        embedded = getattr(EmbeddedStore, name)
        for kind in (inspect.iscoroutinefunction, inspect.isasyncgenfunction):
            assert kind(mine) == kind(embedded), name


def test_time_bounds_narrow_reads_by_the_sort_key(db: ClickHouseDB) -> None:
    """18.16 uses the key's day only if the condition names it: ``time_bound`` adds that bound, and
    ``force_primary_key`` refuses a query that could not use the key."""
    db.append(batch(ev(id="1", time=NOW - timedelta(days=2)), ev(id="2")))
    params: dict = {}
    where = time_bound(">=", "since", NOW - timedelta(days=1), params)
    [(count,)] = db.conn.execute(
        f"SELECT count() FROM events WHERE {where}", params, settings={"force_primary_key": 1}
    )
    assert count == 1
    [(version,)] = db.conn.execute("SELECT version()")
    if not version.startswith("18."):
        return  # newer servers may derive the day from ``time`` themselves
    with pytest.raises(ServerException, match="277"):  # INDEX_NOT_USED, on a bare time bound
        db.conn.execute(
            "SELECT count() FROM events WHERE time >= %(since)s",
            params,
            settings={"force_primary_key": 1},
        )


def test_past_max_memory_usage_a_read_is_too_large(db: ClickHouseDB) -> None:
    db.append(batch(*(ev("page.visit", user_id=f"u{i}") for i in range(50))))
    client = db.conn.get()  # this thread's connection, the one the reads use here
    client.settings["max_memory_usage"] = 1_000
    try:
        with pytest.raises(QueryTooLarge, match="max_memory_usage"):
            db.run_sql("SELECT groupArray(number) FROM numbers(10000000)", [])
        with pytest.raises(QueryTooLarge, match="max_memory_usage"):
            db.fetch_events(EventQuery(app_id=APP, limit=10))
        later = EventCursor(NOW + timedelta(days=1), NOW, "z")  # a next page: no newest-time read
        with pytest.raises(QueryTooLarge, match="max_memory_usage"):
            db.fetch_events(EventQuery(app_id=APP, limit=10, before=later))
    finally:
        del client.settings["max_memory_usage"]
    assert db.run_sql("SELECT 1", []) == [(1,)]
    assert len(db.fetch_events(EventQuery(app_id=APP, limit=10))) == 10
