"""The embedded event store's tables (DuckDB) and their migrations."""

from __future__ import annotations

import duckdb

from tally.migrations import Migration

COMPONENT = "events"


def _v1(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        """
        CREATE TABLE events (
            app_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            label VARCHAR,
            time TIMESTAMP NOT NULL,
            received_at TIMESTAMP NOT NULL,
            user_id VARCHAR,
            device_id VARCHAR,
            session_id VARCHAR,
            count BIGINT NOT NULL,
            sum DOUBLE,
            dur DOUBLE,
            properties JSON,
            undefined_properties VARCHAR[],
            protocol VARCHAR NOT NULL,
            sdk_name VARCHAR,
            sdk_version VARCHAR,
            ip VARCHAR,
            user_agent VARCHAR,
            browser VARCHAR,
            os VARCHAR,
            device_type VARCHAR,
            url VARCHAR,
            referrer VARCHAR,
            locale VARCHAR,
            timezone VARCHAR
        )
        """
    )
    # Client-supplied ids seen within the dedup window, as a 128-bit digest of (app, id).
    conn.execute(
        """
        CREATE TABLE event_ids (
            hi UBIGINT NOT NULL,
            lo UBIGINT NOT NULL,
            seen_at TIMESTAMP NOT NULL,
            PRIMARY KEY (hi, lo)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE failed_events (
            id VARCHAR NOT NULL DEFAULT (uuid()::VARCHAR),
            app_id VARCHAR NOT NULL,
            received_at TIMESTAMP NOT NULL,
            protocol VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            message VARCHAR NOT NULL,
            payload BLOB NOT NULL,
            name VARCHAR,
            event_index INTEGER
        )
        """
    )


def _v2(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("ALTER TABLE events ADD COLUMN internal BOOLEAN NOT NULL DEFAULT false")


def _v3(conn: duckdb.DuckDBPyConnection) -> None:
    # Pairs of ids known to be the same person (device and customer, or an old and a new
    # device), derived from events as they are stored; undirected.
    conn.execute(
        """
        CREATE TABLE identity_links (
            app_id VARCHAR NOT NULL,
            from_id VARCHAR NOT NULL,
            to_id VARCHAR NOT NULL,
            linked_at TIMESTAMP NOT NULL,
            PRIMARY KEY (app_id, from_id, to_id)
        )
        """
    )
    conn.execute(
        """
        INSERT OR IGNORE INTO identity_links
        SELECT app_id, device_id, user_id, min(received_at) FROM events
        WHERE user_id IS NOT NULL AND device_id IS NOT NULL AND user_id <> device_id
        GROUP BY ALL
        """
    )


def _v4(conn: duckdb.DuckDBPyConnection) -> None:
    for column in ("country_code", "city", "location"):
        conn.execute(f"ALTER TABLE events ADD COLUMN {column} VARCHAR")
    conn.execute("ALTER TABLE events ADD COLUMN coerced_properties VARCHAR[]")
    # What replaying a failed event needs (the decoded event and its request context), and
    # whether it was replayed, as which event.
    conn.execute("ALTER TABLE failed_events ADD COLUMN replay BLOB")
    conn.execute("ALTER TABLE failed_events ADD COLUMN replayed_at TIMESTAMP")
    conn.execute("ALTER TABLE failed_events ADD COLUMN replayed_as VARCHAR")
    # Events discarded on purpose (allow/deny lists, bots, internal traffic), counted per rule.
    conn.execute(
        """
        CREATE TABLE discarded_events (
            app_id VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            day DATE NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (app_id, rule, day)
        )
        """
    )


def _v5(conn: duckdb.DuckDBPyConnection) -> None:
    # What was deleted on request (a person forgotten) or by an app's retention period.
    conn.execute(
        """
        CREATE TABLE deletions (
            id VARCHAR NOT NULL PRIMARY KEY,
            app_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            person VARCHAR,
            ids VARCHAR[],
            events_deleted BIGINT NOT NULL,
            links_deleted BIGINT NOT NULL,
            cutoff TIMESTAMP,
            requested_at TIMESTAMP NOT NULL
        )
        """
    )


def _v6(conn: duckdb.DuckDBPyConnection) -> None:
    # The last journal record stored here (store.journal): a restart loads the records after it.
    conn.execute("CREATE TABLE journal_state (loaded_seq UBIGINT NOT NULL)")
    conn.execute("INSERT INTO journal_state VALUES (0)")


LINK_KEY_SQL = "md5_number(app_id || length(from_id) || ':' || from_id || to_id)"
"""A link's identity as one 128-bit number (MD5, stable across DuckDB versions, unlike ``hash``;
the length of ``from_id`` keeps ``("ab", "c")`` and ``("a", "bc")`` apart)."""


def _v7(conn: duckdb.DuckDBPyConnection) -> None:
    # identity_links' primary key was an ART index over three strings, which DuckDB keeps in
    # memory: ~80 bytes a link, so ~3M links filled the default TALLY_STORE_MEMORY and every load
    # with a link failed from then on. Repeats are found by this key instead (one number scanned).
    conn.execute(
        f"""
        CREATE TABLE identity_links_v7 AS
        SELECT app_id, from_id, to_id, linked_at, {LINK_KEY_SQL} AS link_key FROM identity_links
        """
    )
    conn.execute("DROP TABLE identity_links")
    conn.execute("ALTER TABLE identity_links_v7 RENAME TO identity_links")
    for column in ("app_id", "from_id", "to_id", "linked_at", "link_key"):
        conn.execute(f"ALTER TABLE identity_links ALTER COLUMN {column} SET NOT NULL")


MIGRATIONS: list[Migration[duckdb.DuckDBPyConnection]] = [
    Migration(1, "events, failed events and the dedup index", _v1),
    Migration(2, "events.internal marks SDK-internal events (Countly [CLY]_ keys)", _v2),
    Migration(3, "identity links between devices and customers", _v3),
    Migration(4, "geo and coerced-property columns, failed-event replay, discard counts", _v4),
    Migration(5, "deletions: people forgotten and events past an app's retention", _v5),
    Migration(6, "journal_state: the last journal record loaded", _v6),
    Migration(7, "identity_links keyed by an MD5 of the link, without an in-memory index", _v7),
]
