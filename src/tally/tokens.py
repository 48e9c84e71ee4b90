"""JWTs: customer (profile) tokens signed by the app's own back end, and workspace tokens Tally
issues for an API key and secret (Synerise's ``POST /v4/auth/login/profile``)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Final

import jwt

from tally.catalog.models import App

CUSTOMER_ALGORITHMS: Final = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
WORKSPACE_LIFETIME: Final = timedelta(hours=1)
_WORKSPACE_AUDIENCE = "tally:workspace"


class InvalidToken(Exception):
    pass


def verify_customer_token(app: App, token: str) -> str:
    """The customer id (``sub``) of a valid customer JWT for this app.

    Tokens are signed by the app's back end with its private key; the app's settings hold the
    public key (``customer_jwt_key``), as Synerise verifies profile JWTs with an uploaded
    certificate. ``exp`` is required.
    """
    key = app.settings.customer_jwt_key
    if key is None:
        raise InvalidToken("this app accepts no customer JWTs (no customer_jwt_key is set)")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=CUSTOMER_ALGORITHMS,
            options={"require": ["exp", "sub"], "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the customer JWT is not valid: {exc}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the customer JWT's sub must name the customer")
    return subject


def _workspace_key(secret_hash: str) -> bytes:
    # Derived from the stored hash of the API secret: rotating the secret revokes its tokens.
    return hashlib.sha256(b"tally workspace token\x00" + secret_hash.encode()).digest()


def issue_workspace_token(app: App, secret_hash: str, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "sub": app.id,
        "aud": _WORKSPACE_AUDIENCE,
        "iat": issued,
        "exp": issued + WORKSPACE_LIFETIME,
    }
    return jwt.encode(claims, _workspace_key(secret_hash), algorithm="HS256")


def workspace_token_app(token: str) -> str:
    """The app id a workspace token claims (not yet verified: see ``verify_workspace_token``)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not a JWT: {exc}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise InvalidToken("the token names no app")
    return subject


def verify_workspace_token(token: str, secret_hash: str) -> None:
    try:
        jwt.decode(
            token,
            _workspace_key(secret_hash),
            algorithms=["HS256"],
            audience=_WORKSPACE_AUDIENCE,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from None
