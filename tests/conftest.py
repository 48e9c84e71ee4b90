"""Shared fixtures: real SQLite/PostgreSQL catalogs, a real DuckDB store, the app in-process."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tally.catalog import App, Catalog, NewApp, schema, sqlite_url
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.pipeline import RequestContext
from tally.pipeline.app_rules import AppRules
from tally.store.embedded import EmbeddedStore

pytest_plugins = ["support"]  # the real-server fixtures (servers) of tests/support.py

POSTGRES_ADMIN_URL = os.environ.get(
    "TALLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CLICKHOUSE_ENV = "TALLY_TEST_CLICKHOUSE"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def catalog(data_dir: Path) -> Iterator[Catalog]:
    store = Catalog(sqlite_url(data_dir))
    store.migrate()
    yield store
    store.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh database on the PostgreSQL server running on this machine; dropped afterwards."""
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the catalog tests ({POSTGRES_ADMIN_URL}): {exc}; "
            "set TALLY_TEST_POSTGRES to a server URL"
        )
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def clickhouse_url() -> Iterator[str]:
    """A ClickHouse server for the session: ``TALLY_TEST_CLICKHOUSE=clickhouse://host:port/`` if
    set, else Debian's clickhouse-server started unprivileged on free ports (clickhouse_server.py).
    Tests make their own databases on it."""
    existing = os.environ.get(CLICKHOUSE_ENV)
    if existing:
        yield existing
        return
    from clickhouse_server import start_clickhouse

    try:
        server = start_clickhouse()
    except RuntimeError as exc:
        pytest.fail(f"ClickHouse is required for the ClickHouse store tests: {exc}")
    yield server.url
    server.stop()


@pytest.fixture
def postgres_catalog_url(postgres_server: str) -> Iterator[str]:
    """The session database, emptied before each test."""
    engine = sa.create_engine(postgres_server.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        tables = [*(t.name for t in reversed(schema.metadata.sorted_tables)), "tally_schema"]
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE"))
    engine.dispose()
    yield postgres_server


@pytest.fixture(params=["sqlite", "postgresql"])
def any_catalog(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Catalog]:
    """A migrated catalog on each engine: a SQLite file, then the PostgreSQL test database."""
    if request.param == "sqlite":
        url = sqlite_url(data_dir)
    else:
        url = request.getfixturevalue("postgres_catalog_url")
    catalog = Catalog(url)
    catalog.migrate()
    yield catalog
    catalog.close()


@pytest.fixture
def new_app(catalog: Catalog) -> NewApp:
    return catalog.create_app("Test app")


@pytest.fixture
def app(new_app: NewApp) -> App:
    return new_app.app


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
def ctx(app: App, limits: Limits) -> RequestContext:
    return RequestContext(
        app=app,
        rules=AppRules(app),
        protocol="native",
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        limits=limits,
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    )


@pytest.fixture
async def store(data_dir: Path) -> AsyncIterator[EmbeddedStore]:
    embedded = EmbeddedStore(data_dir)
    yield embedded
    await embedded.close()


@pytest.fixture
async def services(catalog: Catalog, data_dir: Path) -> AsyncIterator[Services]:
    svc = Services(catalog=catalog, store=EmbeddedStore(data_dir), limits=Limits())
    yield svc
    await svc.store.close()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http
