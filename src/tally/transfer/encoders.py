"""The export formats' encoders (``transfer.formats``), a batch at a time, on Arrow."""

from __future__ import annotations

from typing import Any, Final, Protocol

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tally.store.base import EXPORT_COLUMNS
from tally.store.columns import EVENT_COLUMNS
from tally.transfer.formats import FORMATS, LIST_COLUMNS, TIME_COLUMNS, TIME_FORMAT

_TYPES = dict(EVENT_COLUMNS)
STORED_SCHEMA: Final = pa.schema([(name, _TYPES[name]) for name in EXPORT_COLUMNS])
"""An export batch as the store gives it (times are UTC without a zone)."""
PARQUET_SCHEMA: Final = pa.schema(
    [
        (f.name, pa.timestamp("us", tz="UTC") if f.name in TIME_COLUMNS else f.type)
        for f in STORED_SCHEMA
    ]
)

_json = msgspec.json.Encoder()


def stored(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """A batch from the store with exactly the export's columns and types."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.select(list(EXPORT_COLUMNS)).cast(STORED_SCHEMA)


def _text_times(table: pa.Table) -> pa.Table:
    for name in TIME_COLUMNS:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.strftime(table[name], format=TIME_FORMAT))
    return table


class Encoder(Protocol):
    def encode(self, table: pa.Table) -> bytes:
        """The bytes for one batch (in ``STORED_SCHEMA``)."""
        ...

    def finish(self) -> bytes:
        """What ends the file (a CSV header if no row came, Parquet's footer)."""
        ...


class JsonLinesEncoder:
    def encode(self, table: pa.Table) -> bytes:
        rows: list[dict[str, Any]] = _text_times(table).to_pylist()
        for row in rows:
            text = row["properties"]
            # Stored as JSON text already: embedded as it is, not decoded and encoded again.
            row["properties"] = msgspec.Raw(text.encode()) if text else {}
            for name in LIST_COLUMNS:
                row[name] = row[name] or []
        return _json.encode_lines(rows)

    def finish(self) -> bytes:
        return b""


class CsvEncoder:
    def __init__(self) -> None:
        self._header = True

    def encode(self, table: pa.Table) -> bytes:
        table = _text_times(table)
        for name in LIST_COLUMNS:
            index = table.schema.get_field_index(name)
            values = [_json.encode(v).decode() if v else None for v in table[name].to_pylist()]
            table = table.set_column(index, name, pa.array(values, pa.string()))
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=self._header))
        self._header = False
        return sink.getvalue().to_pybytes()

    def finish(self) -> bytes:
        return self.encode(STORED_SCHEMA.empty_table()) if self._header else b""


class _Drain:
    """A write-only file for ParquetWriter that hands on what was written since the last drain.
    Parquet needs no seeking (the footer, written last, holds the offsets), only ``tell``."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ParquetEncoder:
    def __init__(self) -> None:
        self._sink = _Drain()
        self._writer = pq.ParquetWriter(self._sink, PARQUET_SCHEMA)

    def encode(self, table: pa.Table) -> bytes:
        self._writer.write_table(table.cast(PARQUET_SCHEMA))
        return self._sink.drain()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.drain()


def encoder(fmt: str) -> Encoder:
    if fmt == "jsonl":
        return JsonLinesEncoder()
    if fmt == "csv":
        return CsvEncoder()
    if fmt == "parquet":
        return ParquetEncoder()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
