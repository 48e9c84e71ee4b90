"""Size and count limits applied to incoming data. Configurable; the defaults are documented."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 1_048_576
    """Largest request body accepted, in bytes (413 above it)."""
    max_event_bytes: int = 32_768
    """Largest single event accepted, in bytes, as sent on the wire."""
    max_events_per_request: int = 10_000
    max_properties: int = 300
    max_id_length: int = 128
    dedup_window_days: int = 7
    """How long a client-supplied event id is remembered for deduplication."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """Defaults overridden by ``TALLY_MAX_BODY_BYTES``, ``TALLY_DEDUP_WINDOW_DAYS``, ..."""
        values = {}
        for name in cls.__struct_fields__:
            raw = environ.get(f"TALLY_{name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(
                    f"TALLY_{name.upper()} must be a whole number, got {raw!r}"
                ) from None
        return cls(**values).checked()

    def checked(self) -> Limits:
        for name in self.__struct_fields__:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        return self
