"""``store.rows`` rows as ClickHouse insert columns, and stored rows back as records.

Rows carry times as microseconds since the epoch, which is how the ClickHouse tables keep them
(see ``clickhouse_schema``), so the conversion is mostly a transpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from tally.model import LINK_EVENT, LINK_PREVIOUS
from tally.store.rows import EVENT_COLUMN_NAMES, micros

_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

INSERT_COLUMNS: tuple[str, ...] = (*EVENT_COLUMN_NAMES, "prop_keys", "prop_values")
_ARRAYS = {
    EVENT_COLUMN_NAMES.index("undefined_properties"),
    EVENT_COLUMN_NAMES.index("coerced_properties"),
}
_N = len(EVENT_COLUMN_NAMES)
_APP, _ID, _NAME = (EVENT_COLUMN_NAMES.index(c) for c in ("app_id", "id", "name"))
_RECEIVED = EVENT_COLUMN_NAMES.index("received_at")
_USER, _DEVICE = EVENT_COLUMN_NAMES.index("user_id"), EVENT_COLUMN_NAMES.index("device_id")
_PROPERTIES = EVENT_COLUMN_NAMES.index("properties")
_INTERNAL = EVENT_COLUMN_NAMES.index("internal")
_DEDUP_HI = _N
"""Rows end with the dedup digests: set (not None) when the id came from the client."""


def as_datetime(value: int) -> datetime:
    """Stored microseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


def value_text(value: Any) -> str:
    """A property value as DuckDB's ``json_extract_string`` gives it."""
    if isinstance(value, str):
        return value
    return _encode.encode(value).decode()


def property_arrays(properties: str | None) -> tuple[list[str], list[str]]:
    """Top-level keys and their values as text; keys whose value is null are left out."""
    if not properties:
        return [], []
    decoded = _decode.decode(properties)
    if not isinstance(decoded, dict):
        return [], []
    keys, values = [], []
    for key, value in decoded.items():
        if value is not None:
            keys.append(key)
            values.append(value_text(value))
    return keys, values


def has_client_id(row: tuple) -> bool:
    return row[_DEDUP_HI] is not None


def row_key(row: tuple) -> tuple[str, str]:
    return row[_APP], row[_ID]


def insert_columns(rows: Sequence[tuple]) -> list[list[Any]]:
    """Columns in ``INSERT_COLUMNS`` order for a columnar insert."""
    columns: list[list[Any]] = [[] for _ in INSERT_COLUMNS]
    for row in rows:
        for index in range(_N):
            value = row[index]
            if index in _ARRAYS:
                value = value or []
            elif index == _INTERNAL:
                value = 1 if value else 0
            columns[index].append(value)
        keys, values = property_arrays(row[_PROPERTIES])
        columns[_N].append(keys)
        columns[_N + 1].append(values)
    return columns


def identity_links(rows: Iterable[tuple]) -> list[tuple[str, str, str, int]]:
    """(app, from, to, linked at) pairs the events state, as duckdb_store's ``_LINK_SQL`` derives
    them: an event's device and customer; a link event's previous id and its own id. One row per
    pair, at its earliest received time."""
    earliest: dict[tuple[str, str, str], int] = {}
    for row in rows:
        app_id, user_id, device_id = row[_APP], row[_USER], row[_DEVICE]
        pairs = []
        if user_id is not None and device_id is not None:
            pairs.append((device_id, user_id))
        if row[_NAME] == LINK_EVENT and row[_INTERNAL] and row[_PROPERTIES]:
            previous = _decode.decode(row[_PROPERTIES]).get(LINK_PREVIOUS)
            current = user_id if user_id is not None else device_id
            if previous is not None and current is not None:
                pairs.append((value_text(previous), current))
        for from_id, to_id in pairs:
            if from_id == to_id:
                continue
            key = (app_id, from_id, to_id)
            received = row[_RECEIVED]
            if key not in earliest or received < earliest[key]:
                earliest[key] = received
    return [(*key, at) for key, at in earliest.items()]


def event_record(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A stored event as ``fetch_events`` answers it (the embedded store's shape)."""
    record = dict(zip(names, row, strict=True))
    record["properties"] = _decode.decode(record["properties"]) if record["properties"] else {}
    record["internal"] = bool(record["internal"])
    for key in ("time", "received_at"):
        record[key] = as_datetime(record[key])
    return record


def naive_micros(value: datetime) -> int:
    """A datetime (aware, or naive UTC) as stored microseconds."""
    return micros(value if value.tzinfo else value.replace(tzinfo=UTC))


def today() -> date:
    return datetime.now(UTC).date()
