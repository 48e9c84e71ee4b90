"""Catalog records as the rest of Tally sees them."""

from __future__ import annotations

import enum
import ipaddress
from datetime import datetime
from typing import Final

import msgspec


class NameRule(enum.StrEnum):
    """Event name rules; by default each protocol applies its own (see ``pipeline.names``)."""

    PROTOCOL = "protocol"
    """Each protocol's documented rule."""
    SYNERISE = "synerise"
    """At most 32 characters of letters, digits, '.', '-' and '_'."""
    ENGAGELAB = "engagelab"
    """Lowercase letters, digits and '_', starting with a letter."""
    COUNTLY = "countly"
    """Under 128 characters, anything else allowed."""
    ANY = "any"
    """Any non-empty name up to 255 characters (Segment, the native API)."""


class Convention(enum.StrEnum):
    """The ``context.action`` naming convention (``page.visit``, ``product.buy``)."""

    OFF = "off"
    WARN = "warn"
    """Accept, and count the name in ``tally_name_convention_warnings_total``."""
    ENFORCE = "enforce"


class AppSettings(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-app options, stored as one JSON document so new options need no schema change."""

    countly_salt: str | None = None
    """When set, Countly requests must carry a checksum or checksum256 made with this salt."""
    name_rule: NameRule = NameRule.PROTOCOL
    convention: Convention = Convention.WARN
    """Applies where the Synerise rule does (Synerise endpoints, the browser tracker)."""
    strict: bool = False
    """Every path requires a definition, not only the browser tracker and customer JWTs."""
    allowlist: list[str] = msgspec.field(default_factory=list)
    """Glob patterns (``checkout.*``); when set, only matching events are stored."""
    denylist: list[str] = msgspec.field(default_factory=list)
    """Glob patterns (``debug.*``); matching events are discarded before storage."""
    filter_bots: bool = False
    """Discard events whose user agent is a known bot or crawler."""
    internal_ips: list[str] = msgspec.field(default_factory=list)
    """Addresses or CIDR networks whose traffic is discarded (the team's own)."""
    customer_jwt_key: str | None = None
    """PEM public key (RSA or EC) that verifies customer JWTs (Synerise-style profile tokens)."""
    customer_jwt_secret: str | None = None
    """Shared secret (32 characters or more) that verifies HS256 customer JWTs; a secret:
    never shown, only whether it is set."""
    customer_jwt_audience: str | None = None
    """When set, customer JWTs must carry this ``aud``."""
    customer_jwt_issuer: str | None = None
    """When set, customer JWTs must carry this ``iss``."""
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    """Browser origins (``https://shop.example.com``, ``https://*.example.com``) allowed to send
    with the public app key; empty: any (``http.origins``)."""
    retention_days: int | None = None
    """Delete events whose time is more than this many days ago (hourly, see
    docs/export-import.md); None keeps events forever."""


class App(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """24 hex characters."""
    name: str
    app_key: str
    """Public key for browser and SDK writes."""
    api_key: str
    """Server key for server-side writes and reads, used with the secret."""
    created_at: datetime
    settings: AppSettings = AppSettings()
    catalog_version: int = 0
    """Bumped by every change to the app's definitions or aliases, so workers reload them."""
    previous_app_key: str | None = None
    """The app key a rotation replaced, still accepted until ``previous_app_key_until``."""
    previous_app_key_until: datetime | None = None
    previous_secret_until: datetime | None = None
    """Until when the API secret a rotation replaced is still accepted (None: it is not)."""

    def accepts_app_key(self, key: str, now: datetime) -> bool:
        """Whether ``key`` is this app's key at ``now``: the current one, or the previous one
        within its rotation's overlap window."""
        if key == self.app_key:
            return True
        until = self.previous_app_key_until
        return key == self.previous_app_key and until is not None and now < until

    def public(self) -> App:
        """The app with its secret settings shown only as ``"set"``."""
        return msgspec.structs.replace(self, settings=redacted(self.settings))


class NewApp(msgspec.Struct, frozen=True, kw_only=True):
    """A just-created app with its API secret, which is shown this once and stored only hashed."""

    app: App
    api_secret: str

    def to_dict(self) -> dict[str, object]:
        data = msgspec.to_builtins(self.app.public())
        data["api_secret"] = self.api_secret
        return data


SECRET_SETTINGS: Final = ("countly_salt", "customer_jwt_secret")
"""Settings that are secrets: written, never read back (shown as ``"set"`` or null)."""

MIN_JWT_SECRET = 32
"""Characters of a customer JWT shared secret at least (RFC 7518: as long as the hash, 256 bits)."""


def redacted(settings: AppSettings) -> AppSettings:
    """``settings`` with each secret replaced by ``"set"`` (or None when it is not set)."""
    return msgspec.structs.replace(
        settings, **{name: "set" if getattr(settings, name) else None for name in SECRET_SETTINGS}
    )


def check_settings(settings: AppSettings) -> None:
    """Refuse settings the pipeline could not apply, with a message that says which and why."""
    for network in settings.internal_ips:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(
                f"internal_ips: {network!r} is not an address or CIDR network"
            ) from None
    for field in ("allowlist", "denylist"):
        for pattern in getattr(settings, field):
            if not pattern or len(pattern) > 255:
                raise ValueError(f"{field}: patterns must be 1 to 255 characters")
    if settings.retention_days is not None and settings.retention_days < 1:
        raise ValueError("retention_days: must be at least 1 (or null to keep events forever)")
    if settings.customer_jwt_key is not None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(settings.customer_jwt_key.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"customer_jwt_key: not a PEM public key ({exc})") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("customer_jwt_key: must be an RSA or EC public key")
    _check_jwt_settings(settings)
    from tally.http.origins import check_allowed_origins

    try:
        check_allowed_origins(settings.allowed_origins)
    except ValueError as exc:
        raise ValueError(f"allowed_origins: {exc}") from None


def _check_jwt_settings(settings: AppSettings) -> None:
    secret = settings.customer_jwt_secret
    if secret is not None:
        if len(secret) < MIN_JWT_SECRET:
            raise ValueError(
                f"customer_jwt_secret: must be at least {MIN_JWT_SECRET} characters "
                "(a random string; HS256 needs 256 bits)"
            )
        if "-----BEGIN" in secret:
            raise ValueError(
                "customer_jwt_secret: looks like a PEM key; put public keys in customer_jwt_key"
            )
    for name in ("customer_jwt_audience", "customer_jwt_issuer"):
        value = getattr(settings, name)
        if value is not None and not 1 <= len(value) <= 255:
            raise ValueError(f"{name}: must be 1 to 255 characters (or null)")
