"""The catalog: apps and their keys, in SQLite (default) or PostgreSQL, through SQLAlchemy Core."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tally import ids, tokens
from tally.catalog.definitions_store import DefinitionStore
from tally.catalog.models import App, AppSettings, NewApp, check_settings
from tally.catalog.schema import MIGRATIONS, apps, schema_versions
from tally.catalog.secrets import VerifiedSecrets, hash_secret
from tally.catalog.users import UserStore
from tally.migrations import pending
from tally.utc import aware

COMPONENT = "catalog"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'catalog.sqlite').resolve()}"


def _normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _create_engine(url: str) -> Engine:
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


_settings_decoder = msgspec.json.Decoder(AppSettings)


def _app(row: sa.Row) -> App:
    return App(
        id=row.id,
        name=row.name,
        app_key=row.app_key,
        api_key=row.api_key,
        created_at=aware(row.created_at),
        settings=_settings_decoder.decode(row.settings or "{}"),
        catalog_version=row.catalog_version,
    )


class Catalog:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self._secrets = VerifiedSecrets()
        self.definitions = DefinitionStore(self.engine)
        self.users = UserStore(self.engine)

    # schema

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._version(conn)

    def _version(self, conn: Connection) -> int:
        if not sa.inspect(conn).has_table(schema_versions.name):
            return 0
        version = conn.execute(
            sa.select(schema_versions.c.version).where(schema_versions.c.component == COMPONENT)
        ).scalar()
        return int(version or 0)

    def migrate(self) -> list[int]:
        """Bring the schema to the latest version; returns the versions applied."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Serialise concurrent starts (several workers) on one advisory lock.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7424151)"))
            current = self._version(conn)
            todo = pending(MIGRATIONS, current)
            if not todo:
                return []
            if current == 0:
                schema_versions.create(conn, checkfirst=True)
                conn.execute(schema_versions.insert().values(component=COMPONENT, version=0))
            for migration in todo:
                migration.apply(conn)
                conn.execute(
                    schema_versions.update()
                    .where(schema_versions.c.component == COMPONENT)
                    .values(version=migration.version)
                )
            return [m.version for m in todo]

    # apps

    def create_app(self, name: str) -> NewApp:
        name = name.strip()
        if not name:
            raise ValueError("app name must not be empty")
        secret = ids.new_api_secret()
        app = App(
            id=ids.new_app_id(),
            name=name,
            app_key=ids.new_app_key(),
            api_key=ids.new_api_key(),
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        with self.engine.begin() as conn:
            conn.execute(
                apps.insert().values(
                    id=app.id,
                    name=app.name,
                    app_key=app.app_key,
                    api_key=app.api_key,
                    api_secret_hash=hash_secret(secret),
                    created_at=app.created_at,
                )
            )
        return NewApp(app=app, api_secret=secret)

    def rotate_secret(self, app_id: str, *, app_key: bool = False) -> NewApp:
        """Give an app a new API secret (and, with ``app_key``, a new public app key); the old
        ones stop working at once. The new secret is returned this once (KeyError: no app)."""
        secret = ids.new_api_secret()
        values: dict[str, str] = {"api_secret_hash": hash_secret(secret)}
        if app_key:
            values["app_key"] = ids.new_app_key()
        with self.engine.begin() as conn:
            if not conn.execute(apps.update().where(apps.c.id == app_id).values(**values)).rowcount:
                raise KeyError(app_id)
        app = self.get_app(app_id)
        if app is None:
            raise KeyError(app_id)
        return NewApp(app=app, api_secret=secret)

    def update_settings(self, app_id: str, **changes: object) -> App:
        """Change some settings of an app; the others keep their values."""
        app = self.get_app(app_id)
        if app is None:
            raise KeyError(app_id)
        try:
            settings = msgspec.convert(
                {**msgspec.to_builtins(app.settings), **msgspec.to_builtins(changes)}, AppSettings
            )
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid settings: {exc}") from None
        check_settings(settings)
        with self.engine.begin() as conn:
            conn.execute(
                apps.update()
                .where(apps.c.id == app_id)
                .values(settings=msgspec.json.encode(settings).decode())
            )
        return msgspec.structs.replace(app, settings=settings)

    def list_apps(self) -> list[App]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(apps).order_by(apps.c.created_at, apps.c.name))
            return [_app(row) for row in rows]

    def _one(self, column: sa.Column, value: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(apps).where(column == value)).first()

    def get_app(self, app_id: str) -> App | None:
        row = self._one(apps.c.id, app_id)
        return _app(row) if row else None

    def app_by_key(self, app_key: str) -> App | None:
        row = self._one(apps.c.app_key, app_key)
        return _app(row) if row else None

    def authenticate(self, api_key: str, api_secret: str) -> App | None:
        """The app whose API key and secret these are, or None."""
        row = self._one(apps.c.api_key, api_key)
        if row is None or not self._secrets.verify(row.api_secret_hash, api_secret):
            return None
        return _app(row)

    def issue_workspace_token(self, api_key: str, api_secret: str) -> str | None:
        """A workspace JWT for these credentials (Synerise's login), or None if they are wrong."""
        row = self._one(apps.c.api_key, api_key)
        if row is None or not self._secrets.verify(row.api_secret_hash, api_secret):
            return None
        return tokens.issue_workspace_token(_app(row), row.api_secret_hash)

    def app_by_workspace_token(self, token: str) -> App | None:
        try:
            row = self._one(apps.c.id, tokens.workspace_token_app(token))
            if row is None:
                return None
            tokens.verify_workspace_token(token, row.api_secret_hash)
        except tokens.InvalidToken:
            return None
        return _app(row)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
