"""Segment's HTTP Tracking API: ``/v1/{track,identify,page,screen,group,alias,batch}``, and the
short paths analytics.js posts to, ``/v1/{t,i,p,s,g,a,b}`` (see docs/protocols.md for the replies
and the field mapping).

The write key is the Tally app's public app key, in the body (``writeKey``) or as the user name of
HTTP Basic authentication. As in Segment, a readable, authenticated request is answered 200
``{"success": true}`` even when some of its messages are dropped (they are kept as failed events,
and listed under ``rejected``); only unreadable, oversize or unauthenticated requests get an error,
``{"success": false, "code": ..., "message": ...}``, which is what Segment's libraries read.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from datetime import datetime
from typing import Any

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
from tally.model import LINK_EVENT, LINK_PREVIOUS, Drop, DropReason, Event
from tally.pipeline.timeparse import TimeError, parse_instant

PROTOCOL = "segment"
CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")
SHORT_PATHS = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": "batch",
}
"""analytics.js (@segment/analytics-next) posts each call to ``<apiHost>/<first letter of its
type>``, and a batch (its ``batching`` delivery strategy) to ``<apiHost>/b``. The body is the one
the long path takes, sent as ``Content-Type: text/plain`` (the body is read as JSON whatever the
type), with the write key in the body and as the Basic user name."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment refuses a batch over 500 KB with a 400 (its libraries keep batches under 475,000)."""
MAX_BATCH_ITEMS = 2500
MAX_MESSAGE_ID_LENGTH = 100
PAGE_EVENT = "page.visit"
SCREEN_EVENT = "screen.view"
IDENTIFY_EVENT = "identity.identify"
GROUP_EVENT = "identity.group"
CORS_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, OPTIONS"),
    # analytics.js adds Authorization (Basic write key) to every request, X-Retry-Count to retries.
    (
        "access-control-allow-headers",
        "content-type, content-encoding, authorization, x-retry-count",
    ),
    ("access-control-max-age", "86400"),
]
STATUS = {"body_too_large": 400, "too_many_events": 400}
"""Segment answers every size or count overrun with 400 (the shared flow says 413)."""
MESSAGES = {
    "missing_app_key": "no write key: send writeKey in the body, or HTTP Basic authentication "
    "with the write key (the Tally app key) as user name and an empty password",
    "unknown_app_key": "Invalid write key: no app has this key",
}


class SegmentBatch(msgspec.Struct, kw_only=True):
    """The body of ``POST /v1/batch``."""

    batch: list[msgspec.Raw]
    """Up to 2500 messages, each with its ``type``: track, identify, page, screen, group, alias."""
    writeKey: Any = None
    """The Tally app key (or send it as the Basic user name)."""
    sentAt: Any = None
    """The client's clock when sending (ISO 8601), to correct message times for clock skew."""
    context: Any = None
    """Merged into each message's ``context``; the message's own keys win."""
    integrations: Any = None
    """Accepted and ignored (Tally has no destinations)."""


class SegmentRejected(msgspec.Struct):
    index: int
    code: str
    message: str


class SegmentSuccess(msgspec.Struct, omit_defaults=True):
    success: bool
    rejected: list[SegmentRejected] = msgspec.field(default_factory=list)
    """Messages dropped by Tally, by position in the request; left out when there are none."""


class SegmentError(msgspec.Struct):
    success: bool
    code: str
    message: str


_decode = msgspec.json.Decoder()
_batch = msgspec.json.Decoder(SegmentBatch)
_encode = msgspec.json.Encoder()
_SUCCESS = _encode.encode(SegmentSuccess(success=True))


class _Invalid(Exception):
    """A message field of the wrong type: the message is rejected with ``invalid_event``."""


def _inflate(request: IngestRequest, cap: int) -> bytes:
    """The body, gunzipped (to at most ``cap`` + 1 bytes) if it came compressed, as Segment's
    libraries send it with their ``gzip`` option."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return request.body
    if encoding not in ("gzip", "x-gzip"):
        raise RequestError(400, "invalid_body", f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=47)  # a gzip or zlib header
    try:
        return inflater.decompress(request.body, cap + 1)
    except zlib.error as exc:
        raise RequestError(400, "invalid_body", f"the body is not valid gzip: {exc}") from exc


def read_body(request: IngestRequest, *, batch: bool) -> bytes:
    """The body, refused over Segment's 500 KB."""
    body = _inflate(request, MAX_BATCH_BYTES)
    if len(body) > MAX_BATCH_BYTES:
        code = "batch_too_large" if batch else "body_too_large"
        raise RequestError(
            400, code, f"the body is over {MAX_BATCH_BYTES} bytes, Segment's limit for a batch"
        )
    return body


def _text(value: Any) -> str | None:
    """A context string; numbers are written as text, anything else (and "") counts as absent."""
    if value is None:  # most context fields of most messages (9 calls a message)
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _id(message: dict[str, Any], field: str) -> str | None:
    """An id: a string, or a number coerced to one; absent when missing, null or empty."""
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return _text(value)
    raise _Invalid(f"{field} must be a string or a number, got {type(value).__name__}")


def _first(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _object(message: dict[str, Any], field: str) -> dict[str, Any]:
    value = message.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"{field} must be an object, got {type(value).__name__}")
    return value


def _section(context: dict[str, Any], field: str) -> dict[str, Any]:
    value = context.get(field)
    return value if isinstance(value, dict) else {}


def _sent_at(value: Any) -> datetime | None:
    """The client's clock when sending; unreadable means no skew correction, not a refusal."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except TimeError:
        return None


def message_event(index: int, call: str, message: dict[str, Any], payload: bytes) -> Event:
    """One Segment message (``context`` already merged) as an event; raises ``_Invalid``."""
    context = message.get("context")
    context = context if isinstance(context, dict) else {}
    page = _section(context, "page")
    library = _section(context, "library")
    event = Event(
        index=index,
        protocol=PROTOCOL,
        id=_id(message, "messageId"),
        raw_time=_first(message.get("timestamp"), message.get("originalTimestamp")),
        user_id=_id(message, "userId"),
        device_id=_id(message, "anonymousId"),
        sdk_name=_text(library.get("name")),
        sdk_version=_text(library.get("version")),
        ip=_text(context.get("ip")),
        user_agent=_text(context.get("userAgent")),
        os=_text(_section(context, "os").get("name")),
        device_type=_text(_section(context, "device").get("type")),
        url=_text(page.get("url")),
        referrer=_text(page.get("referrer")),
        locale=_text(context.get("locale")),
        timezone=_text(context.get("timezone")),
        payload=payload,
    )
    if call == "track":
        event.name = message.get("event")
        event.properties = _object(message, "properties")
    elif call in ("page", "screen"):
        properties = _object(message, "properties")
        category = _text(message.get("category"))
        if category is not None:
            properties = {"category": category, **properties}
        event.name = PAGE_EVENT if call == "page" else SCREEN_EVENT
        event.label = _text(message.get("name"))
        event.properties = properties
        if call == "page":
            event.url = _text(properties.get("url")) or event.url
            event.referrer = _text(properties.get("referrer")) or event.referrer
    elif call == "identify":
        event.name = IDENTIFY_EVENT
        event.internal = True
        # The user's traits; a library that sends them only as context.traits (an empty or absent
        # top-level ``traits``) is read there. Other calls' context.traits are not kept.
        event.properties = _object(message, "traits") or _section(context, "traits")
    elif call == "group":
        group_id = _id(message, "groupId")
        if group_id is None:
            raise _Invalid("a group call needs a groupId")
        event.name = GROUP_EVENT
        event.internal = True
        event.label = group_id
        event.properties = {"groupId": group_id, "traits": _object(message, "traits")}
    else:  # alias
        previous_id = _id(message, "previousId")
        if previous_id is None:
            raise _Invalid("an alias call needs a previousId")
        event.name = LINK_EVENT
        event.internal = True
        event.properties = {LINK_PREVIOUS: previous_id}
    return event


def _checked(event: Event) -> Drop | None:
    """Segment's own rule for a message: a messageId of at most 100 characters. (Every message
    needs userId or anonymousId: ``pipeline.identity``.)"""
    if event.id is not None and len(event.id) > MAX_MESSAGE_ID_LENGTH:
        return Drop(
            DropReason.INVALID_ID,
            f"messageId is {len(event.id)} characters; at most {MAX_MESSAGE_ID_LENGTH} are allowed",
        )
    return None


def _write_key(value: Any) -> Credentials | None:
    key = _text(value)
    return AppKey(key) if key else None


def basic_write_key(authorization: str | None) -> Credentials | None:
    """The user name of HTTP Basic authentication; the password is ignored. Segment asks for
    ``base64("<key>:")`` but still takes the key encoded without the colon, and so does Tally."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return _write_key(decoded.partition(":")[0])


def _reject(index: int, payload: bytes, message: str, errors: list[tuple[Event, Drop]]) -> None:
    event = Event(index=index, protocol=PROTOCOL, payload=payload)
    errors.append((event, Drop(DropReason.INVALID_EVENT, message)))


def _add(
    index: int,
    call: str,
    message: dict[str, Any],
    payload: bytes,
    events: list[Event],
    errors: list[tuple[Event, Drop]],
) -> None:
    """Decode one message into ``events``, or record why it is rejected in ``errors``."""
    try:
        event = message_event(index, call, message, payload)
    except _Invalid as exc:
        _reject(index, payload, str(exc), errors)
        return
    verdict = _checked(event)
    if verdict is None:
        events.append(event)
    else:
        errors.append((event, verdict))


class SegmentAdapter:
    """``POST /v1/<call>``: one message whose type is the path's."""

    protocol = PROTOCOL
    methods = ("POST",)
    cors_headers = CORS_HEADERS
    batch = False

    def __init__(self, call: str) -> None:
        if call not in CALL_TYPES:
            raise ValueError(f"unknown Segment call type {call!r}")
        self.call = call

    def credentials(self, request: IngestRequest) -> Credentials | None:
        """The Basic user name, else ``writeKey`` from the body if it parses (used to keep a
        refused request, oversize ones included, as a failed event of its app)."""
        basic = basic_write_key(request.headers.get("authorization"))
        if basic is not None:
            return basic
        try:
            body = _decode.decode(_inflate(request, 4 * MAX_BATCH_BYTES))
        except (RequestError, *UNREADABLE):
            return None
        return _write_key(body.get("writeKey")) if isinstance(body, dict) else None

    def _part(
        self,
        request: IngestRequest,
        write_key: Any,
        sent_at: Any,
        events: list[Event],
        errors: list[tuple[Event, Drop]],
    ) -> DecodedRequest:
        basic = basic_write_key(request.headers.get("authorization"))
        return DecodedRequest(
            credentials=basic or _write_key(write_key),
            events=events,
            errors=errors,
            sent_at=_sent_at(sent_at),
        )

    def decode(self, request: IngestRequest) -> DecodedBatch:
        body = read_body(request, batch=False)
        message = decode_json_body(body, _decode)
        if not isinstance(message, dict):
            raise RequestError(400, "invalid_body", "the body must be a JSON object")
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        _add(0, self.call, message, body, events, errors)
        part = self._part(request, message.get("writeKey"), message.get("sentAt"), events, errors)
        return DecodedBatch(parts=[part])

    def check(self, app: App, request: IngestRequest) -> None:
        return None

    def preflight(self) -> Reply:
        return Reply(status=204, body=b"")

    def encode(self, outcome: IngestOutcome) -> Reply:
        if not outcome.rejected:
            return Reply(status=200, body=_SUCCESS)
        if not self.batch and outcome.rejected[0].code == DropReason.EVENT_TOO_LARGE:
            # Segment refuses a normal call over 32 KB with a 400 (nothing was stored).
            too_large = outcome.rejected[0]
            return self.encode_error(RequestError(400, too_large.code, too_large.message))
        rejected = [SegmentRejected(r.index, r.code, r.message) for r in outcome.rejected]
        return Reply(
            status=200, body=_encode.encode(SegmentSuccess(success=True, rejected=rejected))
        )

    def encode_error(self, error: RequestError) -> Reply:
        message = MESSAGES.get(error.code, error.message)
        body = _encode.encode(SegmentError(success=False, code=error.code, message=message))
        return Reply(status=STATUS.get(error.code, error.status), body=body, headers=error.headers)


class SegmentBatchAdapter(SegmentAdapter):
    """``POST /v1/batch``: up to 2500 messages, each with its ``type``. The batch's ``context`` is
    merged into each message's (the message's own keys win); ``integrations`` route data to
    Segment destinations, which Tally has none of, so they are accepted and ignored."""

    batch = True

    def __init__(self) -> None:
        self.call = "batch"

    def decode(self, request: IngestRequest) -> DecodedBatch:
        envelope: SegmentBatch = decode_json_body(read_body(request, batch=True), _batch)
        if len(envelope.batch) > MAX_BATCH_ITEMS:
            raise RequestError(
                400,
                DropReason.TOO_MANY_EVENTS.value,
                f"the batch has {len(envelope.batch)} messages; the limit is {MAX_BATCH_ITEMS}",
            )
        shared = envelope.context if isinstance(envelope.context, dict) else {}
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        for index, raw in enumerate(envelope.batch):
            payload = bytes(raw)
            try:
                message = _decode.decode(raw)  # valid JSON: the whole batch parsed
            except RecursionError:
                _reject(index, payload, "the message nests objects and arrays too deeply", errors)
                continue
            if not isinstance(message, dict):
                _reject(index, payload, "a message must be an object", errors)
                continue
            call = message.get("type")
            if call not in CALL_TYPES:
                _reject(index, payload, f"type must be one of {', '.join(CALL_TYPES)}", errors)
                continue
            if shared:
                own = message.get("context")
                context = {**shared, **own} if isinstance(own, dict) else shared
                message = {**message, "context": context}
            _add(index, call, message, payload, events, errors)
        part = self._part(request, envelope.writeKey, envelope.sentAt, events, errors)
        return DecodedBatch(parts=[part])


def segment_adapters() -> dict[str, SegmentAdapter]:
    """Every Segment endpoint, by path: the long paths and analytics.js's short ones."""
    adapters = {f"/v1/{call}": SegmentAdapter(call) for call in CALL_TYPES}
    adapters["/v1/batch"] = SegmentBatchAdapter()
    for short, call in SHORT_PATHS.items():
        adapters[f"/v1/{short}"] = adapters[f"/v1/{call}"]
    return adapters
