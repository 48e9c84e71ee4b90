"""Imports (backfills): events from a file through the same pipeline and rules as the ingest API.

The file is JSON lines, CSV or Parquet as ``tally export`` writes them (stored column names), or
JSON lines of native events as ``POST /api/v1/events`` takes them (``user``, ``device``,
``session``); the read API's shape (``sdk`` and ``context`` objects) is read too. Each batch of
rows runs the pipeline as one server-credentialed request (``Access.SERVER``, protocol
``import``): rejected rows become failed events with their reason, accepted ones are appended.

Ids make a re-import a no-op: a row's ``id`` is kept and is a client id, so the dedup index
counts it as a duplicate within its window, and beyond the window an id already stored for the
app at the same event time counts as a duplicate too. Rows without an id get a new one.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final

import msgspec

from tally.catalog import App
from tally.http.ingest import define_first_seen
from tally.http.services import Services
from tally.model import Access, Drop, DropReason, Event
from tally.pipeline import RequestContext
from tally.pipeline.timeparse import TimeError, parse_instant
from tally.sink import AppendBatch
from tally.store.rows import CONTEXT_COLUMN_NAMES, event_rows, failed_rows

PROTOCOL: Final = "import"
BATCH: Final = 1000
"""Rows per pipeline run and append (one 'request')."""
MAX_EXAMPLES: Final = 20

Id = str | int


class ImportRow(msgspec.Struct, kw_only=True):
    """One row, by the stored column names (native names are mapped to them first)."""

    name: str | None = None
    id: str | None = None
    time: str | int | float | None = None
    received_at: str | int | float | None = None
    user_id: Id | None = None
    device_id: Id | None = None
    session_id: Id | None = None
    label: str | None = None
    count: int | None = None
    sum: float | None = None
    dur: float | None = None
    properties: dict[str, Any] | None = None
    coerced_properties: list[str] | None = None
    protocol: str | None = None
    internal: bool | None = None
    sdk_name: str | None = None
    sdk_version: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    browser: str | None = None
    os: str | None = None
    device_type: str | None = None
    url: str | None = None
    referrer: str | None = None
    locale: str | None = None
    timezone: str | None = None
    country_code: str | None = None
    city: str | None = None
    location: str | None = None


_NATIVE_NAMES: Final = {"user": "user_id", "device": "device_id", "session": "session_id"}
_JSON_TEXT: Final = ("properties", "coerced_properties", "undefined_properties")
_json = msgspec.json.Encoder()
_decode_json = msgspec.json.Decoder()


class RowError(ValueError):
    """The row cannot be read as an event (becomes an ``invalid_event`` failed event)."""


def _flatten(record: dict[str, Any], *, text: bool) -> dict[str, Any]:
    """Native and read-API names mapped to stored names; JSON text columns decoded (CSV, Parquet);
    with ``text`` (CSV) an empty cell means no value."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if text and value == "":
            continue
        if key == "sdk" and isinstance(value, dict):
            flat.setdefault("sdk_name", value.get("name"))
            flat.setdefault("sdk_version", value.get("version"))
        elif key == "context" and isinstance(value, dict):
            for name in CONTEXT_COLUMN_NAMES:
                if value.get(name) is not None:
                    flat.setdefault(name, value[name])
        elif key in _NATIVE_NAMES:
            flat.setdefault(_NATIVE_NAMES[key], value)
        else:
            flat[key] = value  # a stored name wins over its native spelling
    for key in _JSON_TEXT:
        value = flat.get(key)
        if isinstance(value, str):
            try:
                flat[key] = _decode_json.decode(value)
            except msgspec.DecodeError:
                raise RowError(f"{key} is not valid JSON") from None
    for key in ("time", "received_at"):
        if isinstance(flat.get(key), datetime):  # Parquet
            flat[key] = flat[key].isoformat()
    return flat


@dataclass
class Row:
    index: int
    """0-based; index + 1 is the line (JSON lines) or the data row (CSV, Parquet)."""
    payload: bytes
    record: dict[str, Any] | None = None
    error: str | None = None


def jsonl_rows(file: IO[bytes], on_bytes: Callable[[int], None]) -> Iterator[Row]:
    for number, line in enumerate(file):
        on_bytes(len(line))
        payload = line.strip()
        if not payload:
            continue
        try:
            record = _decode_json.decode(payload)
        except msgspec.DecodeError as exc:
            yield Row(number, payload, error=f"not valid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield Row(number, payload, error="each line must be a JSON object")
            continue
        yield Row(number, payload, record)


def csv_rows(file: IO[bytes], on_bytes: Callable[[int], None]) -> Iterator[Row]:
    def lines() -> Iterator[str]:
        for line in file:
            on_bytes(len(line))
            yield line.decode("utf-8-sig")

    reader = csv.reader(lines())
    header = next(reader, None)
    if header is None:
        return
    for number, cells in enumerate(reader):
        if not any(cells):
            continue
        if len(cells) != len(header):
            text = ",".join(cells).encode()
            yield Row(number, text, error=f"{len(cells)} cells; the header has {len(header)}")
            continue
        record = dict(zip(header, cells, strict=True))
        yield Row(number, _json.encode(record), record)


def parquet_rows(path: str, on_rows: Callable[[int], None]) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=BATCH):
            on_rows(batch.num_rows)
            for record in batch.to_pylist():
                yield Row(number, _json.encode(record), record)
                number += 1


def _str(value: Id | None) -> str | None:
    return None if value is None else str(value)


def to_event(row: Row, *, text: bool) -> tuple[Event, datetime | None]:
    """The event a row describes, and the time Tally first received it (if the row says)."""
    assert row.record is not None
    try:
        fields = msgspec.convert(_flatten(row.record, text=text), ImportRow, strict=not text)
    except msgspec.ValidationError as exc:
        raise RowError(str(exc)) from None
    received_at = None
    if fields.received_at is not None:
        try:
            received_at = parse_instant(fields.received_at)
        except TimeError as exc:
            raise RowError(f"received_at: {exc}") from None
    event = Event(
        index=row.index,
        protocol=fields.protocol or PROTOCOL,
        name=fields.name,
        id=fields.id,
        raw_time=fields.time,
        label=fields.label,
        user_id=_str(fields.user_id),
        device_id=_str(fields.device_id),
        session_id=_str(fields.session_id),
        count=fields.count,
        sum=fields.sum,
        dur=fields.dur,
        properties=fields.properties or {},
        coerced_properties=list(fields.coerced_properties or []),
        internal=bool(fields.internal),
        sdk_name=fields.sdk_name,
        sdk_version=fields.sdk_version,
        ip=fields.ip,
        user_agent=fields.user_agent,
        browser=fields.browser,
        os=fields.os,
        device_type=fields.device_type,
        url=fields.url,
        referrer=fields.referrer,
        locale=fields.locale,
        timezone=fields.timezone,
        country_code=fields.country_code,
        city=fields.city,
        location=fields.location,
        payload=row.payload,
    )
    return event, received_at


class Rejected(msgspec.Struct):
    row: int
    """1-based: the line (JSON lines) or the data row (CSV, Parquet)."""
    code: str
    message: str


class ImportSummary(msgspec.Struct, kw_only=True):
    rows: int = 0
    """Rows read (blank lines aside)."""
    imported: int = 0
    """Events newly stored."""
    duplicates: int = 0
    """Events whose id was already stored (a re-import)."""
    discarded: int = 0
    """Events discarded by the app's allow/deny lists or traffic filters."""
    rejected: int = 0
    """Rows kept as failed events, with their reasons."""
    reasons: dict[str, int] = msgspec.field(default_factory=dict)
    """Rejected rows per reason."""
    examples: list[Rejected] = msgspec.field(default_factory=list)
    """The first rejected rows (at most 20)."""


@dataclass
class Importer:
    """Runs rows through the pipeline in batches and appends what passes."""

    services: Services
    app: App
    on_rows: Callable[[int], None] | None = None
    """Told how many rows each batch finished."""
    summary: ImportSummary = field(default_factory=ImportSummary)
    _reasons: Counter[str] = field(default_factory=Counter)

    async def run(self, rows: Iterator[Row], *, text: bool) -> ImportSummary:
        pending: list[Row] = []
        for row in rows:
            pending.append(row)
            if len(pending) >= BATCH:
                await self._batch(pending, text=text)
                pending = []
        if pending:
            await self._batch(pending, text=text)
        self.summary.reasons = dict(sorted(self._reasons.items()))
        return self.summary

    async def _batch(self, rows: list[Row], *, text: bool) -> None:
        services, app = self.services, self.app
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        received: dict[int, datetime] = {}
        for row in rows:
            try:
                if row.error is not None:
                    raise RowError(row.error)
                event, received_at = to_event(row, text=text)
            except RowError as exc:
                blank = Event(index=row.index, protocol=PROTOCOL, payload=row.payload)
                errors.append((blank, Drop(DropReason.INVALID_EVENT, str(exc))))
                continue
            events.append(event)
            if received_at is not None:
                received[row.index] = received_at
        ctx = RequestContext(
            app=app,
            rules=await services.resolver.rules(app),
            protocol=PROTOCOL,
            received_at=datetime.now(UTC),
            limits=services.limits,
            access=Access.SERVER,
            # An export holds events the transactions endpoint stored under reserved names.
            allow_reserved=True,
        )
        outcome = services.pipeline.run(events, ctx, errors)
        if ctx.first_seen:
            await define_first_seen(services, ctx)
        for event in outcome.accepted:
            # The pipeline stamps the import's time; an exported event keeps when it arrived.
            event.received_at = received.get(event.index, event.received_at)
        accepted = outcome.accepted
        known = await self._stored(accepted)
        fresh = [e for e in accepted if not (e.client_id and e.id in known)]
        batch = AppendBatch(
            events=event_rows(app.id, fresh),
            failed=failed_rows(outcome.failed),
            discarded=[(app.id, rule, n) for rule, n in outcome.discard_counts.items()],
        )
        if not batch.empty:
            result = await services.store.append(batch)
            self.summary.imported += result.accepted
            self.summary.duplicates += result.duplicates
        self.summary.duplicates += len(accepted) - len(fresh)
        self.summary.rows += len(rows)
        self.summary.discarded += sum(outcome.discard_counts.values())
        self.summary.rejected += len(outcome.rejected)
        for rejection in outcome.rejected:
            self._reasons[rejection.code] += 1
            if len(self.summary.examples) < MAX_EXAMPLES:
                self.summary.examples.append(
                    Rejected(rejection.index + 1, rejection.code, rejection.message)
                )
        if self.on_rows is not None:
            self.on_rows(len(rows))

    async def _stored(self, events: list[Event]) -> set[str]:
        """Client ids of these events already stored at their time (beyond the dedup window)."""
        with_ids = [e for e in events if e.client_id and e.id is not None and e.time is not None]
        if not with_ids:
            return set()
        times = [e.time for e in with_ids if e.time is not None]
        ids = sorted({e.id for e in with_ids if e.id is not None})
        return await self.services.store.stored_ids(self.app.id, ids, min(times), max(times))


def open_rows(
    path: str, fmt: str, file: IO[bytes] | None, on_progress: Callable[[int], None]
) -> Iterator[Row]:
    """Rows of a file; ``on_progress`` is told bytes read (JSON lines, CSV) or rows (Parquet)."""
    if fmt == "parquet":
        return parquet_rows(path, on_progress)
    assert file is not None
    if fmt == "csv":
        return csv_rows(file, on_progress)
    if fmt == "jsonl":
        return jsonl_rows(file, on_progress)
    raise ValueError(f"cannot import {fmt!r}; use jsonl, csv or parquet")
