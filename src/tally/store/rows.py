"""Events and failed events as rows: what a request appends, made where the pipeline ran (an
HTTP worker) and cheap to ship. The store turns the rows of a whole load into Arrow columns at once
(``store.columns``); this module does not need Arrow, so an HTTP worker never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from tally.ids import dedup_key
from tally.model import Event, FailedEvent

_json = msgspec.json.Encoder()

EVENT_COLUMN_NAMES: tuple[str, ...] = (
    "app_id",
    "id",
    "name",
    "label",
    "time",
    "received_at",
    "user_id",
    "device_id",
    "session_id",
    "count",
    "sum",
    "dur",
    "properties",
    "undefined_properties",
    "protocol",
    "sdk_name",
    "sdk_version",
    "ip",
    "user_agent",
    "browser",
    "os",
    "device_type",
    "url",
    "referrer",
    "locale",
    "timezone",
    "internal",
    "country_code",
    "city",
    "location",
    "coerced_properties",
)
"""The events table's columns, in table order; an event row has these, then its dedup digests."""
CONTEXT_COLUMN_NAMES: tuple[str, ...] = (
    *EVENT_COLUMN_NAMES[EVENT_COLUMN_NAMES.index("ip") : EVENT_COLUMN_NAMES.index("timezone") + 1],
    "country_code",
    "city",
    "location",
)
"""The columns the read API nests under an event's ``context`` (and an import accepts there)."""
FAILED_COLUMN_NAMES: tuple[str, ...] = (
    "app_id",
    "received_at",
    "protocol",
    "reason",
    "message",
    "payload",
    "name",
    "event_index",
    "replay",
)
"""The failed events table's columns, in table order: a failed row's fields."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since the epoch: exact, and cheap to ship between processes."""
    return (value - _EPOCH) // _MICROSECOND


EventRow = tuple
"""One accepted event as a tuple in ``EVENT_COLUMN_NAMES`` order, then ``dedup_hi`` and ``dedup_lo``
(None unless the client gave the id)."""
FailedRow = tuple
"""One failed event as a tuple in ``FAILED_COLUMN_NAMES`` order."""


def event_rows(app_id: str, events: Sequence[Event]) -> list[EventRow]:
    """Rows for accepted events; every event must have passed the pipeline (id and time set).

    Rows, not columns: building an Arrow array costs microseconds however short it is, so the
    store builds columns once per commit group rather than once per request.
    """
    rows = []
    received: datetime | None = None
    received_micros = 0
    for e in events:
        hi, lo = dedup_key(app_id, e.id or "") if e.client_id else (None, None)
        if e.received_at is not received:  # one request's events share it: converted once
            received = e.received_at
            received_micros = micros(received)
        rows.append(
            (
                app_id,
                e.id,
                e.name,
                e.label,
                received_micros if e.time is received else micros(e.time),
                received_micros,
                e.user_id,
                e.device_id,
                e.session_id,
                e.count,
                e.sum,
                e.dur,
                _json.encode(e.properties).decode() if e.properties else None,
                e.undefined_properties or None,
                e.protocol,
                e.sdk_name,
                e.sdk_version,
                e.ip,
                e.user_agent,
                e.browser,
                e.os,
                e.device_type,
                e.url,
                e.referrer,
                e.locale,
                e.timezone,
                e.internal,
                e.country_code,
                e.city,
                e.location,
                e.coerced_properties or None,
                hi,
                lo,
            )
        )
    return rows


def failed_rows(failed: Sequence[FailedEvent]) -> list[FailedRow]:
    return [
        (
            f.app_id,
            micros(f.received_at),
            f.protocol,
            f.reason.value,
            f.message,
            f.payload,
            f.name,
            f.event_index,
            f.replay,
        )
        for f in failed
    ]
