"""Size and count limits applied to incoming data. Configurable; the defaults are documented."""

from __future__ import annotations

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
