"""How a batch travels through the log: one JetStream message per event (and per failed event),
one per request for its discard counts. Payloads are msgpack (``msgspec``), as between the HTTP
workers and the store process (``store.wire``).

| subject            | payload                        | ``Nats-Msg-Id``                          |
|--------------------|--------------------------------|------------------------------------------|
| ``STREAM.event``   | the event row (``columns``)    | ``APP/ID`` for client-supplied ids       |
| ``STREAM.failed``  | the failed-event row           | the failed event's id (made here)        |
| ``STREAM.discarded`` | ``[(app, rule, count), ...]`` | an id made here                          |
| ``STREAM.live``    | ``AppendBatch`` of stored events (core NATS, published by loaders) | - |
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import msgspec

from tally.ids import uuid7
from tally.sink import AppendBatch
from tally.store.clickhouse_rows import has_client_id

MSG_ID = "Nats-Msg-Id"
EVENT, FAILED, DISCARDED, LIVE = "event", "failed", "discarded", "live"
LIVE_CHUNK = 500
"""Events per live message: a core NATS message must stay under the server's max_payload."""

_encoder = msgspec.msgpack.Encoder()
_row = msgspec.msgpack.Decoder(tuple)
_discards = msgspec.msgpack.Decoder(list[tuple[str, str, int]])
_batch = msgspec.msgpack.Decoder(AppendBatch)


@dataclass(frozen=True)
class Outgoing:
    kind: str
    payload: bytes
    msg_id: str | None
    client_id: bool = False
    """An event whose id the client supplied: a duplicate of it counts in ``duplicates``."""


def outgoing(batch: AppendBatch) -> Iterator[Outgoing]:
    """The messages that carry ``batch``."""
    for row in batch.events:
        client_id = has_client_id(row)
        # Only a client-supplied id can come back in a retry; a server-made id (UUIDv7) is new
        # every time, so it would only fill JetStream's duplicate table.
        msg_id = f"{row[0]}/{row[1]}" if client_id else None
        yield Outgoing(EVENT, _encoder.encode(row), msg_id, client_id)
    for row in batch.failed:
        yield Outgoing(FAILED, _encoder.encode(row), uuid7())
    if batch.discarded:
        yield Outgoing(DISCARDED, _encoder.encode(batch.discarded), uuid7())


@dataclass
class Incoming:
    """Decoded messages of one loader fetch, ready for one store append."""

    batch: AppendBatch = field(default_factory=AppendBatch)
    failed_ids: list[str] = field(default_factory=list)
    unreadable: int = 0


def decode(messages: Sequence[tuple[str, bytes, str | None]]) -> Incoming:
    """``(subject, payload, msg id)`` of fetched messages into one batch. A failed event keeps its
    message id as its id, so a redelivered one replaces itself in the store."""
    incoming = Incoming()
    for subject, payload, msg_id in messages:
        kind = subject.rpartition(".")[2]
        try:
            if kind == EVENT:
                incoming.batch.events.append(_row.decode(payload))
            elif kind == FAILED:
                incoming.batch.failed.append(_row.decode(payload))
                incoming.failed_ids.append(msg_id or uuid7())
            elif kind == DISCARDED:
                incoming.batch.discarded.extend(_discards.decode(payload))
            else:
                incoming.unreadable += 1
        except msgspec.DecodeError:
            incoming.unreadable += 1
    return incoming


def live_payloads(rows: Sequence[tuple]) -> Iterator[bytes]:
    for start in range(0, len(rows), LIVE_CHUNK):
        yield _encoder.encode(AppendBatch(events=list(rows[start : start + LIVE_CHUNK])))


def decode_live(payload: bytes) -> AppendBatch:
    return _batch.decode(payload)
