"""The export file formats, written a batch at a time.

Every format carries the events table's columns by their stored names (``store.base.
EXPORT_COLUMNS``: ``user_id``, ``device_id``, ``sdk_name``...), oldest event first:

- ``jsonl``: one JSON object per line; ``properties`` an object, the property lists arrays, times
  ISO 8601 in UTC (``2026-03-01T12:00:00.000000Z``).
- ``csv``: a header, then one row per event; ``properties`` and the property lists as JSON text,
  times as in ``jsonl``, an empty cell for a missing value.
- ``parquet``: typed columns (times ``timestamp[us, UTC]``, property lists ``list<string>``),
  ``properties`` as JSON text; one row group per batch.

``tally import`` reads all three back. The encoders, which need Arrow, are in
``transfer.encoders`` (loaded by an HTTP worker only when it exports).
"""

from __future__ import annotations

from typing import Final

FORMATS: Final = ("jsonl", "csv", "parquet")
MEDIA_TYPES: Final = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
BATCH_ROWS: Final = {"jsonl": 10_000, "csv": 10_000, "parquet": 50_000}
"""Rows per batch read from the store (for Parquet, per row group)."""

TIME_COLUMNS: Final = ("time", "received_at")
LIST_COLUMNS: Final = ("undefined_properties", "coerced_properties")
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
"""With microsecond timestamps Arrow writes the seconds with six decimals."""


def format_of(path: str) -> str | None:
    """The format a file name suggests, if any."""
    lower = path.lower()
    for suffix, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".csv", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if lower.endswith(suffix):
            return fmt
    return None
