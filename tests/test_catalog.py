"""The catalog on both engines it supports: SQLite (default) and PostgreSQL (the local server)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tally.catalog import Catalog, sqlite_url
from tally.catalog.schema import MIGRATIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_catalog(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        url = sqlite_url(data_dir)
    else:
        url = request.getfixturevalue("postgres_catalog_url")
    catalog = Catalog(url)
    yield catalog
    catalog.close()


def test_migrations_are_versioned_and_idempotent(fresh_catalog: Catalog) -> None:
    assert fresh_catalog.schema_version() == 0
    assert fresh_catalog.migrate() == [m.version for m in MIGRATIONS]
    assert fresh_catalog.schema_version() == len(MIGRATIONS)
    assert fresh_catalog.migrate() == []


def test_concurrent_migrations_on_postgresql_apply_once(postgres_catalog_url: str) -> None:
    """Several collectors starting at once against one PostgreSQL catalog."""
    others = [Catalog(postgres_catalog_url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(lambda c: c.migrate(), others))
    for other in others:
        other.close()
    assert sorted(map(len, applied)) == [0, 0, 0, len(MIGRATIONS)]


def test_create_and_find_apps(fresh_catalog: Catalog) -> None:
    fresh_catalog.migrate()
    created = fresh_catalog.create_app("  Web shop ")
    app = created.app
    assert app.name == "Web shop"
    assert re.fullmatch(r"[0-9a-f]{24}", app.id)
    assert re.fullmatch(r"[0-9a-f]{40}", app.app_key)
    assert app.api_key and created.api_secret and app.api_key != app.app_key
    assert fresh_catalog.get_app(app.id) == app
    assert fresh_catalog.app_by_key(app.app_key) == app
    assert fresh_catalog.app_by_key(app.api_key) is None  # the server key is not a public key
    assert fresh_catalog.get_app("0" * 24) is None
    other = fresh_catalog.create_app("Mobile")
    assert {a.id for a in fresh_catalog.list_apps()} == {app.id, other.app.id}
    assert created.to_dict()["api_secret"] == created.api_secret


def test_the_secret_is_stored_only_as_an_argon2_hash(fresh_catalog: Catalog) -> None:
    fresh_catalog.migrate()
    created = fresh_catalog.create_app("Shop")
    with fresh_catalog.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM apps")).mappings().one()
    assert stored["api_secret_hash"].startswith("$argon2id$")
    assert created.api_secret not in " ".join(str(v) for v in stored.values())


def test_authenticate_with_api_key_and_secret(fresh_catalog: Catalog) -> None:
    fresh_catalog.migrate()
    created = fresh_catalog.create_app("Shop")
    key = created.app.api_key
    assert fresh_catalog.authenticate(key, created.api_secret) == created.app
    assert fresh_catalog.authenticate(key, created.api_secret) == created.app  # cached path
    assert fresh_catalog.authenticate(key, created.api_secret + "x") is None
    assert fresh_catalog.authenticate(key, "") is None
    assert fresh_catalog.authenticate("nope", created.api_secret) is None
    other = fresh_catalog.create_app("Other")
    assert fresh_catalog.authenticate(other.app.api_key, created.api_secret) is None


def test_empty_names_are_refused(fresh_catalog: Catalog) -> None:
    fresh_catalog.migrate()
    with pytest.raises(ValueError, match="empty"):
        fresh_catalog.create_app("   ")


def test_postgres_urls_use_psycopg(postgres_catalog_url: str) -> None:
    assert postgres_catalog_url.startswith("postgresql://")
    catalog = Catalog(postgres_catalog_url)
    assert catalog.engine.dialect.driver == "psycopg"
    catalog.ping()
    catalog.close()


def test_upgrading_from_version_1_keeps_apps(fresh_catalog: Catalog) -> None:
    """An app created by the first release survives the later migrations, with default settings."""
    with fresh_catalog.engine.begin() as conn:
        from tally.catalog.schema import schema_versions

        schema_versions.create(conn)
        conn.execute(schema_versions.insert().values(component="catalog", version=0))
        MIGRATIONS[0].apply(conn)
        conn.execute(schema_versions.update().values(version=1))
        conn.execute(
            sa.text(
                "INSERT INTO apps (id, name, app_key, api_key, api_secret_hash, created_at) "
                "VALUES ('a1a1a1a1a1a1a1a1a1a1a1a1', 'Old', 'k1', 'ak1', 'h', :t)"
            ),
            {"t": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    assert fresh_catalog.migrate() == [m.version for m in MIGRATIONS[1:]]
    app = fresh_catalog.app_by_key("k1")
    assert app is not None and app.name == "Old" and app.settings.countly_salt is None
    updated = fresh_catalog.update_settings(app.id, countly_salt="s")
    assert fresh_catalog.get_app(app.id) == updated
