"""Events and failed events as rows (what a request appends) and Arrow tables (what a commit
inserts).

Rows are made where the pipeline ran (an HTTP worker) and are cheap to ship; the store turns every
row waiting for one commit into Arrow columns at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pyarrow as pa

from tally.ids import dedup_key
from tally.model import Event, FailedEvent

_json = msgspec.json.Encoder()
_TS = pa.timestamp("us")

# Columns stored in the events table, in table order.
EVENT_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("app_id", pa.string()),
    ("id", pa.string()),
    ("name", pa.string()),
    ("label", pa.string()),
    ("time", _TS),
    ("received_at", _TS),
    ("user_id", pa.string()),
    ("device_id", pa.string()),
    ("session_id", pa.string()),
    ("count", pa.int64()),
    ("sum", pa.float64()),
    ("dur", pa.float64()),
    ("properties", pa.string()),
    ("undefined_properties", pa.list_(pa.string())),
    ("protocol", pa.string()),
    ("sdk_name", pa.string()),
    ("sdk_version", pa.string()),
    ("ip", pa.string()),
    ("user_agent", pa.string()),
    ("browser", pa.string()),
    ("os", pa.string()),
    ("device_type", pa.string()),
    ("url", pa.string()),
    ("referrer", pa.string()),
    ("locale", pa.string()),
    ("timezone", pa.string()),
    ("internal", pa.bool_()),
    ("country_code", pa.string()),
    ("city", pa.string()),
    ("location", pa.string()),
    ("coerced_properties", pa.list_(pa.string())),
)
EVENT_COLUMN_NAMES = tuple(name for name, _ in EVENT_COLUMNS)

# Dedup digests travel with the batch but are not stored in the events table.
EVENT_SCHEMA = pa.schema([*EVENT_COLUMNS, ("dedup_hi", pa.uint64()), ("dedup_lo", pa.uint64())])

FAILED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("app_id", pa.string()),
    ("received_at", _TS),
    ("protocol", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("payload", pa.binary()),
    ("name", pa.string()),
    ("event_index", pa.int32()),
    ("replay", pa.binary()),
)
FAILED_SCHEMA = pa.schema(FAILED_COLUMNS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since the epoch: exact, and cheap to ship between processes."""
    return (value - _EPOCH) // _MICROSECOND


EventRow = tuple
"""One accepted event as a tuple in ``EVENT_SCHEMA`` order (dedup digests last)."""
FailedRow = tuple
"""One failed event as a tuple in ``FAILED_SCHEMA`` order."""


def event_rows(app_id: str, events: Sequence[Event]) -> list[EventRow]:
    """Rows for accepted events; every event must have passed the pipeline (id and time set).

    Rows, not columns: building an Arrow array costs microseconds however short it is, so the
    store builds columns once per commit group rather than once per request.
    """
    rows = []
    for e in events:
        hi, lo = dedup_key(app_id, e.id or "") if e.client_id else (None, None)
        rows.append(
            (
                app_id,
                e.id,
                e.name,
                e.label,
                micros(e.time),
                micros(e.received_at),
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


CHUNK_ROWS = 2_000
"""Rows converted to Arrow at a time. Converting Python rows holds the GIL (~2 µs a row); in
pieces, the threads that answer clients get it back every few milliseconds, even while the journal
loader converts 100,000 rows."""


def _chunk(rows: Sequence[tuple], schema: pa.Schema) -> pa.Table:
    columns = zip(*rows, strict=True) if rows else [[] for _ in schema]
    arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _table(rows: Sequence[tuple], schema: pa.Schema) -> pa.Table:
    if len(rows) <= CHUNK_ROWS:
        return _chunk(rows, schema)
    return pa.concat_tables(
        _chunk(rows[start : start + CHUNK_ROWS], schema)
        for start in range(0, len(rows), CHUNK_ROWS)
    )


def events_table(rows: Sequence[EventRow]) -> pa.Table:
    return _table(rows, EVENT_SCHEMA)


def failed_table(rows: Sequence[FailedRow]) -> pa.Table:
    return _table(rows, FAILED_SCHEMA)
