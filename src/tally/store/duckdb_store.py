"""The embedded event store: one DuckDB file, written by one process, one commit per group."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from tally import metrics
from tally.ids import uuid7
from tally.migrations import pending
from tally.model import LINK_EVENT, LINK_PREVIOUS
from tally.query.duckdb_sql import PERSON_IDS_CTE, in_person
from tally.sink import AppendBatch, AppendResult
from tally.store.base import EXPORT_COLUMNS, Deletion, ExportQuery, QueryTooLarge
from tally.store.columns import FAILED_COLUMNS, events_table, failed_table
from tally.store.duckdb_schema import COMPONENT, LINK_KEY_SQL, MIGRATIONS
from tally.store.event_ids import EventIds
from tally.store.known_links import KnownLinks, Links
from tally.store.query import (
    DiscardCount,
    EventCursor,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)
from tally.store.rows import EVENT_COLUMN_NAMES
from tally.store.time_windows import first_window, newest_first
from tally.utc import aware

log = logging.getLogger("tally.store")
_STORED = ", ".join(f'"{name}"' for name in EVENT_COLUMN_NAMES)
_FAILED = ", ".join(name for name, _ in FAILED_COLUMNS)
_EXPORTED = ", ".join(f'"{name}"' for name in EXPORT_COLUMNS)
_json = msgspec.json.Decoder()


# Links an event states: its device and its customer; or, for a link event, the previous id and
# the event's own id; each once, and only if not stored already (found by its key: the table has
# no index). The stored keys matching the load's are found first, a scan probing a hash table of
# the load's few links: `NOT EXISTS` against the table itself built its hash table on every stored
# link (3,000 events restating links at 3M links: 135 ms -> 18 ms).
_LINK_SQL = f"""
INSERT INTO identity_links
WITH n AS (
    SELECT app_id, from_id, to_id, min(received_at) AS linked_at, {LINK_KEY_SQL} AS link_key
    FROM (
        SELECT app_id, device_id AS from_id, user_id AS to_id, received_at FROM incoming_events
        WHERE user_id IS NOT NULL AND device_id IS NOT NULL AND user_id <> device_id
        UNION ALL
        SELECT app_id, json_extract_string(properties, '$.{LINK_PREVIOUS}'),
               coalesce(user_id, device_id), received_at
        FROM incoming_events
        WHERE name = '{LINK_EVENT}' AND internal
          AND json_extract_string(properties, '$.{LINK_PREVIOUS}') IS NOT NULL
    ) WHERE from_id <> to_id
    GROUP BY app_id, from_id, to_id
), stored AS (
    SELECT link_key FROM identity_links WHERE link_key IN (SELECT link_key FROM n)
)
SELECT n.* FROM n WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.link_key = n.link_key)
"""


_PERSON_CTE = "WITH RECURSIVE " + PERSON_IDS_CTE

MEMORY_ENV = "TALLY_STORE_MEMORY"
DEFAULT_MEMORY_LIMIT = "256MB"
"""DuckDB's own default is 80% of the machine's memory, and its buffer cache grows towards it as
the file grows (the 10-minute soak in BENCHMARKS.md). Queries at 10M events run as fast with
256 MB (the operating system's page cache still holds the file); beyond it DuckDB spills to
``events.duckdb.tmp`` next to the file."""
ROW_GROUP_ROWS = 122_880
"""DuckDB's row group: a scan bounded on ``time`` reads at least one (the feed's first window is
sized to about one, ``time_windows.first_window``)."""
CHECKPOINT_THRESHOLD = "64MB"
"""How much write-ahead log DuckDB gathers before it checkpoints (its default: 16 MB, ~55,000
events). Frequent small checkpoints cost more per event than fewer large ones: 1M events loaded
20,000 at a time took 6.2-6.8 µs of CPU an event at 16 MB, 4.5 at 32 MB and 4.3 at 64 MB
(BENCHMARKS.md). Tally's journal, not DuckDB's log, makes events durable; a bigger log only means
up to ~220,000 events (0.3 s) to replay when the store opens after a crash."""


_DISCARD_SQL = """
INSERT INTO discarded_events VALUES (?, ?, ?, ?)
ON CONFLICT (app_id, rule, day) DO UPDATE SET count = count + excluded.count
"""


def _discards(batches: Sequence[AppendBatch]) -> list[tuple[str, str, date, int]]:
    """One row per (app, rule) of the whole group, so the upsert runs a few statements."""
    totals: Counter[tuple[str, str]] = Counter()
    for batch in batches:
        for app_id, rule, count in batch.discarded:
            totals[(app_id, rule)] += count
    today = datetime.now(UTC).date()
    return [(app_id, rule, today, count) for (app_id, rule), count in totals.items()]


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    """Roll back after a failure, if there is still a transaction: a COMMIT that failed (a full
    disk) has ended it already, and the original error is the one to report."""
    with contextlib.suppress(duckdb.TransactionException):
        cur.execute("ROLLBACK")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _arrow_reader(relation: duckdb.DuckDBPyRelation, batch_rows: int) -> pa.RecordBatchReader:
    """A streaming reader of the relation's rows (DuckDB 1.4 renamed the method)."""
    to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    return to_reader(batch_rows)


def _arrow_table(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    to_table = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return to_table()


def _export_sql(
    query: ExportQuery, after: EventCursor | None = None, *, select: str = _EXPORTED
) -> tuple[str, list[Any]]:
    """The export's rows in (time, received_at, id) order, after ``after`` if given."""
    clauses = ["app_id = ?"]
    params: list[Any] = [query.app_id]
    prefix, prefix_params = "", []
    if query.user is not None:
        prefix, prefix_params = _PERSON_CTE, [query.app_id, query.app_id, query.user]
        clauses.append(in_person())
    if query.since is not None:
        clauses.append("time >= ?")
        params.append(_naive(query.since))
    if query.until is not None:
        clauses.append("time < ?")
        params.append(_naive(query.until))
    if after is not None:
        # The plain bound on time lets DuckDB skip row groups (zone maps) the row bound cannot.
        clauses.append("time >= ? AND (time, received_at, id) > (?, ?, ?)")
        params += [_naive(after.time), _naive(after.time), _naive(after.received_at), after.id]
    sql = f"{prefix} SELECT {select} FROM events WHERE {' AND '.join(clauses)}"
    return sql, prefix_params + params


_ORDER = " ORDER BY time, received_at, id"
_NEWEST_FIRST = "ORDER BY time DESC, received_at DESC, id DESC"
_FOUND = "rowid, time, received_at, id"
"""What a feed's page is chosen by: the row, and its place in ``_NEWEST_FIRST`` order."""


def _person_ids(cur: duckdb.DuckDBPyConnection, app_id: str, user: str) -> set[str]:
    """``user`` and every id linked to it, directly or through others: breadth first, one query
    per step (each compares one column with constants, which DuckDB pushes into the scan; the
    recursive ``PERSON_IDS_CTE`` joins the whole link table at every step, a few times slower)."""
    ids, frontier = {user}, [user]
    while frontier:
        marks = ", ".join("?" * len(frontier))
        rows = cur.execute(
            f"SELECT to_id FROM identity_links WHERE app_id = ? AND from_id IN ({marks}) "
            f"UNION ALL SELECT from_id FROM identity_links WHERE app_id = ? AND to_id IN ({marks})",
            [app_id, *frontier, app_id, *frontier],
        ).fetchall()
        frontier = [found for (found,) in rows if found not in ids]
        ids.update(frontier)
    return ids


class DuckDBStore:
    """Synchronous core of the embedded store. ``commit_group`` is called from one writer thread."""

    FILE_NAME = "events.duckdb"

    def __init__(
        self,
        data_dir: Path,
        dedup_window: timedelta = timedelta(days=7),
        memory_limit: str | None = None,
        dedup_max_ids: int = 0,
    ) -> None:
        """``dedup_max_ids``: client ids the dedup index holds at most (0: as many as a quarter
        of the memory limit holds, ``store.event_ids``)."""
        self.path = data_dir / self.FILE_NAME
        limit = memory_limit or os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY_LIMIT
        self.memory_limit = limit
        self.conn = self._connect()
        self._writer = self.conn.cursor()
        self._lock = threading.Lock()
        self._reopen_failed = False
        self.event_ids = EventIds(dedup_window, dedup_max_ids)
        self.known_links = KnownLinks()
        self.on_commit: Callable[[pa.Table], None] | None = None
        """Told what each commit stored (the live stream), after the commit."""

    def _connect(self) -> duckdb.DuckDBPyConnection:
        limit = self.memory_limit
        try:
            return duckdb.connect(
                str(self.path),
                config={"memory_limit": limit, "checkpoint_threshold": CHECKPOINT_THRESHOLD},
            )
        except (duckdb.InvalidInputException, duckdb.ParserException) as exc:
            raise ValueError(f"{MEMORY_ENV}={limit!r} is not a memory size: {exc}") from None

    def invalidated(self, error: duckdb.Error) -> bool:
        """Whether ``error`` means the file must be opened again: DuckDB invalidated it, or an
        attempt to open it again failed."""
        return isinstance(error, duckdb.FatalException) or self._reopen_failed

    def reopen_after(self, error: duckdb.Error, broken: duckdb.DuckDBPyConnection) -> None:
        """Open the file again after DuckDB invalidated the connection ``broken`` (a checkpoint
        that failed for lack of memory or disk): until then every statement fails with "the
        database must be restarted". Opening replays DuckDB's log, so what was committed stays;
        a transaction that was not is gone (the journal still holds its events). A no-op when
        another thread reopened it already."""
        with self._lock:
            if self.conn is not broken:
                return
            log.error("DuckDB failed and invalidated the store; opening it again: %s", error)
            with contextlib.suppress(duckdb.Error):
                self.conn.close()
            self._reopen_failed = True  # until it opens: the closed connection fails every call
            self.conn = self._connect()
            self._reopen_failed = False
            self._writer = self.conn.cursor()
            self.event_ids.forget_counts()
            self.known_links.forget()
            metrics.STORE_REOPENED.inc()

    # schema

    def schema_version(self) -> int:
        exists = self.conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tally_schema'"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = self.conn.execute(
            "SELECT version FROM tally_schema WHERE component = ?", [COMPONENT]
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> list[int]:
        current = self.schema_version()
        todo = pending(MIGRATIONS, current)
        if not todo:
            return []
        conn = self.conn.cursor()
        conn.execute("BEGIN")
        try:
            if current == 0:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS tally_schema "
                    "(component VARCHAR PRIMARY KEY, version INTEGER NOT NULL)"
                )
                conn.execute("INSERT INTO tally_schema VALUES (?, 0)", [COMPONENT])
            for migration in todo:
                migration.apply(conn)
                conn.execute(
                    "UPDATE tally_schema SET version = ? WHERE component = ?",
                    [migration.version, COMPONENT],
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()
        return [m.version for m in todo]

    # writes

    def commit_group(
        self, batches: Sequence[AppendBatch], position: int | None = None
    ) -> list[AppendResult]:
        """Store several requests' batches in one transaction; one result per batch.

        A client-supplied id is stored once: the first occurrence in the group wins, and an id
        already in ``event_ids`` (within the dedup window) counts as a duplicate. ``position``:
        the journal record these batches end with, recorded in the same transaction.

        If DuckDB has invalidated the file, it is opened again (``reopen_after``); with a
        ``position``, a group that committed before the failure is not stored again and one
        that did not is tried once more.
        """
        conn = self.conn
        try:
            with self._lock:
                return self._commit_group(batches, position)
        except duckdb.Error as error:
            if not self.invalidated(error):
                raise
            self.reopen_after(error, conn)
            if position is None:
                raise  # whether the group committed cannot be told: the caller decides
        if self.journal_position() >= position:
            # The group committed; what failed and invalidated the store came after (DuckDB's
            # automatic checkpoint, or another writer's): do not store it twice. (Its events
            # count as accepted: which were duplicates is not known any more.)
            log.warning("the load up to journal record %d was stored before the failure", position)
            return [AppendResult(accepted=len(batch.events), duplicates=0) for batch in batches]
        with self._lock:  # it did not: once more, on the file opened again
            return self._commit_group(batches, position)

    def journal_position(self) -> int:
        """The last journal record stored (0: none)."""
        cur = self.conn.cursor()
        try:
            row = cur.execute("SELECT loaded_seq FROM journal_state").fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def newest_client_ids(self, limit: int) -> list[tuple[int, int]]:
        """The dedup digests seen last, newest first (to warm ``store.recent_ids``)."""
        cur = self.conn.cursor()
        try:
            return EventIds.newest(cur, limit)
        finally:
            cur.close()

    def _commit_group(
        self, batches: Sequence[AppendBatch], position: int | None
    ) -> list[AppendResult]:
        # Columns are built once for the whole group (see store.columns). DuckDB reads the local
        # Arrow tables below by name (replacement scans), which is cheaper than register().
        rows: list[tuple] = []
        owner_sizes: list[int] = []
        failed_rows: list[tuple] = []
        for batch in batches:
            rows.extend(batch.events)
            owner_sizes.append(len(batch.events))
            failed_rows.extend(batch.failed)
        owner = np.repeat(np.arange(len(batches), dtype=np.int32), owner_sizes)

        accepted = np.zeros(len(batches), dtype=np.int64)
        duplicates = np.zeros(len(batches), dtype=np.int64)
        stored: pa.Table | None = None
        links: Links | None = frozenset()
        cur = self._writer
        cur.execute("BEGIN")
        try:
            if rows:
                incoming_events = events_table(rows)
                keep = self.event_ids.admit(cur, incoming_events, _utcnow())
                if keep is None:
                    accepted += np.bincount(owner, minlength=len(batches))
                else:
                    incoming_events = incoming_events.filter(pa.array(keep))
                    accepted += np.bincount(owner[keep], minlength=len(batches))
                    duplicates += np.bincount(owner[~keep], minlength=len(batches))
                if incoming_events.num_rows:
                    stored = incoming_events
                    cur.execute(
                        f"INSERT INTO events ({_STORED}) SELECT {_STORED} FROM incoming_events"
                    )
                    links = KnownLinks.stated(incoming_events)
                    if not self.known_links.all_known(links):
                        cur.execute(_LINK_SQL)
            if discarded := _discards(batches):
                cur.executemany(_DISCARD_SQL, discarded)
            if failed_rows:
                incoming_failed = failed_table(failed_rows)  # noqa: F841 - read by DuckDB
                cur.execute(
                    f"INSERT INTO failed_events ({_FAILED}) SELECT {_FAILED} FROM incoming_failed"
                )
            if position is not None:
                cur.execute("UPDATE journal_state SET loaded_seq = ?", [position])
            cur.execute("COMMIT")
        except BaseException:
            _rollback(cur)
            raise
        self.known_links.stored(links)
        if stored is not None and self.on_commit is not None:
            try:
                self.on_commit(stored)
            except Exception:  # the live view must never fail a commit
                log.exception("live stream publish failed")
        try:
            self.event_ids.prune(self._writer, _utcnow())
        except Exception:  # the group is committed: a failure here must not make it load again
            _rollback(self._writer)
            log.exception("pruning the dedup index failed; the next load tries again")
        return [
            AppendResult(accepted=int(a), duplicates=int(d))
            for a, d in zip(accepted, duplicates, strict=True)
        ]

    # reads

    def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Newest first, in growing time windows (``time_windows``), in one snapshot."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                return self._fetch_events(cur, query)
            finally:
                cur.execute("ROLLBACK")
        finally:
            cur.close()

    def _fetch_events(
        self, cur: duckdb.DuckDBPyConnection, query: EventQuery
    ) -> list[dict[str, Any]]:
        clauses = ["app_id = ?"]
        params: list[Any] = [query.app_id]
        names = [*(query.names or ()), *([query.name] if query.name is not None else [])]
        if names:
            clauses.append(f"name IN ({', '.join('?' * len(names))})")
            params.extend(names)
        person: list[str] | None = None
        if query.user is not None:
            # The person: this id and every id linked to it, directly or through others. Found
            # first, so each scan compares a column with constants, which DuckDB pushes down.
            person = sorted(_person_ids(cur, query.app_id, query.user))
        # (answered from the table's statistics: well under a millisecond at 10M events)
        stats = cur.execute(
            "SELECT max(time), count(*), min(received_at), max(received_at) FROM events"
        ).fetchone()
        if stats is None or stats[0] is None:
            return []
        first = first_window(stats[1], stats[3] - stats[2], ROW_GROUP_ROWS)
        if query.before is not None:
            cursor = query.before
            clauses.append("(time, received_at, id) < (?, ?, ?)")
            params += [_naive(cursor.time), _naive(cursor.received_at), cursor.id]
            anchor = _naive(cursor.time)
        else:
            # Events stamped in the future (a device's wrong clock) fall in the first window.
            anchor = min(stats[0], _utcnow())
        since = _naive(query.since) if query.since is not None else None
        where = " AND ".join(clauses)

        def read(lo: datetime | None, hi: datetime | None, wanted: int) -> list[tuple[Any, ...]]:
            bounds, bound_params = "", []
            if lo is not None:
                bounds += " AND time >= ?"
                bound_params.append(lo)
            if hi is not None:
                bounds += " AND time < ?"
                bound_params.append(hi)
            # The page's rows found first, then read whole (by row id, stable in the snapshot):
            # only the few found are decompressed, not every row of the window.
            if person is None:
                found = f"SELECT {_FOUND} FROM events WHERE {where}{bounds}"
                found_params = [*params, *bound_params]
            else:
                # One scan per column, each with its IN list pushed into the scan: an OR of the
                # two is filtered after reading both columns of every row (the rare customer's
                # feed: 315 -> 185 ms over 10M events).
                marks = ", ".join("?" * len(person))
                found = " UNION ".join(
                    f"SELECT {_FOUND} FROM events WHERE {where} AND {column} IN ({marks}){bounds}"
                    for column in ("user_id", "device_id")
                )
                found_params = [*params, *person, *bound_params] * 2
            return cur.execute(
                f"SELECT {_STORED} FROM events WHERE rowid IN (SELECT rowid FROM ({found}) "
                f"{_NEWEST_FIRST} LIMIT ?) {_NEWEST_FIRST}",
                [*found_params, wanted],
            ).fetchall()

        return self._event_records(newest_first(anchor, since, query.limit, read, first))

    @staticmethod
    def _event_records(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Rows of ``_STORED``'s columns as event records: properties decoded, times aware."""
        out = []
        for row in rows:
            record = dict(zip(EVENT_COLUMN_NAMES, row, strict=True))
            record["properties"] = (
                _json.decode(record["properties"]) if record["properties"] else {}
            )
            record["undefined_properties"] = record["undefined_properties"] or []
            record["coerced_properties"] = record["coerced_properties"] or []
            for field in ("time", "received_at"):
                record[field] = record[field].replace(tzinfo=UTC)
            out.append(record)
        return out

    def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        clauses = ["app_id = ?"]
        params: list[Any] = [query.app_id]
        if query.ids is not None:
            if not query.ids:
                return []
            clauses.append(f"id IN ({', '.join('?' * len(query.ids))})")
            params.extend(query.ids)
        for column in ("reason", "name"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("received_at >= ?")
            params.append(_naive(query.since))
        if query.until is not None:
            clauses.append("received_at < ?")
            params.append(_naive(query.until))
        if query.replayed is not None:
            clauses.append("replayed_at IS NOT NULL" if query.replayed else "replayed_at IS NULL")
        columns = (
            "id, received_at, protocol, reason, message, name, event_index, "
            "replay IS NOT NULL AS replayable, replayed_at, replayed_as"
        )
        if query.with_payload:
            columns += ", payload, replay"
        params.append(query.limit)
        cur = self.conn.cursor()
        try:
            result = cur.execute(
                f"SELECT {columns} FROM failed_events WHERE {' AND '.join(clauses)} "
                "ORDER BY received_at DESC, id LIMIT ?",
                params,
            )
            names = [d[0] for d in result.description]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        finally:
            cur.close()
        for row in rows:
            row["received_at"] = aware(row["received_at"])
            row["replayed_at"] = aware(row["replayed_at"])
        return [FailedRecord(**row) for row in rows]

    def mark_replayed(self, app_id: str, replayed: Sequence[ReplayedEvent]) -> None:
        if not replayed:
            return
        with self._lock:
            cur = self._writer
            cur.execute("BEGIN")
            try:
                cur.executemany(
                    "UPDATE failed_events SET replayed_at = ?, replayed_as = ? "
                    "WHERE app_id = ? AND id = ?",
                    [(_utcnow(), r.event_id, app_id, r.failed_id) for r in replayed],
                )
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise

    def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        cur = self.conn.cursor()
        try:
            result = cur.execute(
                "SELECT rule, day, count FROM discarded_events WHERE app_id = ? AND day >= ? "
                "ORDER BY day DESC, rule",
                [app_id, since or date(1970, 1, 1)],
            )
            return [DiscardCount(rule=r, day=d, count=c) for r, d, c in result.fetchall()]
        finally:
            cur.close()

    def run_sql(self, sql: str, params: list[Any]) -> list[tuple]:
        """A read-only analytics query (compiled by ``tally.query``) on its own cursor."""
        cur = self.conn.cursor()
        try:
            return cur.execute(sql, params).fetchall()
        except duckdb.OutOfMemoryException:
            raise QueryTooLarge(
                f"the query needs more memory than the store may use ({self.memory_limit}, "
                f"{MEMORY_ENV}); narrow its period, filters or breakdown, or raise {MEMORY_ENV}"
            ) from None
        finally:
            cur.close()

    # exports

    def export_reader(
        self, query: ExportQuery, batch_rows: int
    ) -> tuple[duckdb.DuckDBPyConnection, pa.RecordBatchReader]:
        """A cursor and a reader streaming the export in batches, oldest first. The caller reads
        it (one thread at a time) and closes the cursor; nothing is held beyond a batch."""
        sql, params = _export_sql(query)
        cur = self.conn.cursor()
        try:
            return cur, _arrow_reader(cur.sql(sql + _ORDER, params=params), batch_rows)
        except BaseException:
            cur.close()
            raise

    def export_page(self, query: ExportQuery, after: EventCursor | None, limit: int) -> pa.Table:
        """One page of the export: the first ``limit`` rows after ``after`` (keyset paging, for
        a client of the store process)."""
        sql, params = _export_sql(query, after)
        cur = self.conn.cursor()
        try:
            return _arrow_table(cur.sql(f"{sql}{_ORDER} LIMIT ?", params=[*params, limit]))
        finally:
            cur.close()

    def count_events(self, query: ExportQuery) -> int:
        sql, params = _export_sql(query, select="count(*)")
        cur = self.conn.cursor()
        try:
            row = cur.execute(sql, params).fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def stored_ids(
        self, app_id: str, ids: Sequence[str], since: datetime, until: datetime
    ) -> set[str]:
        if not ids:
            return set()
        cur = self.conn.cursor()
        try:
            rows = cur.execute(
                "SELECT DISTINCT id FROM events WHERE app_id = ? AND time BETWEEN ? AND ? "
                "AND id IN (SELECT unnest(?::VARCHAR[]))",
                [app_id, _naive(since), _naive(until), list(ids)],
            ).fetchall()
        finally:
            cur.close()
        return {row[0] for row in rows}

    # deletions

    def delete_person(self, app_id: str, user: str) -> Deletion:
        """Delete the person's events (whatever their time) and identity links, and record it,
        in one transaction."""
        with self._lock:
            cur = self._writer
            cur.execute("BEGIN")
            try:
                found = cur.execute(
                    f"{_PERSON_CTE} SELECT id FROM person ORDER BY id", [app_id, app_id, user]
                ).fetchall()
                ids = [row[0] for row in found]
                events = cur.execute(
                    "DELETE FROM events WHERE app_id = ? AND (user_id IN (SELECT unnest(?)) "
                    "OR device_id IN (SELECT unnest(?)))",
                    [app_id, ids, ids],
                ).fetchone()
                self.known_links.forget()
                links = cur.execute(
                    "DELETE FROM identity_links WHERE app_id = ? AND (from_id IN "
                    "(SELECT unnest(?)) OR to_id IN (SELECT unnest(?)))",
                    [app_id, ids, ids],
                ).fetchone()
                record = Deletion(
                    id=uuid7(),
                    app_id=app_id,
                    kind="person",
                    person=user,
                    ids=ids,
                    events_deleted=int(events[0]) if events else 0,
                    links_deleted=int(links[0]) if links else 0,
                    requested_at=datetime.now(UTC),
                )
                self._record_deletion(cur, record)
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
        return record

    def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        """Delete the app's events whose time is before ``before``; recorded if any were."""
        with self._lock:
            cur = self._writer
            cur.execute("BEGIN")
            try:
                deleted = cur.execute(
                    "DELETE FROM events WHERE app_id = ? AND time < ?", [app_id, _naive(before)]
                ).fetchone()
                record = Deletion(
                    id=uuid7(),
                    app_id=app_id,
                    kind="retention",
                    events_deleted=int(deleted[0]) if deleted else 0,
                    cutoff=before.astimezone(UTC),
                    requested_at=datetime.now(UTC),
                )
                if record.events_deleted:
                    self._record_deletion(cur, record)
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
        return record

    @staticmethod
    def _record_deletion(cur: duckdb.DuckDBPyConnection, record: Deletion) -> None:
        cur.execute(
            "INSERT INTO deletions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                record.id,
                record.app_id,
                record.kind,
                record.person,
                record.ids,
                record.events_deleted,
                record.links_deleted,
                _naive(record.cutoff) if record.cutoff is not None else None,
                _naive(record.requested_at),
            ],
        )

    def deletions(self, app_id: str) -> list[Deletion]:
        """The app's deletion records, newest first."""
        cur = self.conn.cursor()
        try:
            result = cur.execute(
                "SELECT id, app_id, kind, person, ids, events_deleted, links_deleted, cutoff, "
                "requested_at FROM deletions WHERE app_id = ? ORDER BY requested_at DESC, id",
                [app_id],
            )
            names = [d[0] for d in result.description]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        finally:
            cur.close()
        for row in rows:
            row["ids"] = row["ids"] or []
            row["cutoff"] = aware(row["cutoff"])
            row["requested_at"] = aware(row["requested_at"])
        return [Deletion(**row) for row in rows]

    def count_rows(self, table: str) -> int:
        if table not in {"events", "failed_events", "event_ids"}:
            raise ValueError(table)
        cur = self.conn.cursor()
        try:
            row = cur.execute(f"SELECT count(*) FROM {table}").fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def check_writable(self) -> None:
        """Raise if the store cannot take a write (a tiny transaction that changes nothing)."""
        with self._lock:
            cur = self._writer
            cur.execute("BEGIN")
            try:
                cur.execute(
                    "UPDATE tally_schema SET version = version WHERE component = ?", [COMPONENT]
                )
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise

    def close(self) -> None:
        with self._lock:
            self._writer.close()
            self.conn.close()
