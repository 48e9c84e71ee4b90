"""The embedded DuckDB store: appends, dedup (within a group, across commits, after a restart),
failed events, migrations and group commit."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from stored_events import APP, NOW, batch, ev
from tally.model import DropReason, FailedEvent
from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.duckdb_schema import MIGRATIONS
from tally.store.duckdb_store import DuckDBStore
from tally.store.embedded import EmbeddedStore
from tally.store.group_commit import GroupCommitter
from tally.store.query import EventQuery
from tally.store.rows import event_rows, failed_rows
from tally.store.wire import seal


@pytest.fixture
def db(data_dir: Path):  # type: ignore[no-untyped-def]
    store = DuckDBStore(data_dir)
    store.migrate()
    yield store
    store.close()


def test_migrations_run_once_and_record_the_version(data_dir: Path) -> None:
    store = DuckDBStore(data_dir)
    assert store.schema_version() == 0
    assert store.migrate() == [m.version for m in MIGRATIONS]
    assert store.migrate() == []
    assert store.schema_version() == len(MIGRATIONS)
    store.close()
    reopened = DuckDBStore(data_dir)
    assert reopened.migrate() == []
    reopened.close()


def test_a_newer_schema_is_refused(data_dir: Path, db: DuckDBStore) -> None:
    db.conn.execute("UPDATE tally_schema SET version = 99")
    with pytest.raises(RuntimeError, match="newer than this Tally"):
        db.migrate()


def test_append_stores_every_field(db: DuckDBStore) -> None:
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
    )
    assert db.commit_group([batch(event)]) == [AppendResult(1, 0)]
    [row] = db.fetch_events(EventQuery(app_id=APP))
    assert row["id"] == "order-1" and row["name"] == "purchase" and row["label"] == "Bought"
    assert row["time"] == NOW and row["received_at"] == NOW
    assert (row["user_id"], row["device_id"], row["session_id"]) == ("u1", "d1", "s1")
    assert (row["count"], row["sum"], row["dur"]) == (2, 19.99, 3.5)
    assert row["properties"] == {"item": "rolex", "tags": ["a", "b"], "n": 1}
    assert row["undefined_properties"] == ["n"]
    assert (row["sdk_name"], row["sdk_version"], row["protocol"]) == ("tally-py", "0.1", "native")
    assert row["url"] == "https://example.com/a" and row["timezone"] == "Europe/London"


def test_client_ids_are_stored_once_within_a_group_and_across_commits(db: DuckDBStore) -> None:
    first = batch(ev(id="e1"), ev(id="e2"), ev(id="e1"))
    second = batch(ev(id="e2"), ev(id="e3"), ev("no-id"))
    assert db.commit_group([first, second]) == [AppendResult(2, 1), AppendResult(2, 1)]
    assert db.commit_group([batch(ev(id="e1"), ev(id="e4"))]) == [AppendResult(1, 1)]
    rows = db.fetch_events(EventQuery(app_id=APP))
    assert sorted(r["id"] for r in rows if r["name"] == "signup") == ["e1", "e2", "e3", "e4"]
    assert len(rows) == 5


def test_the_same_client_id_in_two_apps_is_two_events(db: DuckDBStore) -> None:
    results = db.commit_group([batch(ev(id="e1")), batch(ev(id="e1"), app_id="b" * 24)])
    assert results == [AppendResult(1, 0), AppendResult(1, 0)]


def test_dedup_survives_a_restart(data_dir: Path) -> None:
    store = DuckDBStore(data_dir)
    store.migrate()
    store.commit_group([batch(ev(id="e1"))])
    store.close()
    reopened = DuckDBStore(data_dir)
    assert reopened.commit_group([batch(ev(id="e1"), ev(id="e2"))]) == [AppendResult(1, 1)]
    assert reopened.count_rows("events") == 2
    reopened.close()


def test_ids_older_than_the_window_are_forgotten(data_dir: Path) -> None:
    store = DuckDBStore(data_dir, dedup_window=timedelta(days=7))
    store.migrate()
    store.commit_group([batch(ev(id="old"))])
    store.conn.execute("UPDATE event_ids SET seen_at = seen_at - INTERVAL 8 DAY")
    store.event_ids._last_prune = datetime.min  # the prune runs at most hourly; make it due
    store.commit_group([batch(ev(id="recent"))])
    assert store.count_rows("event_ids") == 1  # "old" was forgotten, "recent" is remembered
    assert store.commit_group([batch(ev(id="old"), ev(id="recent"))]) == [AppendResult(1, 1)]
    store.close()


def test_failed_events_are_kept_with_reason_and_payload(db: DuckDBStore) -> None:
    failed = FailedEvent(
        app_id=APP,
        received_at=NOW,
        protocol="native",
        reason=DropReason.MISSING_NAME,
        message="event name is missing or empty",
        payload=b'{"name": ""}',
        name=None,
        event_index=3,
    )
    assert db.commit_group([AppendBatch(failed=failed_rows([failed]))]) == [AppendResult(0, 0)]
    row = db.conn.execute(
        "SELECT app_id, received_at, protocol, reason, message, payload, event_index, id "
        "FROM failed_events"
    ).fetchone()
    assert row is not None
    assert row[:7] == (
        APP,
        NOW.replace(tzinfo=None),
        "native",
        "missing_name",
        "event name is missing or empty",
        b'{"name": ""}',
        3,
    )
    assert row[7]  # every failed event has an id, for replay


def test_fetch_filters_and_orders_newest_first(db: DuckDBStore) -> None:
    events = [
        ev("a", id="1", user_id="u1", time=NOW - timedelta(hours=3)),
        ev("b", id="2", user_id="u2", time=NOW - timedelta(hours=2)),
        ev("a", id="3", device_id="u1", time=NOW - timedelta(hours=1)),
    ]
    db.commit_group([batch(*events)])
    assert [r["id"] for r in db.fetch_events(EventQuery(app_id=APP))] == ["3", "2", "1"]
    assert [r["id"] for r in db.fetch_events(EventQuery(app_id=APP, name="a"))] == ["3", "1"]
    assert [r["id"] for r in db.fetch_events(EventQuery(app_id=APP, user="u1"))] == ["3", "1"]
    since = NOW - timedelta(hours=2)
    assert [r["id"] for r in db.fetch_events(EventQuery(app_id=APP, since=since))] == ["3", "2"]
    assert [r["id"] for r in db.fetch_events(EventQuery(app_id=APP, limit=1))] == ["3"]
    assert db.fetch_events(EventQuery(app_id="b" * 24)) == []


def test_a_failed_commit_stores_nothing(db: DuckDBStore) -> None:
    good = batch(ev(id="ok"))
    bad = AppendBatch(events=event_rows(APP, [ev(id="bad", count=None)]))  # NOT NULL count
    with pytest.raises(duckdb.Error):
        db.commit_group([good, bad])
    assert db.count_rows("events") == 0
    assert db.count_rows("event_ids") == 0  # the id was not burnt: a retry can store it
    assert db.commit_group([good]) == [AppendResult(1, 0)]


async def test_group_commit_shares_one_transaction_between_concurrent_requests(
    db: DuckDBStore,
) -> None:
    groups: list[int] = []

    def commit(batches):  # type: ignore[no-untyped-def]
        groups.append(len(batches))
        return db.commit_group([sealed.batch for sealed in batches])

    committer = GroupCommitter(commit, max_delay=0.05)
    results = await asyncio.gather(
        *(committer.append(seal(batch(ev(id=f"e{i}")))) for i in range(20))
    )
    await committer.close()
    assert results == [AppendResult(1, 0)] * 20
    assert sum(groups) == 20 and len(groups) < 20
    assert db.count_rows("events") == 20


async def test_group_commit_answers_only_after_the_commit(db: DuckDBStore) -> None:
    committed = asyncio.Event()
    order: list[str] = []

    def commit(batches):  # type: ignore[no-untyped-def]
        result = db.commit_group([sealed.batch for sealed in batches])
        order.append("committed")
        return result

    committer = GroupCommitter(commit, max_delay=0)
    await committer.append(seal(batch(ev(id="x"))))
    order.append("answered")
    committed.set()
    await committer.close()
    assert order == ["committed", "answered"]


async def test_a_failed_group_is_reported_to_every_caller(db: DuckDBStore) -> None:
    def commit(batches):  # type: ignore[no-untyped-def]
        raise duckdb.IOException("disk full")

    committer = GroupCommitter(commit, max_delay=0.01)
    results = await asyncio.gather(
        *(committer.append(seal(batch(ev(id=f"e{i}")))) for i in range(3)), return_exceptions=True
    )
    await committer.close()
    assert all(isinstance(r, StoreUnavailable) for r in results)


async def test_embedded_store_round_trip(store: EmbeddedStore) -> None:
    assert await store.append(batch(ev(id="e1"))) == AppendResult(1, 0)
    assert await store.append(batch(ev(id="e1"))) == AppendResult(0, 1)
    rows = await store.fetch_events(EventQuery(app_id=APP))
    assert [r["id"] for r in rows] == ["e1"]
    await store.check_writable()


def test_the_store_caps_duckdb_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """256 MB unless TALLY_STORE_MEMORY says otherwise; a size DuckDB cannot read is refused."""

    for name in "abc":
        (tmp_path / name).mkdir()

    def limit(store: DuckDBStore) -> str:
        [(value,)] = store.conn.execute("SELECT current_setting('memory_limit')").fetchall()
        store.close()
        return value

    monkeypatch.delenv("TALLY_STORE_MEMORY", raising=False)
    assert limit(DuckDBStore(tmp_path / "a")) == "244.1 MiB"  # 256 MB
    monkeypatch.setenv("TALLY_STORE_MEMORY", "1GB")
    assert limit(DuckDBStore(tmp_path / "b")) == "953.6 MiB"
    monkeypatch.setenv("TALLY_STORE_MEMORY", "lots")
    with pytest.raises(ValueError, match="TALLY_STORE_MEMORY='lots' is not a memory size"):
        DuckDBStore(tmp_path / "c")
