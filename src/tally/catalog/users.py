"""Dashboard users and their sessions (docs/dashboard-auth.md).

A user is an email address (unique whatever its case: stored lower-cased) and an argon2 hash of
a password. A session is a random id, given to the browser once as a cookie; the catalog keeps
only its SHA-256, so a copy of the catalog does not let anyone log in. Sessions last
``SESSION_LIFETIME`` from their last use (sliding), and end at once when revoked: on log-out,
when the user's password changes and when the user is deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tally import ids
from tally.catalog.schema import dashboard_sessions, dashboard_users
from tally.catalog.secrets import hash_secret, verify_secret
from tally.utc import aware

SESSION_LIFETIME: Final = timedelta(days=14)
SLIDE_EVERY: Final = timedelta(minutes=1)
"""A session's expiry moves forward at most this often (not a write on every request)."""
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024
MAX_EMAIL: Final = 320

_DUMMY_HASH: Final = hash_secret("not a password anybody has")
"""Verified against when the email is unknown, so the answer takes as long as for a known one."""


class UserError(ValueError):
    """A user cannot be created or changed as asked (the message says why)."""


class UserExists(UserError):
    pass


class DashboardUser(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    created_at: datetime
    last_login_at: datetime | None = None


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id_hash: str
    user: DashboardUser
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    """A just-created session with its id: the cookie's value, known only to the browser."""

    token: str
    session: Session


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    email = normalise_email(email)
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or len(email) > MAX_EMAIL
        or any(c.isspace() for c in email)
    ):
        raise UserError(f"{email!r} is not an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password must have at most {MAX_PASSWORD} characters")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of a session: an HMAC keyed with the session id, so every worker derives
    the same one and nothing more is stored; it does not reveal the session id."""
    return hmac.new(token.encode(), b"tally-csrf", "sha256").hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _user(row: sa.Row) -> DashboardUser:
    created = aware(row.created_at)
    assert created is not None
    return DashboardUser(
        id=row.id, email=row.email, created_at=created, last_login_at=aware(row.last_login_at)
    )


class UserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # users

    def create(self, email: str, password: str) -> DashboardUser:
        email = check_email(email)
        check_password(password)
        user = DashboardUser(id=ids.new_app_id(), email=email, created_at=_now())
        password_hash = hash_secret(password)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    dashboard_users.insert().values(
                        id=user.id,
                        email=user.email,
                        password_hash=password_hash,
                        created_at=user.created_at,
                    )
                )
        except sa.exc.IntegrityError:
            raise UserExists(f"a user with email {email!r} exists already") from None
        return user

    def list(self) -> list[DashboardUser]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dashboard_users).order_by(dashboard_users.c.email))
            return [_user(row) for row in rows]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(dashboard_users)).scalar() or 0
            )

    def get(self, email: str) -> DashboardUser | None:
        row = self._row(email)
        return _user(row) if row else None

    def _row(self, email: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(dashboard_users).where(dashboard_users.c.email == normalise_email(email))
            ).first()

    def delete(self, email: str) -> bool:
        """Delete a user and end their sessions; False if there is no such user."""
        with self.engine.begin() as conn:
            user_id = conn.execute(
                sa.select(dashboard_users.c.id).where(
                    dashboard_users.c.email == normalise_email(email)
                )
            ).scalar()
            if user_id is None:
                return False
            conn.execute(dashboard_sessions.delete().where(dashboard_sessions.c.user_id == user_id))
            conn.execute(dashboard_users.delete().where(dashboard_users.c.id == user_id))
        return True

    def set_password(self, email: str, password: str) -> DashboardUser:
        """Change a user's password and end every session they have (KeyError if unknown)."""
        check_password(password)
        password_hash = hash_secret(password)
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(dashboard_users).where(dashboard_users.c.email == normalise_email(email))
            ).first()
            if row is None:
                raise KeyError(email)
            conn.execute(
                dashboard_users.update()
                .where(dashboard_users.c.id == row.id)
                .values(password_hash=password_hash)
            )
            conn.execute(dashboard_sessions.delete().where(dashboard_sessions.c.user_id == row.id))
        return _user(row)

    def authenticate(self, email: str, password: str) -> DashboardUser | None:
        """The user with this email and password (their last login is recorded), or None."""
        row = self._row(email)
        if row is None:
            verify_secret(_DUMMY_HASH, password)
            return None
        if not verify_secret(row.password_hash, password):
            return None
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                dashboard_users.update()
                .where(dashboard_users.c.id == row.id)
                .values(last_login_at=now)
            )
        return msgspec.structs.replace(_user(row), last_login_at=now)

    # sessions

    def start_session(self, user: DashboardUser) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = _now()
        session = Session(
            id_hash=token_hash(token),
            user=user,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
            last_seen_at=now,
        )
        with self.engine.begin() as conn:
            conn.execute(dashboard_sessions.delete().where(dashboard_sessions.c.expires_at < now))
            conn.execute(
                dashboard_sessions.insert().values(
                    id_hash=session.id_hash,
                    user_id=user.id,
                    created_at=now,
                    expires_at=session.expires_at,
                    last_seen_at=now,
                )
            )
        return NewSession(token=token, session=session)

    def session(self, token: str) -> Session | None:
        """The live session with this id, its expiry moved forward; None if it has expired or
        was ended."""
        key = token_hash(token)
        now = _now()
        s, u = dashboard_sessions.c, dashboard_users.c
        query = (
            sa.select(
                s.user_id,
                s.created_at,
                s.expires_at,
                s.last_seen_at,
                u.email,
                u.created_at.label("user_created_at"),
                u.last_login_at,
            )
            .select_from(dashboard_sessions)
            .join(dashboard_users, dashboard_users.c.id == dashboard_sessions.c.user_id)
            .where(dashboard_sessions.c.id_hash == key)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        expires_at, last_seen = aware(row.expires_at), aware(row.last_seen_at)
        created = aware(row.created_at)
        assert expires_at is not None and last_seen is not None and created is not None
        if expires_at <= now:
            self.end_session(token)
            return None
        if now - last_seen >= SLIDE_EVERY:
            last_seen, expires_at = now, now + SESSION_LIFETIME
            with self.engine.begin() as conn:
                conn.execute(
                    dashboard_sessions.update()
                    .where(dashboard_sessions.c.id_hash == key)
                    .values(last_seen_at=last_seen, expires_at=expires_at)
                )
        user = DashboardUser(
            id=row.user_id,
            email=row.email,
            created_at=aware(row.user_created_at) or created,
            last_login_at=aware(row.last_login_at),
        )
        return Session(
            id_hash=key,
            user=user,
            created_at=created,
            expires_at=expires_at,
            last_seen_at=last_seen,
        )

    def end_session(self, token: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                dashboard_sessions.delete().where(dashboard_sessions.c.id_hash == token_hash(token))
            )
        return bool(result.rowcount)
