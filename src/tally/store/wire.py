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


def encode_batch(batch: AppendBatch) -> bytes:
    """A batch travels as its own msgpack blob inside the frame, decoded with its type."""
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> AppendBatch:
    return _batch_decoder.decode(data)


def frame(message: dict[str, Any]) -> bytes:
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """Read one message; raises ``asyncio.IncompleteReadError`` when the peer has gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
    return _decoder.decode(await reader.readexactly(size))
