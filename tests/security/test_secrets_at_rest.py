"""No API secret in plaintext at rest: not in the bytes of the SQLite catalog (its WAL included),
not in the PostgreSQL row; current and previous (rotated) secrets alike, and no dashboard password
either."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from tally.catalog import Catalog, sqlite_url
from tally.catalog.schema import apps

PASSWORD = "a dashboard password"


def make_secrets(catalog: Catalog) -> list[str]:
    """An app with a current and a previous secret, and a dashboard user; the plaintexts."""
    old = catalog.create_app("Shop")
    new = catalog.rotate_secret(old.app.id, app_key=True, overlap=timedelta(hours=1))
    catalog.users.create("ann@example.com", PASSWORD)
    assert catalog.authenticate(old.app.api_key, old.api_secret) is not None  # usable, though
    return [old.api_secret, new.api_secret, PASSWORD]


def test_the_sqlite_files_hold_no_plaintext_secret(data_dir: Path) -> None:
    catalog = Catalog(sqlite_url(data_dir))
    catalog.migrate()
    try:
        secrets = make_secrets(catalog)
        files = sorted(data_dir.glob("catalog.sqlite*"))  # the database, its WAL and index
        assert data_dir / "catalog.sqlite" in files
        contents = b"".join(path.read_bytes() for path in files)
        assert b"$argon2id$" in contents  # the hashes are there: the search would find text
        for secret in secrets:
            assert secret.encode() not in contents
    finally:
        catalog.close()


def test_the_postgresql_row_holds_no_plaintext_secret(postgres_catalog_url: str) -> None:
    catalog = Catalog(postgres_catalog_url)
    catalog.migrate()
    try:
        secrets = make_secrets(catalog)
        with catalog.engine.connect() as conn:
            row = conn.execute(sa.select(apps)).mappings().one()
            users = conn.execute(sa.text("SELECT * FROM dashboard_users")).mappings().all()
        stored = " ".join(str(v) for r in (row, *users) for v in r.values())
        assert str(row["api_secret_hash"]).startswith("$argon2id$")
        assert str(row["previous_secret_hash"]).startswith("$argon2id$")
        for secret in secrets:
            assert secret not in stored
    finally:
        catalog.close()
