"""The embedded store's journal: acknowledged batches survive until DuckDB has them, exactly once.

Crashes are simulated by writing journal files the way a killed store leaves them (records DuckDB
never got, a record cut short); tests/e2e/test_durability.py SIGKILLs a real server.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from stored_events import APP, batch, ev, failed
from tally.sink import AppendResult, StoreUnavailable
from tally.store import journal_loader
from tally.store.duckdb_store import DuckDBStore
from tally.store.embedded import EmbeddedStore
from tally.store.journal import MAGIC, Journal, JournalError
from tally.store.query import EventQuery
from tally.store.rows import failed_rows
from tally.store.wire import encode_batch, seal


def _migrated(data_dir: Path) -> None:
    db = DuckDBStore(data_dir)
    db.migrate()
    db.close()


def _names(data_dir: Path) -> list[str]:
    db = DuckDBStore(data_dir)
    try:
        rows = db.conn.execute("SELECT name FROM events ORDER BY name").fetchall()
    finally:
        db.close()
    return [row[0] for row in rows]


def test_records_round_trip_in_order_with_sequence_numbers(data_dir: Path) -> None:
    journal = Journal(data_dir)
    assert journal.append([b"one", b"two"]) == 2
    assert journal.append([b"three"]) == 3
    journal.close()
    again = Journal(data_dir)
    assert list(again.replay(after=0)) == [(1, b"one"), (2, b"two"), (3, b"three")]
    assert list(Journal(data_dir).replay(after=2)) == [(3, b"three")]


def test_a_torn_tail_is_cut_off_and_what_came_before_is_kept(data_dir: Path) -> None:
    journal = Journal(data_dir)
    journal.append([b"kept"])
    journal.close()
    [(_, path)] = journal.segments()
    whole = path.stat().st_size
    with path.open("ab") as handle:  # a record header and half its payload: a crash mid-write
        handle.write(b"\x10\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00half")
    assert list(Journal(data_dir).replay(after=0)) == [(1, b"kept")]
    assert path.stat().st_size == whole
    reopened = Journal(data_dir)
    list(reopened.replay(after=0))
    assert reopened.append([b"next"]) == 2  # numbering goes on after the kept record


def test_a_foreign_file_is_refused(data_dir: Path) -> None:
    journal = Journal(data_dir)
    (journal.dir / f"{1:020d}.log").write_bytes(b"something else entirely")
    with pytest.raises(JournalError):
        list(journal.replay(after=0))


def test_loaded_files_are_deleted_when_a_new_one_starts(data_dir: Path) -> None:
    journal = Journal(data_dir, segment_bytes=len(MAGIC) + 1)  # one record per file
    for payload in (b"a", b"b", b"c"):
        journal.append([payload])
    assert len(journal.segments()) == 3
    journal.loaded_through = 2
    journal.append([b"d"])  # starts a fourth file; the first two hold only loaded records
    assert [first for first, _ in journal.segments()] == [3, 4]


async def test_a_start_loads_what_the_journal_holds_beyond_duckdb_exactly_once(
    data_dir: Path,
) -> None:
    _migrated(data_dir)
    journal = Journal(data_dir)
    journal.append([encode_batch(batch(ev("first"))), encode_batch(batch(ev("second")))])
    journal.close()
    saved = {path.name: path.read_bytes() for _, path in journal.segments()}

    store = EmbeddedStore(data_dir)  # the crashed store's records are loaded before it serves
    assert sorted(r["name"] for r in await store.fetch_events(EventQuery(app_id=APP))) == [
        "first",
        "second",
    ]
    await store.close()
    assert Journal(data_dir).segments() == []  # all loaded: nothing left to replay

    # The same records again (as if the files had not been deleted): DuckDB's position says
    # they are in, so nothing is stored twice (these events have server-made ids: no dedup).
    for name, data in saved.items():
        (journal.dir / name).write_bytes(data)
    store = EmbeddedStore(data_dir)
    await store.close()
    assert _names(data_dir) == ["first", "second"]


async def test_an_acknowledged_batch_is_in_the_journal_before_duckdb_has_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(data_dir)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    real_commit = store.db.commit_group

    def slow_commit(batches, position=None):  # type: ignore[no-untyped-def]
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return real_commit(batches, position)

    monkeypatch.setattr(store.db, "commit_group", slow_commit)
    assert await store.append(batch(ev("acked", id="c1"))) == AppendResult(1, 0)
    assert store.db.count_rows("events") == 0  # answered, not loaded yet
    [(_, payload)] = list(Journal(data_dir).replay(after=0))
    assert payload == encode_batch(batch(ev("acked", id="c1")))
    reading = asyncio.ensure_future(store.fetch_events(EventQuery(app_id=APP)))
    await asyncio.sleep(0.05)
    assert not reading.done()  # a read waits for what was acknowledged before it
    release.set()
    assert [r["name"] for r in await reading] == ["acked"]
    await store.close()


async def test_a_retry_is_a_duplicate_before_and_after_loading_and_after_a_restart(
    data_dir: Path,
) -> None:
    store = EmbeddedStore(data_dir)
    assert await store.append(batch(ev(id="r1"), ev(id="r1"))) == AppendResult(1, 1)
    assert await store.append(batch(ev(id="r1"))) == AppendResult(0, 1)
    store.loaded()
    assert await store.append(batch(ev(id="r1"))) == AppendResult(0, 1)
    await store.close()
    store = EmbeddedStore(data_dir)
    assert await store.append(batch(ev(id="r1"))) == AppendResult(0, 1)
    assert len(await store.fetch_events(EventQuery(app_id=APP))) == 1
    await store.close()


async def test_a_repeat_older_than_the_recent_ids_is_still_stored_once(data_dir: Path) -> None:
    store = EmbeddedStore(data_dir)
    store.recent.capacity = 2
    await store.append(batch(ev(id="old")))
    for i in range(5):
        await store.append(batch(ev(id=f"newer-{i}")))
    # The reply cannot tell any more (answered as accepted); the loader still stores it once.
    assert await store.append(batch(ev(id="old"))) == AppendResult(1, 0)
    ids = [r["id"] for r in await store.fetch_events(EventQuery(app_id=APP))]
    assert sorted(ids) == ["newer-0", "newer-1", "newer-2", "newer-3", "newer-4", "old"]
    await store.close()


async def test_a_failing_load_keeps_the_events_and_is_reported_until_it_succeeds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_loader, "RETRY_SECONDS", (0.05,))
    store = EmbeddedStore(data_dir)
    store.db.conn.execute("ALTER TABLE events RENAME TO events_moved")
    assert await store.append(batch(ev("kept"))) == AppendResult(1, 0)  # durable in the journal
    for _ in range(200):
        if store.loader.error is not None:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(StoreUnavailable, match="cannot load its journal"):
        await store.check_writable()
    # while loading fails, reads answer from what is loaded; changes to stored data are refused
    assert await store.discard_counts(APP) == []
    with pytest.raises(StoreUnavailable, match="cannot load its journal"):
        await store.delete_person(APP, "someone")
    store.db.conn.execute("ALTER TABLE events_moved RENAME TO events")
    store.loaded(timeout=10)  # the next attempt succeeds, without a restart
    assert [r["name"] for r in await store.fetch_events(EventQuery(app_id=APP))] == ["kept"]
    await store.check_writable()
    await store.close()


async def test_a_sealed_batch_is_journaled_as_sent_unless_it_holds_duplicates(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store process journals an HTTP worker's encoded batch without decoding it; only a
    batch with duplicates is decoded, stripped of them (failed rows kept) and encoded again."""
    store = EmbeddedStore(data_dir)
    loading = threading.Event()  # the journal is read while its records wait to be loaded
    real_commit = store.db.commit_group

    def held_commit(batches, position=None):  # type: ignore[no-untyped-def]
        loading.wait(10)
        return real_commit(batches, position)

    monkeypatch.setattr(store.db, "commit_group", held_commit)
    first = seal(batch(ev("a", id="c1"), ev("b", id="c2"), ev("no id")))
    assert await store.append_sealed(first) == AppendResult(3, 0)
    failed_row = failed_rows([failed()])
    retry = batch(ev("a", id="c1"), ev("c", id="c3"), ev("c again", id="c3"))
    retry.failed.extend(failed_row)
    assert await store.append_sealed(seal(retry)) == AppendResult(1, 2)
    only_duplicates = seal(batch(ev("b", id="c2")))
    assert await store.append_sealed(only_duplicates) == AppendResult(0, 1)
    records = [payload for _, payload in Journal(data_dir).replay(after=0)]
    kept = batch(ev("c", id="c3"))
    kept.failed.extend(failed_row)
    assert records == [first.payload, encode_batch(kept)]  # nothing journaled for the third
    loading.set()
    await store.close()
    assert _names(data_dir) == ["a", "b", "c", "no id"]
