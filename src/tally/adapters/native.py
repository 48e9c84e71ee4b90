"""Tally's own ingest API: ``POST /api/v1/events``, and the browser tracker's
``POST /sdk/v1/events`` (the same body; only defined events, see docs/data-management.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tally.adapters.base import (
    UNREADABLE,
    AppKey,
    Credentials,
    DecodedBatch,
    DecodedRequest,
    IngestOutcome,
    IngestRequest,
    Reply,
    RequestError,
    decode_json_body,
)
from tally.catalog.models import App
from tally.http.auth import basic_credentials, bearer_token
from tally.model import MAX_COUNT, Drop, DropReason, Event
from tally.pipeline.timeparse import TimeError, parse_instant

PROTOCOL = "native"
KEY_HEADER = "x-tally-key"

Id = str | int


class NativeContext(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Where the event happened, as a browser or app knows it."""

    url: str | None = None
    referrer: str | None = None
    locale: str | None = None
    timezone: str | None = None
    """IANA name, e.g. Europe/Warsaw."""


class NativeEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """One event. Only ``name`` is required; ``time`` defaults to when Tally received it."""

    name: str | None = None
    id: str | None = None
    """Your id for this event: a retry with the same id is stored once (7-day window)."""
    time: str | int | float | None = None
    """ISO 8601, or epoch seconds or milliseconds."""
    user: Id | None = None
    device: Id | None = None
    session: Id | None = None
    label: str | None = None
    count: Annotated[int, msgspec.Meta(le=MAX_COUNT)] | None = None
    """How many times it happened (default 1)."""
    sum: float | None = None
    dur: float | None = None
    properties: dict[str, Any] | None = None
    context: NativeContext | None = None


class NativeBatch(msgspec.Struct, kw_only=True):
    """The request body of ``POST /api/v1/events``."""

    app_key: str | None = None
    """The app's public key; may instead come in the ``X-Tally-Key`` header."""
    sent_at: str | int | float | None = None
    """The client's clock when sending, to correct event times for clock skew."""
    access_token: str | None = None
    """A customer JWT (browser tracker), where an Authorization header cannot be sent
    (``navigator.sendBeacon``)."""
    events: list[NativeEvent]


class _Envelope(msgspec.Struct, kw_only=True):
    app_key: str | None = None
    sent_at: str | int | float | None = None
    access_token: str | None = None
    events: list[msgspec.Raw]


class RejectedItem(msgspec.Struct):
    index: int
    code: str
    message: str


class IngestResponse(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[RejectedItem]


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


_envelope = msgspec.json.Decoder(_Envelope)
_item = msgspec.json.Decoder(NativeEvent)
_encoder = msgspec.json.Encoder()


def _str(value: Id | None) -> str | None:
    return None if value is None else str(value)


def _context(context: NativeContext | None) -> dict[str, str | None]:
    if context is None:
        return {}
    return {
        "url": context.url,
        "referrer": context.referrer,
        "locale": context.locale,
        "timezone": context.timezone,
    }


def error_reply(error: RequestError) -> Reply:
    body = _encoder.encode(ErrorResponse(ErrorBody(error.code, error.message)))
    return Reply(status=error.status, body=body, headers=error.headers)


class NativeAdapter:
    protocol = PROTOCOL
    methods = ("POST",)
    cors_headers = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "POST, OPTIONS"),
        ("access-control-allow-headers", "content-type, x-tally-key, authorization"),
        ("access-control-max-age", "86400"),
    ]

    def __init__(self, *, browser: bool = False) -> None:
        self.browser = browser
        """The browser tracker's endpoint: app-key events must be defined (seed 003)."""

    def credentials(self, request: IngestRequest) -> Credentials | None:
        """The app key (header), or the API key and secret (HTTP Basic: server side)."""
        key = request.headers.get(KEY_HEADER)
        if key:
            return AppKey(key)
        return basic_credentials(request.headers.get("authorization"))

    def decode(self, request: IngestRequest) -> DecodedBatch:
        envelope = decode_json_body(request.body, _envelope)
        sent_at = None
        if envelope.sent_at is not None:
            try:
                sent_at = parse_instant(envelope.sent_at)
            except TimeError as exc:
                raise RequestError(400, "invalid_body", f"sent_at: {exc}") from exc
        credentials = self.credentials(request)
        if credentials is None and envelope.app_key:
            credentials = AppKey(envelope.app_key)
        public = isinstance(credentials, AppKey)
        token = envelope.access_token or bearer_token(request.headers.get("authorization"))
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        for index, raw in enumerate(envelope.events):
            payload = bytes(raw)
            try:
                item = _item.decode(raw)
            except UNREADABLE as exc:
                errors.append(
                    (
                        Event(index=index, protocol=PROTOCOL, payload=payload),
                        Drop(DropReason.INVALID_EVENT, str(exc)),
                    )
                )
                continue
            events.append(
                Event(
                    index=index,
                    protocol=PROTOCOL,
                    name=item.name,
                    id=item.id,
                    raw_time=item.time,
                    user_id=_str(item.user),
                    device_id=_str(item.device),
                    session_id=_str(item.session),
                    label=item.label,
                    count=item.count,
                    sum=item.sum,
                    dur=item.dur,
                    properties=item.properties or {},
                    payload=payload,
                    **_context(item.context),
                )
            )
        part = DecodedRequest(
            credentials=credentials,
            events=events,
            errors=errors,
            sent_at=sent_at,
            enforce_definitions=self.browser and public,
            customer_token=token if public else None,
        )
        return DecodedBatch(parts=[part])

    def check(self, app: App, request: IngestRequest) -> None:
        return None

    def preflight(self) -> Reply:
        return Reply(status=204, body=b"")

    def encode(self, outcome: IngestOutcome) -> Reply:
        rejected = [RejectedItem(r.index, r.code, r.message) for r in outcome.rejected]
        body = _encoder.encode(
            IngestResponse(outcome.result.accepted, outcome.result.duplicates, rejected)
        )
        everything_rejected = rejected and not (
            outcome.result.accepted or outcome.result.duplicates
        )
        return Reply(status=400 if everything_rejected else 200, body=body)

    def encode_error(self, error: RequestError) -> Reply:
        return error_reply(error)
