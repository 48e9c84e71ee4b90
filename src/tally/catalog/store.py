"""The catalog: apps and their keys, in SQLite (default) or PostgreSQL, through SQLAlchemy Core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

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
DEFAULT_OVERLAP: Final = timedelta(hours=24)
"""How long a rotation keeps the replaced API secret (and app key) working, unless told."""
MAX_OVERLAP: Final = timedelta(days=30)
CONNECT_TIMEOUT: Final = 5
"""Seconds a PostgreSQL catalog connection attempt may take."""


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
    if url.startswith("postgresql"):
        # A server that drops packets rather than refusing connections must not hold a request
        # for minutes: a connection attempt gives up after CONNECT_TIMEOUT seconds (503).
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT}
        )
    return sa.create_engine(url, pool_pre_ping=True)


_settings_decoder = msgspec.json.Decoder(AppSettings)


def _live(until: datetime | None, now: datetime) -> datetime | None:
    """``until`` if it is still ahead of ``now``, else None (the overlap is over)."""
    until = aware(until)
    return until if until is not None and now < until else None


def _previous_secret_hash(row: sa.Row, now: datetime) -> str | None:
    """The replaced secret's hash while its overlap lasts."""
    if row.previous_secret_hash and _live(row.previous_secret_until, now):
        return str(row.previous_secret_hash)
    return None


def _app(row: sa.Row, now: datetime | None = None) -> App:
    now = now or datetime.now(UTC)
    key_until = _live(row.previous_app_key_until, now) if row.previous_app_key else None
    return App(
        id=row.id,
        name=row.name,
        app_key=row.app_key,
        api_key=row.api_key,
        created_at=aware(row.created_at),
        settings=_settings_decoder.decode(row.settings or "{}"),
        catalog_version=row.catalog_version,
        previous_app_key=row.previous_app_key if key_until else None,
        previous_app_key_until=key_until,
        previous_secret_until=(
            _live(row.previous_secret_until, now) if row.previous_secret_hash else None
        ),
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

    def rotate_secret(
        self, app_id: str, *, app_key: bool = False, overlap: timedelta = DEFAULT_OVERLAP
    ) -> NewApp:
        """Give an app a new API secret (and, with ``app_key``, a new public app key). The
        replaced ones keep working for ``overlap`` (zero: they stop at once); a rotation within
        the overlap of an earlier one ends the earlier one's. The new secret is returned this
        once; the app's ``previous_secret_until`` says when the old one stops (KeyError: no app,
        ValueError: an overlap out of range)."""
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            raise ValueError(f"the overlap must be 0 to {int(MAX_OVERLAP.total_seconds())} seconds")
        secret = ids.new_api_secret()
        until = datetime.now(UTC) + overlap if overlap else None
        # On the right-hand side of SET, columns are the row's values before the update.
        values: dict[str, object] = {
            "api_secret_hash": hash_secret(secret),
            "previous_secret_hash": apps.c.api_secret_hash if until else None,
            "previous_secret_until": until,
        }
        if app_key:
            values["app_key"] = ids.new_app_key()
            values["previous_app_key"] = apps.c.app_key if until else None
            values["previous_app_key_until"] = until
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
        """The app whose public key this is, or whose previous key within its overlap."""
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(apps).where(
                    sa.or_(apps.c.app_key == app_key, apps.c.previous_app_key == app_key)
                )
            ).all()
        found = [_app(row, now) for row in rows]
        found = [app for app in found if app.accepts_app_key(app_key, now)]
        found.sort(key=lambda app: app.app_key != app_key)  # a current key wins
        return found[0] if found else None

    def _verified(self, api_key: str, api_secret: str) -> tuple[sa.Row, str] | None:
        """The app's row and the stored hash the secret matched: the current secret's, or the
        previous one's within its overlap."""
        row = self._one(apps.c.api_key, api_key)
        if row is None:
            return None
        if self._secrets.verify(row.api_secret_hash, api_secret):
            return row, row.api_secret_hash
        previous = _previous_secret_hash(row, datetime.now(UTC))
        if previous is not None and self._secrets.verify(previous, api_secret):
            return row, previous
        return None

    def authenticate(self, api_key: str, api_secret: str) -> App | None:
        """The app whose API key and secret these are, or None."""
        verified = self._verified(api_key, api_secret)
        return None if verified is None else _app(verified[0])

    def authenticate_until(
        self, api_key: str, api_secret: str
    ) -> tuple[App, datetime | None] | None:
        """``authenticate``, and until when the credentials hold: None for the current secret,
        the end of the rotation's overlap for the previous one (for callers that cache)."""
        verified = self._verified(api_key, api_secret)
        if verified is None:
            return None
        row, matched = verified
        app = _app(row)
        return app, (None if matched == row.api_secret_hash else app.previous_secret_until)

    def issue_workspace_token(self, api_key: str, api_secret: str) -> str | None:
        """A workspace JWT for these credentials (Synerise's login), or None if they are wrong.
        Made with the previous secret, it stops working when that secret does."""
        verified = self._verified(api_key, api_secret)
        if verified is None:
            return None
        row, secret_hash = verified
        return tokens.issue_workspace_token(_app(row), secret_hash)

    def app_by_workspace_token(self, token: str) -> App | None:
        found = self.workspace_token_until(token)
        return None if found is None else found[0]

    def workspace_token_until(self, token: str) -> tuple[App, datetime] | None:
        """The app of a workspace token, and until when the token holds: its expiry, or the end
        of the rotation's overlap if the previous secret made it (for callers that cache)."""
        try:
            row = self._one(apps.c.id, tokens.workspace_token_app(token))
        except tokens.InvalidToken:
            return None
        if row is None:
            return None
        previous = _previous_secret_hash(row, datetime.now(UTC))
        for secret_hash in filter(None, [row.api_secret_hash, previous]):
            try:
                expires = tokens.verify_workspace_token(token, secret_hash)
            except tokens.InvalidToken:
                continue
            app = _app(row)
            if secret_hash != row.api_secret_hash and app.previous_secret_until is not None:
                expires = min(expires, app.previous_secret_until)
            return app, expires
        return None

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
