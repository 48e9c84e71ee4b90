"""Moves acknowledged batches from the journal into DuckDB, behind the replies.

One thread takes everything waiting (up to ``max_rows``) and stores it in one DuckDB transaction
that also records the last journal record it holds (``DuckDBStore.commit_group``'s ``position``):
while one load runs, the next gathers, so the load size follows the ingest rate, and a checkpoint
DuckDB runs inside a commit delays loading, not replies. When more than ``max_pending`` rows wait,
the journal writer waits for room (``wait_for_room``): replies slow down rather than memory grow.
Waiting batches are kept as their journal records (msgpack: ~190 bytes for a typical row against
~910 as Python objects) and decoded just before their load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from tally import metrics
from tally.store.duckdb_store import DuckDBStore
from tally.store.wire import decode_batch

log = logging.getLogger("tally.store")

MAX_LOAD_ROWS = 20_000
"""Rows in one load at most. Larger loads held more memory at once (the rows decoded, then as
Arrow) and sustained less: 2 workers under full batch load, A/B, 100,000 -> 20,000: 606-614 ->
690-701 requests/s, the store process's peak 472 -> 451-464 MB (BENCHMARKS.md)."""
MAX_PENDING_ROWS = 200_000
LOAD_INTERVAL = 0.05
"""Under steady ingest, a load starts at most this often (unless a read is waiting for it): each
load has a fixed cost of several milliseconds in DuckDB, and a loader busy with back-to-back tiny
loads also keeps taking the GIL from the threads that answer clients."""
RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0)
"""Waits between attempts when a load fails (a full disk, say); the last one repeats, so loading
resumes within 2 s of the cause going away."""


class Record(NamedTuple):
    """One journaled batch waiting for its load."""

    seq: int
    payload: bytes
    """The batch as the journal holds it (``wire.encode_batch``)."""
    rows: int
    """Its weight in the load and pending limits (at least 1: a batch of only discard counts
    still costs a load)."""


class JournalLoader:
    def __init__(
        self,
        db: DuckDBStore,
        on_loaded: Callable[[int], None],
        *,
        on_failed: Callable[[], None] = lambda: None,
        loaded_seq: int,
        max_rows: int = MAX_LOAD_ROWS,
        max_pending: int = MAX_PENDING_ROWS,
    ) -> None:
        self.db = db
        self.on_loaded = on_loaded
        """Called from the loader thread with the sequence number loaded through."""
        self.on_failed = on_failed
        """Called from the loader thread when a load fails (``error`` is set)."""
        self.loaded_seq = loaded_seq
        self.max_rows = max_rows
        self.max_pending = max_pending
        self.error: Exception | None = None
        """The last load's failure, until a load succeeds."""
        self._pending: deque[Record] = deque()
        self._pending_rows = 0
        self._changed = threading.Condition()
        self._closing = False
        self._hurry = False
        self._last_start = 0.0
        self._thread = threading.Thread(target=self._run, name="tally-load", daemon=True)
        self._thread.start()

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def wait_for_room(self) -> None:
        with self._changed:
            while self._pending_rows >= self.max_pending and not self._closing:
                self._changed.wait()

    def wait_loaded(self, seq: int, timeout: float) -> bool:
        """Block until records up to ``seq`` are loaded; False if ``timeout`` passed first."""
        with self._changed:
            if self.loaded_seq < seq:
                self._hurry = True
                self._changed.notify_all()
            return self._changed.wait_for(lambda: self.loaded_seq >= seq, timeout)

    def offer(self, records: list[Record]) -> None:
        """Batches just made durable, in sequence order."""
        with self._changed:
            self._pending.extend(records)
            self._pending_rows += sum(record.rows for record in records)
            self._changed.notify_all()

    def hurry(self) -> None:
        """Someone waits to read what is pending: load it without waiting for company."""
        with self._changed:
            self._hurry = True
            self._changed.notify_all()

    def _take(self) -> list[Record] | None:
        with self._changed:
            while not self._pending and not self._closing:
                self._changed.wait()
            # After an idle spell load at once; right after another load, wait for company
            # (LOAD_INTERVAL), unless a read is waiting or there is a full load already.
            while (
                not self._hurry
                and not self._closing
                and self._pending_rows < self.max_rows
                and (due := self._last_start + LOAD_INTERVAL - time.monotonic()) > 0
            ):
                self._changed.wait(due)
            if not self._pending:
                return None
            self._hurry = False
            self._last_start = time.monotonic()
            taken, rows = [], 0
            while self._pending and (not taken or rows + self._pending[0].rows <= self.max_rows):
                record = self._pending.popleft()
                taken.append(record)
                rows += record.rows
            return taken

    def _run(self) -> None:
        attempt = 0
        records: list[Record] | None = None
        while True:
            if records is None:
                records = self._take()
                if records is None:
                    return
            try:
                self._load(records)
            except Exception as exc:  # the records stay durable in the journal; try again
                self.error = exc
                if self._closing and attempt >= 2:
                    log.exception("loading the journal failed; the next start loads the rest")
                    return
                self.on_failed()
                wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                log.exception("loading the journal into DuckDB failed; retrying in %ss", wait)
                time.sleep(wait)
                continue
            attempt, self.error = 0, None
            rows = sum(record.rows for record in records)
            with self._changed:
                self._pending_rows -= rows
                self.loaded_seq = records[-1].seq
                self._changed.notify_all()
            records = None
            self.on_loaded(self.loaded_seq)

    def _load(self, records: list[Record]) -> None:
        started = time.perf_counter()
        batches = [decode_batch(record.payload) for record in records]
        results = self.db.commit_group(batches, position=records[-1].seq)
        metrics.LOAD_SECONDS.observe(time.perf_counter() - started)
        metrics.LOAD_ROWS.observe(sum(batch.rows for batch in batches))
        late = sum(result.duplicates for result in results)
        if late:
            metrics.EVENTS_LATE_DUPLICATE.inc(late)

    def close(self) -> None:
        """Load what is waiting, then stop. If loading keeps failing, stop anyway after a few
        attempts: the journal keeps the records, and the next start loads them."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
