"""Events and failed events as Arrow record batches: the unit a sink appends.

Batches are built where the pipeline ran (an HTTP worker), so the process that owns the store only
concatenates, deduplicates and inserts.
"""

from __future__ import annotations

from collections.abc import Sequence

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
)
FAILED_SCHEMA = pa.schema(FAILED_COLUMNS)


def _naive_utc(value):  # type: ignore[no-untyped-def]
    return value.replace(tzinfo=None) if value is not None else None


def events_to_arrow(app_id: str, events: Sequence[Event]) -> pa.RecordBatch:
    """Columns for accepted events; every event must have passed the pipeline (id and time set)."""
    his: list[int | None] = []
    los: list[int | None] = []
    for event in events:
        if event.client_id:
            hi, lo = dedup_key(app_id, event.id or "")
            his.append(hi)
            los.append(lo)
        else:
            his.append(None)
            los.append(None)
    n = len(events)
    columns = [
        [app_id] * n,
        [e.id for e in events],
        [e.name for e in events],
        [e.label for e in events],
        [_naive_utc(e.time) for e in events],
        [_naive_utc(e.received_at) for e in events],
        [e.user_id for e in events],
        [e.device_id for e in events],
        [e.session_id for e in events],
        [e.count for e in events],
        [e.sum for e in events],
        [e.dur for e in events],
        [_json.encode(e.properties).decode() if e.properties else None for e in events],
        [e.undefined_properties or None for e in events],
        [e.protocol for e in events],
        [e.sdk_name for e in events],
        [e.sdk_version for e in events],
        [e.ip for e in events],
        [e.user_agent for e in events],
        [e.browser for e in events],
        [e.os for e in events],
        [e.device_type for e in events],
        [e.url for e in events],
        [e.referrer for e in events],
        [e.locale for e in events],
        [e.timezone for e in events],
        his,
        los,
    ]
    arrays = [
        pa.array(col, type=field.type) for col, field in zip(columns, EVENT_SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)


def failed_to_arrow(failed: Sequence[FailedEvent]) -> pa.RecordBatch:
    columns = [
        [f.app_id for f in failed],
        [_naive_utc(f.received_at) for f in failed],
        [f.protocol for f in failed],
        [f.reason.value for f in failed],
        [f.message for f in failed],
        [f.payload for f in failed],
        [f.name for f in failed],
        [f.event_index for f in failed],
    ]
    arrays = [
        pa.array(col, type=field.type) for col, field in zip(columns, FAILED_SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=FAILED_SCHEMA)


def to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.RecordBatch:
    reader = pa.ipc.open_stream(data)
    batches = list(reader)
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, schema=reader.schema).combine_chunks().to_batches()[0]
