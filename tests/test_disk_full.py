"""A full disk, for real: the data folder on a small tmpfs the test mounts, filled to the last byte.

Ingest must answer 503 with Retry-After and acknowledge nothing it could not store, keep serving
reads, and take events again as soon as there is room, without a restart. Mounting needs root (or
CAP_SYS_ADMIN); where the machine forbids it the tests are skipped and say why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest

from tally import metrics
from tally.catalog import NewApp
from tally.http.services import Services
from tally.model import Event
from tally.sink import AppendBatch
from tally.store.duckdb_store import DuckDBStore
from tally.store.embedded import EmbeddedStore
from tally.store.query import EventQuery
from tally.store.rows import event_rows

URL = "/api/v1/events"
APP = "d" * 24
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DISK_BYTES = 32 * 1024 * 1024


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The data folder on its own 32 MB tmpfs (overrides conftest's ``data_dir``)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        path = mount / "data"
        path.mkdir()
        yield path
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):  # big writes, then the last bytes
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def events(*ids: str) -> dict:
    return {"events": [{"name": "page_view", "id": i, "user": "u1"} for i in ids]}


async def test_a_full_disk_answers_503_stores_nothing_and_recovers_without_a_restart(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, data_dir: Path
) -> None:
    key = {"x-tally-key": new_app.app.app_key}
    before = await client.post(URL, json=events("before"), headers=key)
    assert before.status_code == 200 and before.json()["accepted"] == 1

    filler = fill(data_dir)
    # A file's last page may still have room: requests are acknowledged while their records
    # fit, then refused. Each answer is one or the other, never anything else.
    acked, refused = ["before"], []
    for attempt in range(200):
        ids = [f"during-{attempt}-{k}" for k in range(20)]
        response = await client.post(URL, json=events(*ids), headers=key)
        if response.status_code == 200:
            assert response.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
            acked += ids
            continue
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
        refused += ids
        if len(refused) >= 60:
            break
    assert refused, "the full disk never refused a request"
    ready = await client.get("/readyz")
    assert ready.status_code == 503, ready.text

    # reads go on while the disk is full (from what is loaded)
    stored = await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=5000))
    assert {e["id"] for e in stored} <= set(acked)

    filler.unlink()
    # loading resumes by itself; every acknowledged event is there, nothing refused is
    services.store.loaded(timeout=30)  # type: ignore[attr-defined]
    stored = await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=5000))
    assert sorted(e["id"] for e in stored) == sorted(acked)
    # the refused requests, sent again, are taken
    again = await client.post(URL, json=events(*refused[:20]), headers=key)
    assert again.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


def _page_views(count: int, start: int = 0) -> AppendBatch:
    rows = [
        Event(
            index=0,
            protocol="native",
            name="page_view",
            id=f"e{i}",
            time=NOW,
            received_at=NOW,
            count=1,
            user_id=f"u{i}",
            properties={"padding": "x" * 200},
        )
        for i in range(start, start + count)
    ]
    return AppendBatch(events=event_rows(APP, rows))


def _count(db: DuckDBStore) -> int:
    row = db.conn.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


def test_a_checkpoint_on_a_full_disk_no_longer_stops_the_store_for_good(data_dir: Path) -> None:
    """DuckDB invalidates a database whose checkpoint fails (here for want of disk): every later
    statement fails until the file is opened again. The store opens it again by itself, keeps
    what was committed, and stores a group whose commit went through only once."""
    db = DuckDBStore(data_dir)
    db.migrate()
    db.commit_group([_page_views(20_000)], position=1)
    filler = fill(data_dir)
    with pytest.raises(duckdb.FatalException, match="checkpoint"):
        db.conn.execute("CHECKPOINT")
    with pytest.raises(duckdb.FatalException, match="invalidated"):
        db.conn.execute("SELECT 1")
    reopened = metrics.STORE_REOPENED._value.get()
    with pytest.raises(duckdb.Error):  # opened again, but the disk is still full
        db.commit_group([_page_views(100, start=20_000)], position=2)
    assert metrics.STORE_REOPENED._value.get() == reopened + 1
    filler.unlink()

    results = db.commit_group([_page_views(100, start=20_000)], position=2)
    assert results[0].accepted == 100 and _count(db) == 20_100
    assert db.journal_position() == 2
    db.close()


def test_a_group_committed_before_the_store_was_invalidated_is_not_stored_twice(
    data_dir: Path,
) -> None:
    db = DuckDBStore(data_dir)
    db.migrate()
    db.commit_group([_page_views(20_000)], position=1)
    filler = fill(data_dir)
    with pytest.raises(duckdb.FatalException):
        db.conn.execute("CHECKPOINT")
    filler.unlink()
    # the loader retries journal record 1 (it could not tell the commit went through)
    assert db.commit_group([_page_views(20_000)], position=1)[0].accepted == 20_000
    assert _count(db) == 20_000 and db.journal_position() == 1
    db.close()


async def test_reads_open_an_invalidated_store_again(data_dir: Path, new_app: NewApp) -> None:
    store = EmbeddedStore(data_dir)
    await store.append(_page_views(20_000))
    store.loaded(timeout=30)
    filler = fill(data_dir)
    with pytest.raises(duckdb.FatalException):
        store.db.conn.execute("CHECKPOINT")
    filler.unlink()
    found = await store.fetch_events(EventQuery(app_id=APP, limit=5))
    assert len(found) == 5
    assert await store.run_sql("SELECT count(*) FROM events", []) == [(20_000,)]
    await store.close()


async def test_ingest_goes_on_after_a_checkpoint_failed_on_the_full_disk(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, data_dir: Path
) -> None:
    """The whole path: DuckDB's checkpoint fails on the full disk while requests come in
    (invalidating the database); once there is room, the loader stores every acknowledged event
    and the server reads and ingests again, without a restart."""
    key = {"x-tally-key": new_app.app.app_key}
    store = services.store
    assert isinstance(store, EmbeddedStore)
    acked: list[str] = []
    for batch in range(20):
        ids = [f"before-{batch}-{k}" for k in range(100)]
        response = await client.post(URL, json=events(*ids), headers=key)
        assert response.status_code == 200
        acked += ids
    store.loaded(timeout=30)
    filler = fill(data_dir)
    with pytest.raises(duckdb.FatalException):
        store.db.conn.execute("CHECKPOINT")  # as DuckDB's own checkpoint would, on a full disk
    for attempt in range(20):
        ids = [f"during-{attempt}-{k}" for k in range(5)]
        response = await client.post(URL, json=events(*ids), headers=key)
        assert response.status_code in (200, 503), response.text
        if response.status_code == 200:
            acked += ids
    filler.unlink()

    store.loaded(timeout=30)
    stored = await store.fetch_events(EventQuery(app_id=new_app.app.id, limit=5000))
    assert sorted(e["id"] for e in stored) == sorted(acked)
    after = await client.post(URL, json=events("after"), headers=key)
    assert after.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert (await client.get("/readyz")).status_code == 200
