"""Synchronous core of the ClickHouse event store: each method runs its queries on the calling
thread's connection (``ClickHouseStore`` calls them from a thread pool).

Reads see each event once: they use ``FINAL`` (or ``DISTINCT``), so copies that
ReplacingMergeTree has not merged yet are collapsed at read time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from clickhouse_driver.errors import ErrorCodes, ServerException

from tally.ids import uuid7
from tally.migrations import pending
from tally.sink import AppendBatch, AppendResult
from tally.store.base import EXPORT_COLUMNS, Deletion, ExportQuery, QueryTooLarge
from tally.store.clickhouse_client import (
    ClickHouseUrl,
    Connections,
    Raw,
    create_database,
    positional,
    wait_for_mutations,
)
from tally.store.clickhouse_persons import (
    PLACEHOLDER_ROW,
    PersonIds,
    Persons,
    TableParam,
    persons_of,
)
from tally.store.clickhouse_rows import (
    INSERT_COLUMNS,
    as_datetime,
    event_record,
    has_client_id,
    identity_links,
    insert_columns,
    naive_micros,
    row_key,
    today,
)
from tally.store.clickhouse_schema import (
    COMPONENT,
    DAY,
    MIGRATIONS,
    Ddl,
    Layout,
    quote,
    schema_table_sql,
)
from tally.store.columns import EVENT_COLUMNS, events_table
from tally.store.query import (
    DiscardCount,
    EventCursor,
    EventQuery,
    FailedQuery,
    FailedRecord,
    ReplayedEvent,
)
from tally.store.rows import EVENT_COLUMN_NAMES
from tally.store.time_windows import newest_first

log = logging.getLogger("tally.store")

IN_CHUNK = 2000
"""Ids per ``IN (...)`` list: a query must stay under the server's max_query_size (256 KiB)."""
_STORED = ", ".join(quote(name) for name in EVENT_COLUMN_NAMES)
_EXPORTED = ", ".join(quote(name) for name in EXPORT_COLUMNS)
_EXPORT_TYPES = dict(EVENT_COLUMNS)
_LISTS = ("undefined_properties", "coerced_properties")


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[tuple[Any, ...]]:
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])


def _now_micros() -> int:
    return naive_micros(datetime.now(UTC))


@contextlib.contextmanager
def within_memory() -> Iterator[None]:
    """A read past ClickHouse's per-query memory limit as ``QueryTooLarge`` (a 400 over HTTP):
    asking again will not help, a narrower query may."""
    try:
        yield
    except ServerException as exc:
        if exc.code != ErrorCodes.MEMORY_LIMIT_EXCEEDED:
            raise
        raise QueryTooLarge(
            "the query needs more memory than ClickHouse lets one query use "
            "(max_memory_usage); narrow its period, filters or breakdown, or raise the limit"
        ) from None


DATE_RANGE = (date(1970, 1, 1), date(2106, 2, 7))
"""The days a ClickHouse ``Date`` holds (two bytes of days since 1970); outside it ``toDate``
wraps around."""


def time_bound(op: str, name: str, value: datetime, params: dict[str, Any]) -> str:
    """``time <op> value``, plus the same bound on the sort key's day: 18.16 does not derive
    the key's ``toDate(...)`` range from a condition on ``time`` (only partitions), so without it
    a time range within an app would read all of the app's rows."""
    params[name] = naive_micros(value)
    day = value.astimezone(UTC).date() if value.tzinfo else value.date()
    if not DATE_RANGE[0] <= day < DATE_RANGE[1]:
        return f"time {op} %({name})s"  # a Date cannot hold it: the time bound alone is right
    params[f"{name}_day"] = day
    day_op = ">=" if op.startswith(">") else "<="
    return f"time {op} %({name})s AND {DAY} {day_op} toDate(%({name}_day)s)"


class ClickHouseDB:
    """The tables of one database, on one server or (``cluster``) behind Distributed tables."""

    def __init__(
        self,
        url: str | ClickHouseUrl,
        *,
        cluster: str | None = None,
        dedup_window: timedelta = timedelta(days=7),
    ) -> None:
        parsed = ClickHouseUrl.parse(url) if isinstance(url, str) else url
        if cluster is not None:
            parsed = dataclasses.replace(parsed, cluster=cluster)
        self.url = parsed
        self.layout = Layout(parsed.database, parsed.cluster)
        self.dedup_window = dedup_window
        create_database(parsed)
        self.conn = Connections(parsed)
        self.on_commit: Callable[[pa.Table], None] | None = None
        """Told what each append stored (the live stream), after the insert."""
        # On a cluster an insert returns only once every shard has its rows (acknowledged means
        # stored), not when the Distributed table has queued them.
        self._insert_settings = {"insert_distributed_sync": 1} if parsed.cluster else {}

    def _t(self, name: str) -> str:
        return self.layout.table(name)

    # schema

    def schema_version(self) -> int:
        [(exists,)] = self.conn.execute(
            "SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'tally_schema'",
            {"db": self.layout.database},
        )
        if not exists:
            return 0
        [(version,)] = self.conn.execute(
            f"SELECT max(version) FROM {self._t('tally_schema')} WHERE component = %(c)s",
            {"c": COMPONENT},
        )
        return int(version or 0)

    def migrate(self) -> list[int]:
        """Run the migrations this database has not had; refuse a schema newer than the code."""
        todo = pending(MIGRATIONS, self.schema_version())
        if not todo:
            return []
        ddl = Ddl(self.layout, execute=self.conn.execute)
        ddl.run(schema_table_sql(self.layout))
        for migration in todo:
            migration.apply(ddl)
            self.conn.execute(
                f"INSERT INTO {self._t('tally_schema')} SELECT %(c)s, %(v)s, %(d)s, now()",
                {"c": COMPONENT, "v": migration.version, "d": migration.description},
            )
        return [m.version for m in todo]

    # writes

    def append(
        self,
        batch: AppendBatch,
        *,
        check_stored: bool = True,
        failed_ids: Sequence[str] | None = None,
    ) -> AppendResult:
        """Store one batch: events, the identity links they state, failed events, discards.

        Not one transaction (ClickHouse has none): events go first, so a batch cut off half-way
        and sent again stores its events once (see ``_new_rows`` and the ReplacingMergeTree key).
        The log's loaders pass ``check_stored=False`` (the log dropped retries already; a
        redelivered copy is collapsed by the key) and ``failed_ids`` (ids that stay the same when
        a batch is redelivered, so a failed event replaces itself).
        """
        rows, duplicates = self._new_rows(batch.events, check_stored=check_stored)
        if rows:
            self.conn.execute(
                f"INSERT INTO {self._t('events')} ({', '.join(map(quote, INSERT_COLUMNS))}) VALUES",
                insert_columns(rows),
                columnar=True,
                settings=self._insert_settings,
            )
            if links := identity_links(rows):
                self.conn.execute(
                    f"INSERT INTO {self._t('identity_links')} VALUES",
                    links,
                    settings=self._insert_settings,
                )
        if batch.failed:
            self.conn.execute(
                f"INSERT INTO {self._t('failed_events')} (id, app_id, received_at, protocol, "
                "reason, message, payload, name, event_index, replay, version) VALUES",
                [
                    (failed_ids[i] if failed_ids else uuid7(), *row, 0)
                    for i, row in enumerate(batch.failed)
                ],
                settings=self._insert_settings,
            )
        if batch.discarded:
            day = today()
            self.conn.execute(
                f"INSERT INTO {self._t('discarded_events')} VALUES",
                [(app_id, rule, day, count) for app_id, rule, count in batch.discarded],
                settings=self._insert_settings,
            )
        if rows and self.on_commit is not None:
            try:
                self.on_commit(events_table(rows))
            except Exception:  # the live view must never fail an append
                log.exception("live stream publish failed")
        return AppendResult(accepted=len(rows), duplicates=duplicates)

    def insert_event_columns(self, columns: Sequence[Sequence[Any]]) -> None:
        """Bulk load (the query benchmark): events given as columns in ``INSERT_COLUMNS`` order,
        inserted as they are in one statement. Unlike ``append``: no dedup check, no identity
        links (insert those into ``identity_links`` yourself), no live stream."""
        self.conn.execute(
            f"INSERT INTO {self._t('events')} ({', '.join(map(quote, INSERT_COLUMNS))}) VALUES",
            columns,
            columnar=True,
            settings=self._insert_settings,
        )

    def _new_rows(
        self, rows: Sequence[tuple], *, check_stored: bool = True
    ) -> tuple[list[tuple], int]:
        """The rows to insert and how many were duplicates.

        Best effort: a client-supplied id counts as a duplicate when it came earlier in the batch
        (the first wins) or was stored within the dedup window (``stored_at``; one lookup per app
        in the batch, which reads the app's ``id`` and ``stored_at`` columns). Two loaders
        inserting the same id at once both store it; the ReplacingMergeTree key (app, day, name,
        person, id) is what guarantees that such copies are counted once (reads use FINAL).
        """
        seen: set[tuple[str, str]] = set()
        first: list[tuple] = []
        claimed: dict[str, list[str]] = {}
        for row in rows:
            if has_client_id(row):
                key = row_key(row)
                if key in seen:
                    continue
                seen.add(key)
                claimed.setdefault(key[0], []).append(key[1])
            first.append(row)
        if not claimed or not check_stored:
            return first, len(rows) - len(first)
        window = int(self.dedup_window.total_seconds())
        stored: set[tuple[str, str]] = set()
        for app_id, ids in claimed.items():
            for chunk in _chunks(ids):
                found = self.conn.execute(
                    f"SELECT DISTINCT id FROM {self._t('events')} WHERE app_id = %(app)s "
                    "AND id IN %(ids)s AND stored_at >= now() - %(window)s",
                    {"app": app_id, "ids": chunk, "window": window},
                )
                stored.update((app_id, event_id) for (event_id,) in found)
        kept = [r for r in first if not (has_client_id(r) and row_key(r) in stored)]
        return kept, len(rows) - len(kept)

    def mark_replayed(self, app_id: str, replayed: Sequence[ReplayedEvent]) -> None:
        """Insert a newer version of each failed event's row with its replay state (the table is
        a ReplacingMergeTree on the version, so no mutation is needed)."""
        for chunk in _chunks(list(replayed)):
            self.conn.execute(
                f"INSERT INTO {self._t('failed_events')} SELECT id, app_id, received_at, protocol, "
                "reason, message, payload, name, event_index, replay, toNullable(%(at)s), "
                "toNullable(transform(id, %(failed)s, %(events)s, '')), version + 1 "
                f"FROM {self._t('failed_events')} FINAL WHERE app_id = %(app)s AND id IN %(ids)s",
                {
                    "at": _now_micros(),
                    "failed": [r.failed_id for r in chunk],
                    "events": [r.event_id for r in chunk],
                    "app": app_id,
                    "ids": tuple(r.failed_id for r in chunk),
                },
                settings=self._insert_settings,
            )

    # reads

    def person_ids(self, app_id: str, user: str) -> list[str]:
        """The id and every id linked to it, directly or through others. Old servers have no
        recursive CTE, so the links are walked from here, one query per hop."""
        ids = {user}
        frontier = [user]
        while frontier:
            found: set[str] = set()
            for chunk in _chunks(frontier):
                rows = self.conn.execute(
                    f"SELECT from_id, to_id FROM {self._t('identity_links')} "
                    "WHERE app_id = %(app)s AND (from_id IN %(ids)s OR to_id IN %(ids)s)",
                    {"app": app_id, "ids": chunk},
                )
                found.update(value for row in rows for value in row)
            frontier = sorted(found - ids)
            ids.update(frontier)
        return sorted(ids)

    def _person_clause(self, app_id: str, user: str, params: dict[str, Any]) -> str:
        params["person"] = tuple(self.person_ids(app_id, user))
        return "(user_id IN %(person)s OR device_id IN %(person)s)"

    def fetch_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Newest first, in growing time windows (``time_windows``, as the embedded store): each
        window's bound on the sort key's day skips the rest of the app's rows, FINAL included."""
        clauses = ["app_id = %(app)s"]
        params: dict[str, Any] = {"app": query.app_id}
        names = [*(query.names or ()), *([query.name] if query.name is not None else [])]
        if names:
            clauses.append("name IN %(names)s")
            params["names"] = tuple(names)
        if query.user is not None:
            clauses.append(self._person_clause(query.app_id, query.user, params))
        if query.before is not None:
            clauses.append(time_bound("<=", "b_time", query.before.time, params))
            clauses.append("(time, received_at, id) < (%(b_time)s, %(b_received)s, %(b_id)s)")
            params.update(
                b_received=naive_micros(query.before.received_at),
                b_id=query.before.id,
            )
            anchor = query.before.time
        else:
            with within_memory():
                [(newest, stored)] = self.conn.execute(
                    f"SELECT max(time), count() FROM {self._t('events')} WHERE app_id = %(app)s",
                    {"app": query.app_id},
                )
            if not stored:
                return []
            # events stamped in the future (a device's wrong clock) fall in the first window
            anchor = min(as_datetime(newest), datetime.now(UTC))

        def read(lo: datetime | None, hi: datetime | None, wanted: int) -> list[dict[str, Any]]:
            bounded, values = list(clauses), {**params, "limit": wanted}
            if lo is not None:
                bounded.append(time_bound(">=", "lo", lo, values))
            if hi is not None:
                bounded.append(time_bound("<", "hi", hi, values))
            with within_memory():
                rows = self.conn.execute(
                    f"SELECT {_STORED} FROM {self._t('events')} FINAL "
                    f"WHERE {' AND '.join(bounded)} "
                    "ORDER BY time DESC, received_at DESC, id DESC LIMIT %(limit)s",
                    values,
                )
            return [event_record(EVENT_COLUMN_NAMES, row) for row in rows]

        return newest_first(anchor, query.since, query.limit, read)

    def fetch_failed(self, query: FailedQuery) -> list[FailedRecord]:
        clauses = ["app_id = %(app)s"]
        params: dict[str, Any] = {"app": query.app_id, "limit": query.limit}
        if query.ids is not None:
            if not query.ids:
                return []
            clauses.append("id IN %(ids)s")
            params["ids"] = tuple(query.ids)
        for column in ("reason", "name"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = %({column})s")
                params[column] = value
        if query.since is not None:
            clauses.append("received_at >= %(since)s")
            params["since"] = naive_micros(query.since)
        if query.until is not None:
            clauses.append("received_at < %(until)s")
            params["until"] = naive_micros(query.until)
        if query.replayed is not None:
            clauses.append(f"replayed_at IS {'NOT ' if query.replayed else ''}NULL")
        columns = [
            "id",
            "received_at",
            "protocol",
            "reason",
            "message",
            "name",
            "event_index",
            "replayable",
            "replayed_at",
            "replayed_as",
        ]
        select = ", ".join(columns[:7]) + ", isNotNull(replay), replayed_at, replayed_as"
        if query.with_payload:
            # hex: a payload need not be UTF-8, and the driver decodes String columns as text.
            columns += ["payload", "replay"]
            select += ", hex(payload), hex(replay)"
        rows = self.conn.execute(
            f"SELECT {select} FROM {self._t('failed_events')} FINAL "
            f"WHERE {' AND '.join(clauses)} ORDER BY received_at DESC, id LIMIT %(limit)s",
            params,
        )
        records = []
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            record["received_at"] = as_datetime(record["received_at"])
            record["replayable"] = bool(record["replayable"])
            if record["replayed_at"] is not None:
                record["replayed_at"] = as_datetime(record["replayed_at"])
            for key in ("payload", "replay"):
                if record.get(key) is not None:
                    record[key] = bytes.fromhex(record[key])
            records.append(FailedRecord(**record))
        return records

    def discard_counts(self, app_id: str, since: date | None = None) -> list[DiscardCount]:
        rows = self.conn.execute(
            f"SELECT rule, day, sum(count) FROM {self._t('discarded_events')} "
            "WHERE app_id = %(app)s AND day >= %(since)s GROUP BY rule, day "
            "ORDER BY day DESC, rule",
            {"app": app_id, "since": since or date(1970, 1, 1)},
        )
        return [DiscardCount(rule=r, day=d, count=int(c)) for r, d, c in rows]

    def run_sql(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """A read-only analytics query with positional ``%s`` parameters (``positional``).
        A table parameter (``clickhouse_persons``) is sent as an external table and its ``%s``
        becomes the table's name."""
        client = self.conn.get()
        values: list[Any] = []
        tables: dict[str, dict[str, Any]] = {}
        for value in params:
            if isinstance(value, Persons | PersonIds):
                tables.setdefault(value.name, self._external_table(value))
                values.append(Raw(value.name))
            else:
                values.append(value)
        with within_memory():
            return client.execute(
                positional(sql, values, client), external_tables=list(tables.values()) or None
            )

    def _external_table(self, table: TableParam) -> dict[str, Any]:
        if isinstance(table, PersonIds):
            ids = self.person_ids(table.app_id, table.customer)
            return {
                "name": table.name,
                "structure": [("id", "String")],
                "data": [{"id": i} for i in ids],
            }
        rows = self.conn.execute(
            f"SELECT DISTINCT from_id, to_id FROM {self._t('identity_links')} "
            "WHERE app_id = %(app)s",
            {"app": table.app_id},
        )
        persons = persons_of(rows)
        data = [{"id": i, "person": p} for i, p in (PLACEHOLDER_ROW, *persons.items())]
        return {
            "name": table.name,
            "structure": [("id", "String"), ("person", "String")],
            "data": data,
        }

    # exports

    def _export_where(
        self, query: ExportQuery, params: dict[str, Any], after: EventCursor | None = None
    ) -> str:
        clauses = ["app_id = %(app)s"]
        params["app"] = query.app_id
        if query.user is not None:
            clauses.append(self._person_clause(query.app_id, query.user, params))
        if query.since is not None:
            clauses.append(time_bound(">=", "since", query.since, params))
        if query.until is not None:
            clauses.append(time_bound("<", "until", query.until, params))
        if after is not None:
            # The plain bound on time lets the server skip what the tuple bound cannot.
            clauses.append(time_bound(">=", "a_time", after.time, params))
            clauses.append("(time, received_at, id) > (%(a_time)s, %(a_recv)s, %(a_id)s)")
            params.update(a_recv=naive_micros(after.received_at), a_id=after.id)
        return " AND ".join(clauses)

    def export_page(self, query: ExportQuery, after: EventCursor | None, limit: int) -> pa.Table:
        """The first ``limit`` events of the export after ``after``, oldest first, as Arrow in
        ``EXPORT_COLUMNS`` (keyset paging: each page is one query)."""
        params: dict[str, Any] = {"limit": limit}
        where = self._export_where(query, params, after)
        columns = self.conn.execute(
            f"SELECT {_EXPORTED} FROM {self._t('events')} FINAL WHERE {where} "
            "ORDER BY time, received_at, id LIMIT %(limit)s",
            params,
            columnar=True,
        )
        if not columns:
            columns = [() for _ in EXPORT_COLUMNS]
        arrays = []
        for name, values in zip(EXPORT_COLUMNS, columns, strict=True):
            if name == "internal":
                values = [bool(v) for v in values]
            elif name in _LISTS:
                values = [v or None for v in values]
            arrays.append(pa.array(values, type=_EXPORT_TYPES[name]))
        return pa.Table.from_arrays(arrays, names=list(EXPORT_COLUMNS))

    def count_events(self, query: ExportQuery) -> int:
        params: dict[str, Any] = {}
        where = self._export_where(query, params)
        [(count,)] = self.conn.execute(
            f"SELECT count() FROM {self._t('events')} FINAL WHERE {where}", params
        )
        return int(count)

    def stored_ids(
        self, app_id: str, ids: Sequence[str], since: datetime, until: datetime
    ) -> set[str]:
        found: set[str] = set()
        params: dict[str, Any] = {"app": app_id}
        start = time_bound(">=", "since", since, params)
        window = f"{start} AND {time_bound('<=', 'until', until, params)}"
        for chunk in _chunks(list(ids)):
            rows = self.conn.execute(
                f"SELECT DISTINCT id FROM {self._t('events')} WHERE app_id = %(app)s "
                f"AND {window} AND id IN %(ids)s",
                {**params, "ids": chunk},
            )
            found.update(row[0] for row in rows)
        return found

    # deletions

    def _delete(self, table: str, where: str, params: dict[str, Any]) -> None:
        """ALTER TABLE ... DELETE on the table holding the rows; returns once it has run."""
        layout = self.layout
        self.conn.execute(
            f"ALTER TABLE {layout.local(table)}{layout.on_cluster} DELETE WHERE {where}", params
        )
        local_name = f"{table}_local" if layout.cluster else table
        wait_for_mutations(self.conn, layout.database, local_name)

    def delete_person(self, app_id: str, user: str) -> Deletion:
        """Delete every event of the person (all linked ids) and their links, and record it.

        The counts are taken just before the deletes (no transactions): an event of the person
        stored in between is deleted without being counted.
        """
        ids = self.person_ids(app_id, user)
        params: dict[str, Any] = {"app": app_id, "person": tuple(ids)}
        events_where = "app_id = %(app)s AND (user_id IN %(person)s OR device_id IN %(person)s)"
        links_where = "app_id = %(app)s AND (from_id IN %(person)s OR to_id IN %(person)s)"
        [(events,)] = self.conn.execute(
            f"SELECT count() FROM {self._t('events')} FINAL WHERE {events_where}", params
        )
        [(links,)] = self.conn.execute(
            "SELECT count() FROM (SELECT DISTINCT from_id, to_id "
            f"FROM {self._t('identity_links')} WHERE {links_where})",
            params,
        )
        self._delete("events", events_where, params)
        self._delete("identity_links", links_where, params)
        record = Deletion(
            id=uuid7(),
            app_id=app_id,
            kind="person",
            person=user,
            ids=ids,
            events_deleted=int(events),
            links_deleted=int(links),
            requested_at=datetime.now(UTC),
        )
        self._record_deletion(record)
        return record

    def delete_expired(self, app_id: str, before: datetime) -> Deletion:
        """Delete the app's events whose time is before ``before``; recorded if any were."""
        params: dict[str, Any] = {"app": app_id}
        where = f"app_id = %(app)s AND {time_bound('<', 'before', before, params)}"
        [(count,)] = self.conn.execute(
            f"SELECT count() FROM {self._t('events')} FINAL WHERE {where}", params
        )
        record = Deletion(
            id=uuid7(),
            app_id=app_id,
            kind="retention",
            events_deleted=int(count),
            cutoff=before.astimezone(UTC),
            requested_at=datetime.now(UTC),
        )
        if count:
            self._delete("events", where, params)
            self._record_deletion(record)
        return record

    def _record_deletion(self, record: Deletion) -> None:
        self.conn.execute(
            f"INSERT INTO {self._t('deletions')} VALUES",
            [
                (
                    record.id,
                    record.app_id,
                    record.kind,
                    record.person,
                    record.ids,
                    record.events_deleted,
                    record.links_deleted,
                    naive_micros(record.cutoff) if record.cutoff is not None else None,
                    naive_micros(record.requested_at),
                )
            ],
            settings=self._insert_settings,
        )

    def deletions(self, app_id: str) -> list[Deletion]:
        """The app's deletion records, newest first."""
        rows = self.conn.execute(
            "SELECT id, app_id, kind, person, ids, events_deleted, links_deleted, cutoff, "
            f"requested_at FROM {self._t('deletions')} WHERE app_id = %(app)s "
            "ORDER BY requested_at DESC, id",
            {"app": app_id},
        )
        return [
            Deletion(
                id=r[0],
                app_id=r[1],
                kind=r[2],
                person=r[3],
                ids=list(r[4]),
                events_deleted=r[5],
                links_deleted=r[6],
                cutoff=as_datetime(r[7]) if r[7] is not None else None,
                requested_at=as_datetime(r[8]),
            )
            for r in rows
        ]

    def check_writable(self) -> None:
        """Raise unless the server answers and this user may write (``readonly`` is 0)."""
        [(readonly,)] = self.conn.execute(
            "SELECT value FROM system.settings WHERE name = 'readonly'"
        )
        if readonly != "0":
            raise PermissionError(f"the ClickHouse user is read-only (readonly={readonly})")

    def close(self) -> None:
        self.conn.close()
