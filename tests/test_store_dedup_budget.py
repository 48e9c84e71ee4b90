"""The embedded store's dedup index stays within its budget of ids (``store.event_ids``): a busy
store's index once grew until DuckDB's memory limit refused every load, and ingest stalled."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pytest

from stored_events import batch, ev
from support import ServerFactory, create_app
from tally import metrics
from tally.sink import AppendResult
from tally.store.duckdb_store import DuckDBStore
from tally.store.event_ids import BYTES_PER_ID, MEMORY_SHARE, SLACK, memory_limit_bytes


def _forgotten() -> float:
    return metrics.DEDUP_IDS_FORGOTTEN._value.get()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("256MB", 256_000_000), ("1GB", 1_000_000_000), ("64MiB", 64 * 2**20), ("900kB", 900_000)],
)
def test_duckdbs_memory_limit_is_read_in_bytes(setting: str, expected: int) -> None:
    conn = duckdb.connect(config={"memory_limit": setting})
    # DuckDB reports the limit rounded to a tenth of its unit
    assert memory_limit_bytes(conn) == pytest.approx(expected, rel=1e-3)
    conn.close()


def test_the_budget_defaults_to_a_quarter_of_the_store_memory(data_dir: Path) -> None:
    store = DuckDBStore(data_dir, memory_limit="256MB")
    budget = store.event_ids.budget(store.conn)
    assert budget == pytest.approx(256e6 / MEMORY_SHARE / BYTES_PER_ID, rel=1e-3)
    store.close()
    store = DuckDBStore(data_dir, memory_limit="256MB", dedup_max_ids=5_000)
    assert store.event_ids.budget(store.conn) == 5_000
    store.close()


def test_the_index_keeps_the_newest_ids_within_its_budget(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DuckDBStore(data_dir, dedup_max_ids=1_000)
    store.migrate()
    before = _forgotten()
    with caplog.at_level(logging.WARNING, logger="tally.store"):
        for group in range(6):
            events = [ev(id=f"g{group}-{i}") for i in range(400)]
            assert store.commit_group([batch(*events)]) == [AppendResult(400, 0)]
            assert store.count_rows("event_ids") <= 1_000 * 1.1
    # 2,400 ids came; past 1,100 the index forgets the oldest loads until at most 1,000 are left
    assert store.count_rows("event_ids") == 800
    assert _forgotten() - before == 1_600
    warnings = [r for r in caplog.records if "TALLY_DEDUP_MAX_IDS" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every trim
    # a retry of a recent id is still a duplicate; one of the forgotten ids is stored again
    assert store.commit_group([batch(ev(id="g5-0"))]) == [AppendResult(0, 1)]
    assert store.commit_group([batch(ev(id="g0-0"))]) == [AppendResult(1, 0)]
    assert store.count_rows("events") == 2_401
    assert store.count_rows("event_ids") == 801
    store.close()


def test_a_load_larger_than_the_budget_is_kept_until_the_next(data_dir: Path) -> None:
    store = DuckDBStore(data_dir, dedup_max_ids=1_000)
    store.migrate()
    store.commit_group([batch(*(ev(id=f"big-{i}") for i in range(1_500)))])
    assert store.count_rows("event_ids") == 1_500  # the newest load is never cut
    store.commit_group([batch(*(ev(id=f"next-{i}") for i in range(10)))])
    assert store.count_rows("event_ids") == 10
    store.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_budget_reaches_the_store_of_a_real_server(
    servers: ServerFactory, data_dir: Path, workers: int
) -> None:
    """``TALLY_DEDUP_MAX_IDS`` (one worker) and ``--dedup-max-ids`` (two: the store in its own
    process): three loads of 500 ids against a budget of 1,000 forget the first."""
    app = create_app(data_dir)
    setting = {"env": {"TALLY_DEDUP_MAX_IDS": "1000"}}
    if workers == 2:
        setting = {"options": ["--dedup-max-ids", "1000"]}
    server = servers.start(data_dir, workers=workers, **setting)  # type: ignore[arg-type]
    with httpx.Client(timeout=30) as client:
        for load in range(3):
            events = [{"id": f"{load}-{i}", "name": "signup", "user": "u"} for i in range(500)]
            assert server.ingest(client, app, events).status_code == 200
            # a read waits for the loader: one load per request
            stored = server.read_events(client, app, limit=1_000)
            assert len(stored) == min(1_000, 500 * (load + 1))
        scraped = client.get(f"{server.url}/metrics").text
    assert re.search(r"^tally_dedup_ids_forgotten_total 500\.0$", scraped, re.M), scraped
    assert "Traceback" not in server.output()


def test_the_window_and_the_budget_both_apply(data_dir: Path) -> None:
    store = DuckDBStore(data_dir, dedup_window=timedelta(days=7), dedup_max_ids=1_000)
    store.migrate()
    store.commit_group([batch(*(ev(id=f"old-{i}") for i in range(10)))])
    store.conn.execute("UPDATE event_ids SET seen_at = seen_at - INTERVAL 8 DAY")
    store.event_ids._last_prune = store.event_ids._last_prune.min  # the hourly prune is due
    store.commit_group([batch(ev(id="new"))])
    assert store.count_rows("event_ids") == 1  # under budget: only the window forgot
    store.close()


def test_many_client_ids_never_exhaust_the_store_memory(data_dir: Path) -> None:
    """2.4M client ids, 20,000 a load, into the index of a store allowed 128 MB: without the budget
    the index outgrew the limit near 1.8M ids and every later load failed ("failed to pin
    block"), stalling ingest. The index alone, on the store's own tables (the events of real
    loads would make the test slow), with a checkpoint every 10 loads, as a store's events bring
    one every ~200,000 (``CHECKPOINT_THRESHOLD``)."""
    store = DuckDBStore(data_dir, memory_limit="128MB")
    store.migrate()
    index, cur = store.event_ids, store.conn.cursor()
    rng = np.random.default_rng(7)
    for load in range(120):
        digests = pa.table(
            {
                "dedup_hi": pa.array(rng.integers(0, 2**63, 20_000, dtype=np.uint64)),
                "dedup_lo": pa.array(rng.integers(0, 2**63, 20_000, dtype=np.uint64)),
            }
        )
        cur.execute("BEGIN")
        keep = index.admit(cur, digests, datetime.now(UTC).replace(tzinfo=None))
        cur.execute("COMMIT")
        index.prune(cur, datetime.now(UTC).replace(tzinfo=None))
        assert keep is not None and keep.all()
        if load % 10 == 9:
            store.conn.execute("CHECKPOINT")
    assert store.count_rows("event_ids") <= index.budget(cur) * SLACK
    cur.close()
    store.close()


def test_a_failed_prune_does_not_fail_the_committed_load(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prune runs after the group's commit: if it raised, the loader would take the group
    as not loaded and store it again (events without ids twice)."""
    store = DuckDBStore(data_dir)
    store.migrate()

    def fail(*args: object) -> None:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(store.event_ids, "prune", fail)
    assert store.commit_group([batch(ev(), ev(id="client"))]) == [AppendResult(2, 0)]
    monkeypatch.undo()
    assert store.commit_group([batch(ev(id="client"))]) == [AppendResult(0, 1)]
    assert store.count_rows("events") == 2
    store.close()
