"""Framing between HTTP workers and the store process: a 4-byte length, then a msgpack message."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from tally.sink import AppendBatch

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_batch_decoder = msgspec.msgpack.Decoder(AppendBatch)


_HI, _LO = -2, -1
"""Where an event row carries its dedup digest (``store.rows.EventRow``)."""


def encode_batch(batch: AppendBatch) -> bytes:
    """A batch travels as its own msgpack blob inside the frame, decoded with its type."""
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> AppendBatch:
    return _batch_decoder.decode(data)


class SealedBatch(msgspec.Struct, frozen=True):
    """A batch encoded once, where it was made, with what the journal writer needs to know of it
    without decoding it: the journal keeps ``payload`` as it came unless some of its events turn
    out to be duplicates. Decoding and re-encoding every batch in the store process cost it ~2 µs
    of CPU an event (BENCHMARKS.md)."""

    payload: bytes
    """``encode_batch`` of the batch."""
    rows: int
    """Events and failed events."""
    events: int
    keys: list[tuple[int, int, int]]
    """(row index, dedup hi, dedup lo) of each event whose id came from the client."""
    empty: bool = False

    @property
    def batch(self) -> AppendBatch:
        return decode_batch(self.payload)


def seal(batch: AppendBatch) -> SealedBatch:
    keys = [(i, row[_HI], row[_LO]) for i, row in enumerate(batch.events) if row[_HI] is not None]
    return SealedBatch(encode_batch(batch), batch.rows, len(batch.events), keys, empty=batch.empty)


def sealed_message(batch: AppendBatch) -> dict[str, Any]:
    """The append message an HTTP worker sends the store process."""
    return {"op": "append", **msgspec.structs.asdict(seal(batch))}


def unseal_message(message: dict[str, Any]) -> SealedBatch:
    """The store process's side of ``sealed_message``, without decoding the batch."""
    return msgspec.convert(message, SealedBatch)


def frame(message: dict[str, Any]) -> bytes:
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """Read one message; raises ``asyncio.IncompleteReadError`` when the peer has gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
    return _decoder.decode(await reader.readexactly(size))
