"""The ClickHouse event store's tables and their migrations. Everything here runs on ClickHouse
18.16 (Debian's package) as well as on current releases.

Times are ``UInt64`` microseconds since the epoch (UTC), not ``DateTime`` plus a fraction column:
18.16 has no ``DateTime64``, one integer keeps the exact instant the embedded store keeps (an event
reads back as it was written, and keyset paging on ``(time, received_at, id)`` compares single
columns), and it is what ``store.rows`` rows already carry, so an insert converts nothing.
Queries bucket it with ``toDateTime(intDiv(time, 1000000))`` and a time zone, e.g.
``toDate(toDateTime(intDiv(time, 1000000)), 'Europe/London')`` or ``toStartOfHour(..., tz)``
(``SECONDS`` below).

Properties are stored twice: the raw JSON (``properties``, for reading events back) and as parallel
arrays ``prop_keys`` / ``prop_values`` of the top-level keys and their values as text, as DuckDB's
``json_extract_string`` gives them (strings unquoted, numbers as written, ``true``/``false``,
objects and arrays as JSON text; a key whose value is null is left out, as
``json_extract_string`` gives NULL for it). Every server can filter and group on
``prop_values[indexOf(prop_keys, 'plan')]`` ('' when the key is missing; ``has(prop_keys, ...)``
tells the two apart); the JSON functions of old servers cannot read nested values.

With a cluster (``Layout.cluster``), every table is created ``ON CLUSTER`` as ``<name>_local`` and
a ``Distributed`` table named ``<name>`` over them, so reads and writes use the same names either
way. The events are sharded by (app, person as stored) so redelivered copies of an event land on
the same shard, where ReplacingMergeTree collapses them (and FINAL, which each shard applies, sees
them together). The local tables are plain MergeTree engines, i.e. shards without replicas:
Replicated* engines need ZooKeeper paths and macros, which are not generated yet. Distributed DDL
needs ZooKeeper too, so one test server can check the statements but not run them ``ON CLUSTER``
(the tests run them without it over a one-shard cluster of the test server itself).

ClickHouse has no transactions: each migration is written to be rerun safely (``IF NOT EXISTS``)
and its version is recorded once it has run, so a migration cut off half-way runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tally.migrations import Migration

COMPONENT = "events"

SECONDS = "toDateTime(intDiv(time, 1000000), 'UTC')"
"""The event time as a ``DateTime`` (whole seconds), for buckets, partitions and the sort key."""
DAY = f"toDate({SECONDS})"
"""The UTC day, as the sort key has it: a condition on it narrows reads to the key's range."""
ACTOR = "ifNull(user_id, ifNull(device_id, ''))"
"""Who did it, as stored (customer id, else device id): the sort key's person column. The key
cannot hold a Nullable column on old servers, hence ``ifNull``."""

EVENTS_COLUMNS = """
    app_id String,
    id String,
    name String,
    label Nullable(String),
    time UInt64,
    received_at UInt64,
    user_id Nullable(String),
    device_id Nullable(String),
    session_id Nullable(String),
    count Int64,
    sum Nullable(Float64),
    dur Nullable(Float64),
    properties Nullable(String),
    undefined_properties Array(String),
    protocol String,
    sdk_name Nullable(String),
    sdk_version Nullable(String),
    ip Nullable(String),
    user_agent Nullable(String),
    browser Nullable(String),
    os Nullable(String),
    device_type Nullable(String),
    url Nullable(String),
    referrer Nullable(String),
    locale Nullable(String),
    timezone Nullable(String),
    internal UInt8,
    country_code Nullable(String),
    city Nullable(String),
    location Nullable(String),
    coerced_properties Array(String),
    prop_keys Array(String),
    prop_values Array(String),
    stored_at DateTime DEFAULT now()
"""
"""Every column of ``store.columns.EVENT_COLUMNS`` in the same order, then the property arrays
and when the row was inserted (what the dedup window of an append looks back over). Nullable where
the DuckDB column is; lists are plain arrays (empty for none)."""


@dataclass(frozen=True)
class Layout:
    """Where the tables live: one server, or local tables on a cluster behind Distributed ones."""

    database: str
    cluster: str | None = None

    def table(self, name: str) -> str:
        """The table reads and writes use (the Distributed one on a cluster)."""
        return f"{quote(self.database)}.{quote(name)}"

    def local(self, name: str) -> str:
        """The table that holds the rows (and takes ALTER ... DELETE / UPDATE mutations)."""
        return self.table(f"{name}_local" if self.cluster else name)

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote(self.cluster)}" if self.cluster else ""


def quote(identifier: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Ddl:
    """What a migration runs its statements through; records them (for a look without a server,
    e.g. the cluster DDL in the tests)."""

    layout: Layout
    execute: Callable[[str], object] = field(default=lambda sql: None)
    statements: list[str] = field(default_factory=list)

    def run(self, sql: str) -> None:
        sql = " ".join(sql.split())
        self.statements.append(sql)
        self.execute(sql)

    def create(self, name: str, columns: str, engine: str, sharding_key: str = "rand()") -> None:
        """Create table ``name`` (and, on a cluster, its Distributed table over the local ones)."""
        layout = self.layout
        self.run(
            f"CREATE TABLE IF NOT EXISTS {layout.local(name)}{layout.on_cluster} "
            f"({columns}) ENGINE = {engine}"
        )
        if layout.cluster:
            self.run(
                f"CREATE TABLE IF NOT EXISTS {layout.table(name)}{layout.on_cluster} "
                f"AS {layout.local(name)} ENGINE = Distributed({quote(layout.cluster)}, "
                f"{quote(layout.database)}, {quote(name + '_local')}, {sharding_key})"
            )


def schema_table_sql(layout: Layout) -> str:
    """The version table: one row per migration run (the version is the highest)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {layout.table('tally_schema')}{layout.on_cluster} "
        "(component String, version UInt32, description String, applied_at DateTime) "
        "ENGINE = MergeTree ORDER BY (component, version)"
    )


def _v1(ddl: Ddl) -> None:
    ddl.create(
        "events",
        EVENTS_COLUMNS,
        # The sort key is also what ReplacingMergeTree collapses on: a redelivered event has the
        # same app, day, name, person and id, so it is counted once (reads use FINAL).
        f"ReplacingMergeTree PARTITION BY toYYYYMM({SECONDS}) "
        f"ORDER BY (app_id, {DAY}, name, {ACTOR}, id)",
        sharding_key="cityHash64(app_id, ifNull(user_id, ifNull(device_id, id)))",
    )
    ddl.create(
        "failed_events",
        """
        id String,
        app_id String,
        received_at UInt64,
        protocol String,
        reason String,
        message String,
        payload String,
        name Nullable(String),
        event_index Nullable(Int32),
        replay Nullable(String),
        replayed_at Nullable(UInt64),
        replayed_as Nullable(String),
        version UInt64
        """,
        # Marking one replayed inserts a newer version of its row (no mutation); reads use FINAL.
        "ReplacingMergeTree(version) PARTITION BY toYYYYMM(toDateTime(intDiv(received_at, "
        "1000000), 'UTC')) ORDER BY (app_id, id)",
        sharding_key="cityHash64(app_id, id)",
    )
    ddl.create(
        "identity_links",
        "app_id String, from_id String, to_id String, linked_at UInt64",
        "ReplacingMergeTree ORDER BY (app_id, from_id, to_id)",
        sharding_key="cityHash64(app_id, from_id, to_id)",
    )
    ddl.create(
        "discarded_events",
        "app_id String, rule String, day Date, count Int64",
        "SummingMergeTree(count) ORDER BY (app_id, rule, day)",
    )
    ddl.create(
        "deletions",
        """
        id String,
        app_id String,
        kind String,
        person Nullable(String),
        ids Array(String),
        events_deleted Int64,
        links_deleted Int64,
        cutoff Nullable(UInt64),
        requested_at UInt64
        """,
        "MergeTree ORDER BY (app_id, requested_at, id)",
    )


MIGRATIONS: list[Migration[Ddl]] = [
    Migration(1, "events, failed events, identity links, discard counts and deletions", _v1),
]
