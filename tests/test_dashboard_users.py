"""Dashboard users and sessions in the catalog, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tally.catalog import Catalog
from tally.catalog.schema import dashboard_sessions
from tally.catalog.users import SESSION_LIFETIME, UserError, UserExists, csrf_token, token_hash


def test_create_list_and_find_users_whatever_the_case(any_catalog: Catalog) -> None:
    users = any_catalog.users
    assert users.count() == 0
    ann = users.create("  Ann@Example.COM ", "correct horse")
    assert ann.email == "ann@example.com" and ann.last_login_at is None
    assert ann.created_at.tzinfo is not None
    bob = users.create("bob@example.com", "battery staple")
    assert [u.email for u in users.list()] == ["ann@example.com", "bob@example.com"]
    assert users.count() == 2
    assert users.get("ANN@example.com") == users.get("ann@example.com")
    with pytest.raises(UserExists, match="exists already"):
        users.create("ANN@EXAMPLE.COM", "another password")
    assert users.get("nobody@example.com") is None
    assert bob.id != ann.id


def test_emails_and_passwords_are_checked(any_catalog: Catalog) -> None:
    for email in ("", "ann", "@example.com", "ann@", "a nn@example.com"):
        with pytest.raises(UserError, match="not an email address"):
            any_catalog.users.create(email, "long enough")
    with pytest.raises(UserError, match="at least 8"):
        any_catalog.users.create("ann@example.com", "short")
    assert any_catalog.users.count() == 0


def test_the_password_is_stored_only_as_an_argon2_hash(any_catalog: Catalog) -> None:
    any_catalog.users.create("ann@example.com", "correct horse")
    with any_catalog.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM dashboard_users")).mappings().one()
    assert row["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in " ".join(str(v) for v in row.values())


def test_authenticate_records_the_last_login(any_catalog: Catalog) -> None:
    users = any_catalog.users
    users.create("ann@example.com", "correct horse")
    assert users.authenticate("ann@example.com", "wrong horse") is None
    assert users.authenticate("nobody@example.com", "correct horse") is None
    assert users.get("ann@example.com").last_login_at is None  # type: ignore[union-attr]
    user = users.authenticate("ANN@example.com", "correct horse")
    assert user is not None and user.last_login_at is not None
    stored = users.get("ann@example.com")
    assert stored is not None and stored.last_login_at is not None
    assert abs(stored.last_login_at - user.last_login_at) < timedelta(seconds=1)


def test_sessions_store_only_a_hash_and_end_when_revoked(any_catalog: Catalog) -> None:
    users = any_catalog.users
    user = users.create("ann@example.com", "correct horse")
    started = users.start_session(user)
    with any_catalog.engine.connect() as conn:
        stored = conn.execute(sa.select(dashboard_sessions)).mappings().one()
    assert stored["id_hash"] == token_hash(started.token) != started.token
    assert started.token not in " ".join(str(v) for v in stored.values())
    session = users.session(started.token)
    assert session is not None and session.user.email == "ann@example.com"
    assert session.expires_at - session.created_at == SESSION_LIFETIME
    assert users.session(started.token + "x") is None
    assert users.end_session(started.token) is True
    assert users.session(started.token) is None
    assert users.end_session(started.token) is False
    assert csrf_token(started.token) != csrf_token(users.start_session(user).token)


def test_sessions_expire_and_slide(any_catalog: Catalog) -> None:
    users = any_catalog.users
    user = users.create("ann@example.com", "correct horse")
    stale, live = users.start_session(user), users.start_session(user)
    now = datetime.now(UTC)
    with any_catalog.engine.begin() as conn:
        conn.execute(
            dashboard_sessions.update()
            .where(dashboard_sessions.c.id_hash == token_hash(stale.token))
            .values(expires_at=now - timedelta(seconds=1))
        )
        conn.execute(
            dashboard_sessions.update()
            .where(dashboard_sessions.c.id_hash == token_hash(live.token))
            .values(last_seen_at=now - timedelta(days=3), expires_at=now + timedelta(days=11))
        )
    assert users.session(stale.token) is None
    slid = users.session(live.token)
    assert slid is not None
    assert slid.expires_at > now + SESSION_LIFETIME - timedelta(minutes=1)
    with any_catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(dashboard_sessions.c.id_hash)).scalars().all()
    assert rows == [token_hash(live.token)]  # the expired one is gone


def test_a_new_password_or_deleting_the_user_ends_their_sessions(any_catalog: Catalog) -> None:
    users = any_catalog.users
    ann = users.create("ann@example.com", "correct horse")
    bob = users.create("bob@example.com", "battery staple")
    ann_session, bob_session = users.start_session(ann), users.start_session(bob)
    users.set_password("Ann@example.com", "new password")
    assert users.session(ann_session.token) is None
    assert users.authenticate("ann@example.com", "correct horse") is None
    assert users.authenticate("ann@example.com", "new password") is not None
    with pytest.raises(KeyError):
        users.set_password("nobody@example.com", "new password")
    assert users.session(bob_session.token) is not None
    assert users.delete("BOB@example.com") is True
    assert users.session(bob_session.token) is None
    assert users.delete("bob@example.com") is False
    assert [u.email for u in users.list()] == ["ann@example.com"]


def test_rotating_an_app_secret_refuses_the_old_one(any_catalog: Catalog) -> None:
    """The verified-secret cache is keyed by the stored hash, so a new hash ends the old one
    (with no overlap: tests/security/test_key_rotation.py has rotations with one)."""
    created = any_catalog.create_app("Shop")
    app = created.app
    assert any_catalog.authenticate(app.api_key, created.api_secret) == app  # now cached
    token = any_catalog.issue_workspace_token(app.api_key, created.api_secret)
    assert token is not None and any_catalog.app_by_workspace_token(token) == app
    rotated = any_catalog.rotate_secret(app.id, overlap=timedelta(0))
    assert any_catalog.app_by_workspace_token(token) is None
    assert rotated.api_secret != created.api_secret
    assert rotated.app.app_key == app.app_key and rotated.app.api_key == app.api_key
    assert any_catalog.authenticate(app.api_key, created.api_secret) is None
    assert any_catalog.authenticate(app.api_key, rotated.api_secret) == rotated.app
    again = any_catalog.rotate_secret(app.id, app_key=True, overlap=timedelta(0))
    assert again.app.app_key != app.app_key
    assert any_catalog.app_by_key(app.app_key) is None
    assert any_catalog.app_by_key(again.app.app_key) == again.app
    with pytest.raises(KeyError):
        any_catalog.rotate_secret("0" * 24)
