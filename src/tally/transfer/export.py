"""Exports: an app's events (or one person's) as a stream of file chunks, batch by batch, never
the whole export in memory. The CLI writes the chunks to a file; the HTTP API streams them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

from tally.pipeline.timeparse import TimeError, parse_instant
from tally.store.base import EventStore, ExportQuery
from tally.transfer.formats import BATCH_ROWS


def parse_bound(text: str) -> datetime:
    """A --from/--to bound: ISO 8601 (a date alone is its midnight, UTC), or epoch s/ms."""
    try:
        return parse_instant(text)
    except TimeError:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise TimeError(
                f"{text!r} is not a date, an ISO 8601 time or an epoch number"
            ) from None
        return parse_instant(datetime(day.year, day.month, day.day, tzinfo=UTC))


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ValueError("from must be before to")


async def export_chunks(
    store: EventStore, query: ExportQuery, fmt: str, batch_rows: int | None = None
) -> AsyncIterator[tuple[bytes, int]]:
    """The export file as chunks, each with the number of events it adds (0 for the end)."""
    from tally.transfer.encoders import encoder, stored  # Arrow: loaded on the first export

    encode = encoder(fmt)
    batches = store.export_batches(query, batch_rows or BATCH_ROWS[fmt])
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield encode.encode(stored(batch)), batch.num_rows
    tail = encode.finish()
    if tail:
        yield tail, 0


async def export_bytes(
    store: EventStore, query: ExportQuery, fmt: str, batch_rows: int | None = None
) -> AsyncIterator[bytes]:
    """The chunks alone (an HTTP response body)."""
    chunks = export_chunks(store, query, fmt, batch_rows)
    async with contextlib.aclosing(chunks):
        async for chunk, _ in chunks:
            if chunk:
                yield chunk
