"""Catalog tables (SQLAlchemy Core) and their migrations; the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tally.migrations import Migration

metadata = sa.MetaData()

schema_versions = sa.Table(
    "tally_schema",
    metadata,
    sa.Column("component", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("app_key", sa.String(64), nullable=False, unique=True),
    sa.Column("api_key", sa.String(64), nullable=False, unique=True),
    sa.Column("api_secret_hash", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("catalog_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("previous_secret_hash", sa.String(200), nullable=True),
    sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("previous_app_key", sa.String(64), nullable=True, index=True),
    sa.Column("previous_app_key_until", sa.DateTime(timezone=True), nullable=True),
)
"""``previous_*``: the API secret (hashed like the current one) and the app key a rotation
replaced, valid until their ``_until`` time (the rotation's overlap window)."""

event_definitions = sa.Table(
    "event_definitions",
    metadata,
    sa.Column("app_id", sa.String(24), sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
"""One row per defined event; the definition (with its properties) is one JSON document, read and
written whole, like a catalog file's entry."""

event_aliases = sa.Table(
    "event_aliases",
    metadata,
    sa.Column("app_id", sa.String(24), sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

dashboard_users = sa.Table(
    "dashboard_users",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
)
"""People who log in to the dashboard; ``email`` is stored lower-cased, so it is unique whatever
its case."""

dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_id",
        sa.String(24),
        sa.ForeignKey("dashboard_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)
"""Dashboard log-ins. Only a SHA-256 of the random session id (the cookie) is stored."""


def _create_apps(conn: Connection) -> None:
    # Version 1 of the table, as it was first released; later columns come from migrations.
    sa.Table(
        "apps",
        sa.MetaData(),
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("app_key", sa.String(64), nullable=False, unique=True),
        sa.Column("api_key", sa.String(64), nullable=False, unique=True),
        sa.Column("api_secret_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ).create(conn)


def _add_app_settings(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE apps ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'"))


def _add_definitions(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE apps ADD COLUMN catalog_version INTEGER NOT NULL DEFAULT 0"))
    event_definitions.create(conn)
    event_aliases.create(conn)


def _add_dashboard_users(conn: Connection) -> None:
    dashboard_users.create(conn)
    dashboard_sessions.create(conn)


CHANGES_CHANNEL = "tally_catalog"
"""PostgreSQL channel on which every change to an app's row (settings, keys, catalog version:
every definition change bumps it) is announced with the app's id (``catalog.changes``)."""


def _notify_app_changes(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":  # SQLite: one machine; workers re-read within 1 s
        return
    conn.execute(
        sa.text(
            f"""
            CREATE OR REPLACE FUNCTION tally_catalog_notify() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    PERFORM pg_notify('{CHANGES_CHANNEL}', OLD.id);
                ELSE
                    PERFORM pg_notify('{CHANGES_CHANNEL}', NEW.id);
                END IF;
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
    )
    conn.execute(sa.text("DROP TRIGGER IF EXISTS tally_apps_changed ON apps"))
    conn.execute(
        sa.text(
            "CREATE TRIGGER tally_apps_changed AFTER INSERT OR UPDATE OR DELETE ON apps "
            "FOR EACH ROW EXECUTE FUNCTION tally_catalog_notify()"
        )
    )


def _add_key_rotation(conn: Connection) -> None:
    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    for column in (
        "previous_secret_hash VARCHAR(200)",
        f"previous_secret_until {timestamp}",
        "previous_app_key VARCHAR(64)",
        f"previous_app_key_until {timestamp}",
    ):
        conn.execute(sa.text(f"ALTER TABLE apps ADD COLUMN {column}"))
    conn.execute(sa.text("CREATE INDEX ix_apps_previous_app_key ON apps (previous_app_key)"))


MIGRATIONS: list[Migration[Connection]] = [
    Migration(1, "apps with public app key and hashed API secret", _create_apps),
    Migration(2, "per-app settings document", _add_app_settings),
    Migration(
        3, "event definitions and aliases, and a version to reload them by", _add_definitions
    ),
    Migration(4, "dashboard users and their sessions", _add_dashboard_users),
    Migration(5, "PostgreSQL: announce app changes on a channel", _notify_app_changes),
    Migration(
        6, "the previous API secret and app key during a rotation's overlap", _add_key_rotation
    ),
]
