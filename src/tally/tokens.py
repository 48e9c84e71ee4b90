"""JWTs: customer (profile) tokens signed by the app's own back end, and workspace tokens Tally
issues for an API key and secret (Synerise's ``POST /v4/auth/login/profile``)."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tally.catalog.models import App, AppSettings

RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
"""The one algorithm each curve signs with."""
HMAC_ALGORITHMS: Final = ("HS256",)
"""With ``customer_jwt_secret``; longer hashes would want longer secrets (RFC 7518 3.2)."""
CUSTOMER_LEEWAY: Final = timedelta(seconds=30)
"""Clock skew forgiven on ``exp`` (and ``nbf``, ``iat``) of customer JWTs."""
WORKSPACE_LIFETIME: Final = timedelta(hours=1)
_WORKSPACE_AUDIENCE = "tally:workspace"


class InvalidToken(Exception):
    pass


@functools.lru_cache(maxsize=256)
def _public_key(pem: str) -> tuple[Any, tuple[str, ...]]:
    """The loaded key and the algorithms that fit it: RSA keys verify RS*/PS*, an EC key only
    ES* of its own curve."""
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return key, RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
        return key, (EC_ALGORITHMS[key.curve.name],)
    return key, ()


def _verification_key(settings: AppSettings, algorithm: object) -> tuple[Any, str]:
    """The key that verifies a token signed with ``algorithm`` (its header's ``alg``), chosen by
    the algorithm from what the app configured, and only for algorithms that fit that key: a
    token cannot make Tally use the public key as an HMAC secret, or skip the signature."""
    if algorithm in HMAC_ALGORITHMS and settings.customer_jwt_secret:
        return settings.customer_jwt_secret.encode(), str(algorithm)
    if settings.customer_jwt_key:
        key, algorithms = _public_key(settings.customer_jwt_key)
        if algorithm in algorithms:
            return key, str(algorithm)
    accepted = [
        *(HMAC_ALGORITHMS if settings.customer_jwt_secret else ()),
        *(_public_key(settings.customer_jwt_key)[1] if settings.customer_jwt_key else ()),
    ]
    raise InvalidToken(
        f"the customer JWT is not valid: its algorithm {algorithm!r} is not one this app's "
        f"keys verify ({', '.join(accepted)})"
    )


def verify_customer_token(app: App, token: str) -> str:
    """The customer id (``sub``) of a valid customer JWT for this app.

    Tokens are signed by the app's back end: with its private key, the app's settings holding
    the public key (``customer_jwt_key``), as Synerise verifies profile JWTs with an uploaded
    certificate; or with a secret shared with Tally (``customer_jwt_secret``, HS256).
    ``exp`` and ``sub`` are required; ``aud`` and ``iss`` must match when the app sets
    ``customer_jwt_audience`` / ``customer_jwt_issuer``. Times get ``CUSTOMER_LEEWAY``.
    """
    settings = app.settings
    if settings.customer_jwt_key is None and settings.customer_jwt_secret is None:
        raise InvalidToken(
            "this app accepts no customer JWTs (neither customer_jwt_key nor customer_jwt_secret "
            "is set)"
        )
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the customer JWT is not valid: {exc}") from None
    key, algorithm = _verification_key(settings, header.get("alg"))
    required = ["exp", "sub"]
    if settings.customer_jwt_audience is not None:
        required.append("aud")
    if settings.customer_jwt_issuer is not None:
        required.append("iss")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.customer_jwt_audience,
            issuer=settings.customer_jwt_issuer,
            leeway=CUSTOMER_LEEWAY,
            options={"require": required, "verify_aud": settings.customer_jwt_audience is not None},
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


def verify_workspace_token(token: str, secret_hash: str) -> datetime:
    """Check the token against the secret's hash; returns when it expires."""
    try:
        claims = jwt.decode(
            token,
            _workspace_key(secret_hash),
            algorithms=["HS256"],
            audience=_WORKSPACE_AUDIENCE,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from None
    return datetime.fromtimestamp(claims["exp"], UTC)
