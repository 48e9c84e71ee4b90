"""The embedded store's dedup index: ``event_ids``, the 128-bit digests of the client event ids
seen lately, one row each, with when they were first seen.

The table's primary key is a DuckDB ART index, which DuckDB keeps in memory, inside the store's
memory limit (``TALLY_STORE_MEMORY``): about 50-70 bytes an id. Bounded only by time (the dedup
window), a busy store outgrows the limit (at 256 MB: ~3.8M ids, a week of ~6 events a second) and
from then on every load fails, and ingest stalls behind the journal. So the index also holds at
most ``max_ids`` ids, the newest: by default as many as fit in a quarter of the store's memory.
When more arrive, the oldest are forgotten before their window ends, and counted
(``tally_dedup_ids_forgotten_total``): a retry of such an id is stored again.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa

from tally import metrics

log = logging.getLogger("tally.store")

BYTES_PER_ID: Final = 64
"""Memory an id costs in the index (measured with DuckDB 2.0: 50 bytes an id at 1M ids growing,
67 held steady while the oldest are deleted as new ones come)."""
MEMORY_SHARE: Final = 4
"""By default the index may take one part in this many of the store's memory limit."""
SLACK: Final = 1.1
"""The index is trimmed back to ``max_ids`` once it holds this many times as many, so trims come
once per tenth of the budget, not after every load. Forgetting costs ~1.2 µs an id, most of it in
the commit that takes the ids out of the index (100,000 of 1.1M: 25 ms to delete, 90 to commit;
finding the cut, 5)."""
PRUNE_EVERY: Final = timedelta(hours=1)
"""Ids older than the window are forgotten at most this often."""

_SIZE = re.compile(r"([0-9.]+)\s*(bytes|KiB|MiB|GiB|TiB|PiB)")
_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}


def memory_limit_bytes(conn: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's memory limit in bytes (it reports it as text such as ``244.1 MiB``)."""
    row = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    match = _SIZE.fullmatch(str(row[0]).strip()) if row else None
    if match is None:
        raise ValueError(f"DuckDB reports its memory limit as {row!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def default_max_ids(memory_bytes: int) -> int:
    """How many ids a quarter of ``memory_bytes`` holds (at least 1,000)."""
    return max(1_000, memory_bytes // MEMORY_SHARE // BYTES_PER_ID)


class EventIds:
    """Admits a group's client ids into the index and keeps the index within its window and
    budget. Used from the store's one writer thread."""

    def __init__(self, window: timedelta, max_ids: int = 0) -> None:
        """``max_ids`` 0: as many as a quarter of the memory limit holds (``default_max_ids``),
        worked out when first needed (not on open: at a tiny memory limit that one query could be
        what fails)."""
        self.window = window
        self._max_ids = max_ids
        self._held: int | None = None
        """Ids in the index: counted on first use and after each trim or prune, added to per
        group between (a group rolled back after its ids were counted makes a trim come early)."""
        self._last_prune = datetime.min
        self._warned = False

    def admit(
        self, cur: duckdb.DuckDBPyConnection, events: pa.Table, now: datetime
    ) -> np.ndarray | None:
        """Mask of rows to store, or None when no row carries a client id: a row is kept unless
        its id is in the index already or earlier in ``events``. Adds the new ids to the index
        (in the caller's transaction)."""
        hi = events.column("dedup_hi")
        if hi.null_count == len(hi):
            return None
        incoming_ids = pa.table(  # noqa: F841 - read by DuckDB
            {
                "seq": pa.array(np.arange(events.num_rows, dtype=np.int64)),
                "hi": hi,
                "lo": events.column("dedup_lo"),
            }
        )
        new_seqs = cur.execute(
            """
            WITH firsts AS (
                SELECT hi, lo, min(seq) AS seq FROM incoming_ids
                WHERE hi IS NOT NULL GROUP BY hi, lo
            ),
            inserted AS (
                INSERT OR IGNORE INTO event_ids SELECT hi, lo, ? FROM firsts RETURNING hi, lo
            )
            SELECT f.seq FROM firsts f JOIN inserted i USING (hi, lo)
            """,
            [now],
        ).fetchnumpy()["seq"]
        self._held = self.held(cur) + len(new_seqs)
        keep = np.asarray(hi.is_null().to_numpy(zero_copy_only=False), dtype=bool).copy()
        keep[np.asarray(new_seqs, dtype=np.int64)] = True
        return keep

    def forget_counts(self) -> None:
        """Count the index again when next needed (the store was opened again)."""
        self._held = None

    def prune(self, cur: duckdb.DuckDBPyConnection, now: datetime) -> None:
        """Forget ids past the window (at most once per ``PRUNE_EVERY``) and, when the index
        holds more than its budget allows, the oldest ids beyond it. Outside any transaction."""
        if self.held(cur) > self.budget(cur) * SLACK:
            self._trim(cur)
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        cur.execute("DELETE FROM event_ids WHERE seen_at < ?", [now - self.window])
        self._held = _count(cur)

    def budget(self, cur: duckdb.DuckDBPyConnection) -> int:
        """The most ids the index keeps."""
        if not self._max_ids:
            self._max_ids = default_max_ids(memory_limit_bytes(cur))
        return self._max_ids

    def held(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Ids in the index (counted once, then kept up to date)."""
        if self._held is None:
            self._held = _count(cur)
        return self._held

    def _trim(self, cur: duckdb.DuckDBPyConnection) -> None:
        # Every id of one load shares its time: the cut forgets whole loads, the oldest, until
        # at most ``max_ids`` are left, but never the newest load (which may alone be larger).
        before = self.held(cur)
        cur.execute(
            "DELETE FROM event_ids WHERE seen_at <= "
            "(SELECT seen_at FROM event_ids ORDER BY seen_at DESC LIMIT 1 OFFSET ?) "
            "AND seen_at < (SELECT max(seen_at) FROM event_ids)",
            [self.budget(cur)],
        )
        self._held = _count(cur)
        forgotten = max(0, before - self._held)
        metrics.DEDUP_IDS_FORGOTTEN.inc(forgotten)
        if forgotten and not self._warned:
            self._warned = True
            oldest = cur.execute("SELECT min(seen_at) FROM event_ids").fetchone()
            log.warning(
                "the dedup index holds its budget of %d client ids (TALLY_DEDUP_MAX_IDS), so "
                "ids are now forgotten before the dedup window ends (it reaches back to %s UTC); "
                "raise TALLY_DEDUP_MAX_IDS and TALLY_STORE_MEMORY to remember them longer",
                self.budget(cur),
                oldest[0] if oldest else None,
            )

    @staticmethod
    def newest(cur: duckdb.DuckDBPyConnection, limit: int) -> list[tuple[int, int]]:
        """The digests seen last, newest first."""
        return cur.execute(
            "SELECT hi, lo FROM event_ids ORDER BY seen_at DESC LIMIT ?", [limit]
        ).fetchall()


def _count(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute("SELECT count(*) FROM event_ids").fetchone()
    return int(row[0]) if row else 0
