"""The Arrow side of event and failed-event rows (``store.rows``): the tables' column types, and
the rows of a whole load as Arrow tables (what a commit inserts). Store side only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tally.store.rows import EVENT_COLUMN_NAMES, FAILED_COLUMN_NAMES, EventRow, FailedRow

_TS = pa.timestamp("us")
_TEXT_LIST = pa.list_(pa.string())

_EVENT_TYPES: dict[str, pa.DataType] = {
    "time": _TS,
    "received_at": _TS,
    "count": pa.int64(),
    "sum": pa.float64(),
    "dur": pa.float64(),
    "undefined_properties": _TEXT_LIST,
    "internal": pa.bool_(),
    "coerced_properties": _TEXT_LIST,
}
"""The events table's columns that are not text."""
EVENT_COLUMNS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (name, _EVENT_TYPES.get(name, pa.string())) for name in EVENT_COLUMN_NAMES
)
"""Columns stored in the events table, in table order, with their types."""

# Dedup digests travel with the batch but are not stored in the events table.
EVENT_SCHEMA = pa.schema([*EVENT_COLUMNS, ("dedup_hi", pa.uint64()), ("dedup_lo", pa.uint64())])

_FAILED_TYPES: dict[str, pa.DataType] = {
    "received_at": _TS,
    "payload": pa.binary(),
    "event_index": pa.int32(),
    "replay": pa.binary(),
}
"""The failed events table's columns that are not text."""
FAILED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (name, _FAILED_TYPES.get(name, pa.string())) for name in FAILED_COLUMN_NAMES
)
FAILED_SCHEMA = pa.schema(FAILED_COLUMNS)


CHUNK_ROWS = 2_000
"""Rows converted to Arrow at a time. Converting Python rows holds the GIL (~2 µs a row); in
pieces, the threads that answer clients get it back every few milliseconds, even while the journal
loader converts a whole load."""


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
