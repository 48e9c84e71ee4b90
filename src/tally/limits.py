"""Size, count, rate and time limits applied to incoming data. Configurable (``TALLY_*``
variables or ``tally serve`` options); every limit, its default and its error: docs/limits.md."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import msgspec

LOOPBACK = ("127.0.0.0/8", "::1")
_ZERO_IS_DEFAULT = frozenset({"dedup_max_ids"})
"""Limits whose 0 means "work it out" rather than "nothing"."""


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 1_048_576
    """Largest request body accepted, in bytes (413 above it)."""
    max_event_bytes: int = 32_768
    """Largest single event accepted, in bytes, as sent on the wire."""
    max_events_per_request: int = 10_000
    max_properties: int = 300
    max_id_length: int = 128
    """Longest client-supplied event id."""
    max_name_length: int = 255
    """Longest event name; a protocol's own name rule may allow fewer (Countly 127...)."""
    max_user_id_length: int = 256
    """Longest user, device or session id."""
    max_key_length: int = 256
    """Longest property name, at any depth."""
    max_string_length: int = 32_768
    """Longest string property value, at any depth, in characters (by default as long as an
    event may be: lower it to refuse long values in smaller events)."""
    max_depth: int = 10
    """Deepest nesting of objects and arrays in one property value."""
    dedup_window_days: int = 7
    """How long a client-supplied event id is remembered for deduplication."""
    dedup_max_ids: int = 0
    """Client ids the embedded store's dedup index holds at most, the newest (it lives in the
    store's memory, ~64 bytes an id); 0: as many as a quarter of ``TALLY_STORE_MEMORY`` holds."""
    rate_limit_ip: float = 0.0
    """Ingest requests per second per client address, per HTTP worker; 0: no limit."""
    rate_limit_ip_burst: int = 0
    """Requests one address may send at once above the rate; 0: twice the rate (at least 1)."""
    rate_limit_app: float = 0.0
    """Ingest requests per second per app, per HTTP worker; 0: no limit."""
    rate_limit_app_burst: int = 0
    rate_limit_exempt: tuple[str, ...] = LOOPBACK
    """Client networks the per-address limit leaves alone (comma-separated in the variable;
    ``none`` for none)."""
    header_timeout: float = 30.0
    """Seconds a connection may take to send a request's headers (and may stay idle between
    requests) before it is closed."""
    body_timeout: float = 60.0
    """Seconds an ingest request may take to send its whole body (408 after)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """Defaults overridden by ``TALLY_MAX_BODY_BYTES``, ``TALLY_RATE_LIMIT_IP``, ..."""
        values: dict[str, object] = {}
        for name in cls.__struct_fields__:
            variable = f"TALLY_{name.upper()}"
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            values[name] = cls.parse_field(variable, name, raw)
        return cls(**values).checked()  # type: ignore[arg-type]

    @classmethod
    def parse_field(cls, source: str, name: str, raw: str) -> object:
        """``raw`` as field ``name`` takes it; ``source`` (a variable or option) names it in
        the error."""
        return _parse(source, raw, getattr(_DEFAULTS, name))

    def checked(self) -> Limits:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, tuple):
                continue
            lowest = 0 if name.startswith("rate_limit_") or name in _ZERO_IS_DEFAULT else 1
            if value < lowest:
                raise ValueError(f"{name} must be at least {lowest}")
        for spec in self.rate_limit_exempt:
            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                raise ValueError(
                    f"rate_limit_exempt: {spec!r} is not an address or network"
                ) from None
        return self


def _parse(variable: str, raw: str, default: object) -> object:
    if isinstance(default, tuple):
        if raw.strip().lower() == "none":
            return ()
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    kind, what = (float, "a number") if isinstance(default, float) else (int, "a whole number")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{variable} must be {what}, got {raw!r}") from None


_DEFAULTS = Limits()
