"""Countly's write API: ``/i`` and ``/i/bulk`` (see docs/protocols.md for the field mapping).

Countly SDKs treat anything but a 2xx with ``{"result": ...}`` as a failure and stall their queue,
so replies follow Countly's shapes and status codes exactly.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
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
)
from tally.adapters.form import parse_form
from tally.catalog.models import App
from tally.model import LINK_EVENT, LINK_PREVIOUS, MAX_COUNT, Drop, DropReason, Event

PROTOCOL = "countly"
CONTENT_TYPE = "application/json; charset=utf-8"
CORS_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, GET, OPTIONS"),
    ("access-control-allow-headers", "countly-token, Content-Type"),
]
IGNORED_DEVICE = "00000000-0000-0000-0000-000000000000"
# Left out of a request's fingerprint, as Countly leaves them out of its duplicate check.
UNHASHED_PARAMS = frozenset({"rr", "checksum", "checksum256"})
SESSION_DURATION_LIMIT = 86_400
NEGATIVE_DURATION_FALLBACK = 30
ARRAY_VALUE_LIMIT = 10
VIEW_KEY = "[CLY]_view"
INTERNAL_PREFIX = "[CLY]_"
USER_DETAILS_EVENT = "user.details"
CONSENT_EVENT = "consent"

MISSING_KEYS = 'Missing parameter "app_key" or "device_id"'
SCALAR_PARAMS = (
    "device_id",
    "begin_session",
    "end_session",
    "session_duration",
    "timestamp",
    "old_device_id",
    "checksum",
    "checksum256",
)
"""Parameters that are one value: an object or array in one (an injection attempt, or a repeated
name) is refused with ``Invalid parameter``, as Countly refuses a malformed ``app_id``."""
_MESSAGES = {
    "missing_app_key": MISSING_KEYS,
    "unknown_app_key": "App does not exist",
    "method_not_allowed": "Method not allowed",
}
_STATUS = {"missing_app_key": 400, "unknown_app_key": 400}

_json_decode = msgspec.json.Decoder()
_json_encode = msgspec.json.Encoder(order="sorted")
"""Sorted keys: a request's fingerprint must not depend on the order the client wrote them."""
_reply_encode = msgspec.json.Encoder()


def _result(status: int, message: str, **extra: str) -> Reply:
    return Reply(
        status=status,
        body=_reply_encode.encode({"result": message, **extra}),
        content_type=CONTENT_TYPE,
    )


def _fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Name-value pairs as Countly's parser reads them: a repeated name gives the list of its
    values (``app_key=a&app_key=b`` is an array, refused where one value is expected)."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


def read_params(request: IngestRequest) -> dict[str, Any]:
    """Query string first, then body fields over it: the body wins, as in Countly."""
    params: dict[str, Any] = (
        _fields(parse_form(request.raw_query)) if request.raw_query else dict(request.query)
    )
    body = request.body
    if not body:
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            fields = _json_decode.decode(body)
        except UNREADABLE:
            return params
        if isinstance(fields, dict):
            params.update(fields)
        return params
    if content_type in ("", "application/x-www-form-urlencoded", "text/plain"):
        text = body.decode("utf-8", errors="replace")
        params.update(_fields(parse_form(text)))
    return params


def json_param(value: Any) -> Any:
    """A JSON-ish parameter: a JSON string is parsed (None if it does not parse), else as is."""
    if isinstance(value, str | bytes):
        try:
            return _json_decode.decode(value)
        except UNREADABLE:
            return None
    return value


def as_text(value: Any) -> str | None:
    """Countly coerces app_key and device_id with String(); empty means missing."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return _json_encode.encode(value).decode()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | float:
    """A whole number (Countly truncates), 1 when missing or 0; a count too large for the store
    is passed on as the number sent, which the pipeline rejects (``invalid_measure``)."""
    number = _number(value)
    if not number:
        return 1
    return int(number) if abs(number) <= MAX_COUNT else number


def _sum(value: Any) -> float | None:
    number = _number(value)
    return round(number, 5) if number else None


def _dur(value: Any) -> float | None:
    number = _number(value)
    return number if number else None


def _session_duration(value: Any) -> float | None:
    number = _number(value)
    if number is None:
        return None
    if number < 0:
        return float(NEGATIVE_DURATION_FALLBACK)
    return min(number, float(SESSION_DURATION_LIMIT))


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, "0", False, "false")


def _offset(tz: Any) -> str | None:
    """Countly's ``tz`` (minutes east of UTC) as an ISO 8601 offset."""
    minutes = _number(tz)
    if minutes is None or abs(minutes) > 18 * 60:
        return None
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(int(abs(minutes)), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _properties(segmentation: Any) -> dict[str, Any]:
    if not isinstance(segmentation, dict):
        return {}
    properties = {}
    for key, value in segmentation.items():
        if key == "":
            continue
        properties[key] = value[:ARRAY_VALUE_LIMIT] if isinstance(value, list) else value
    return properties


_COUNTRY_CODE = re.compile(r"[A-Za-z]{2}")
_COORDINATE = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_LOCATION = re.compile(rf"\s*({_COORDINATE})\s*,\s*({_COORDINATE})\s*")


def _country_code(value: Any) -> str | None:
    """Two letters, upper-cased; anything else is ignored (Countly does not refuse it)."""
    if isinstance(value, str) and _COUNTRY_CODE.fullmatch(value):
        return value.upper()
    return None


def _city(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _location(value: Any) -> str | None:
    """``"lat,lon"`` as sent, when both are numbers in range; anything else is ignored."""
    if not isinstance(value, str):
        return None
    match = _LOCATION.fullmatch(value)
    if match is None:
        return None
    lat, lon = float(match[1]), float(match[2])
    return value if abs(lat) <= 90 and abs(lon) <= 180 else None


_CHECKSUM_PART = re.compile(r"&?checksum(?:256)?=[^&]*")
_CHECKSUM_VALUE = re.compile(r"(?:^|&)(checksum(?:256)?)=([^&]*)")


def verify_checksum(request: IngestRequest, salt: str) -> None:
    """Countly's checksum: upper-hex sha1 (``checksum``) or sha256 (``checksum256``) of the query
    string (GET, or POST without a body) or the raw body (POST) without its checksum part,
    followed by the salt."""
    payload = (
        request.raw_query if request.method == "GET" else request.body.decode("utf-8", "replace")
    )
    found = dict(_CHECKSUM_VALUE.findall(payload))
    if not found:
        raise RequestError(200, "invalid_checksum", "Request does not have checksum")
    signed = _CHECKSUM_PART.sub("", payload, count=1).encode() + salt.encode()
    if "checksum256" in found:
        given, expected = found["checksum256"], hashlib.sha256(signed).hexdigest().upper()
    else:
        given, expected = found["checksum"], hashlib.sha1(signed).hexdigest().upper()
    if not hmac.compare_digest(given.upper().encode(), expected.encode()):
        raise RequestError(200, "invalid_checksum", "Request does not match checksum")


def fingerprint(params: dict[str, Any]) -> str:
    """Identifies a request by its content, so a resent request can be recognised."""
    kept = {k: v for k, v in params.items() if k not in UNHASHED_PARAMS}
    return hashlib.sha1(_json_encode.encode(kept)).hexdigest()


class CountlyRequest:
    """One ``/i``-style parameter set, turned into events."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.app_key = params.get("app_key")
        self.device_id = as_text(params.get("device_id"))
        metrics = json_param(params.get("metrics"))
        self.metrics: dict[str, Any] = metrics if isinstance(metrics, dict) else {}
        self.fingerprint = fingerprint(params)
        timestamp = _number(params.get("timestamp"))
        self.time = timestamp if timestamp and timestamp > 0 else None
        # ``location=""`` with ``begin_session``: the user opted out of location (Countly then
        # writes "Unknown"; Tally stores nothing).
        opted_out = _truthy(params.get("begin_session")) and params.get("location") == ""
        self.geo: dict[str, str | None] = {
            "country_code": None if opted_out else _country_code(params.get("country_code")),
            "city": None if opted_out else _city(params.get("city")),
            "location": None if opted_out else _location(params.get("location")),
        }

    def credentials(self) -> Credentials:
        """The app key; an object or array (an injection attempt) names no app."""
        key = self.app_key
        if isinstance(key, dict | list):
            raise RequestError(400, "unknown_app_key", "App does not exist")
        text = as_text(key)
        if text is None or self.device_id is None:
            raise RequestError(400, "missing_app_key", MISSING_KEYS)
        self.check_shapes()
        return AppKey(text)

    def check_shapes(self) -> None:
        """One value where one is expected: never an operator object or a list of values. (JSON
        parameters of the wrong shape, ``events`` not an array, ``metrics`` not an object, are
        ignored, as in Countly.)"""
        params = self.params
        for name in SCALAR_PARAMS:
            if isinstance(params.get(name), dict | list):
                raise RequestError(400, "invalid_parameter", f'Invalid parameter "{name}"')

    @functools.cached_property
    def _shared(self) -> dict[str, Any]:
        """The fields every event of this parameter set shares, worked out once for all."""
        metrics = self.metrics
        params = self.params
        return {
            "device_id": self.device_id,
            "sdk_name": as_text(params.get("sdk_name")),
            "sdk_version": as_text(params.get("sdk_version")),
            "os": as_text(metrics.get("_os")),
            "browser": as_text(metrics.get("_browser")),
            "device_type": as_text(metrics.get("_device_type")),
            "locale": as_text(metrics.get("_locale")),
            "timezone": _offset(params.get("tz")),
            **self.geo,
        }

    def _event(self, index: int, name: Any, *, event_id: str, **fields: Any) -> Event:
        return Event(
            index=index, protocol=PROTOCOL, name=name, id=event_id, **self._shared, **fields
        )

    def session_events(self) -> list[Event]:
        params = self.params
        events = []
        base = f"cly-{self.fingerprint}"
        payload = _json_encode.encode(
            {
                k: params[k]
                for k in ("begin_session", "session_duration", "end_session")
                if k in params
            }
        )
        if _truthy(params.get("begin_session")):
            events.append(
                self._event(
                    -1,
                    "session.start",
                    event_id=f"{base}-begin",
                    raw_time=self.time,
                    properties=dict(self.metrics),
                    payload=payload,
                )
            )
        duration = _session_duration(params.get("session_duration"))
        if _truthy(params.get("end_session")):
            events.append(
                self._event(
                    -1,
                    "session.end",
                    event_id=f"{base}-end",
                    raw_time=self.time,
                    dur=duration,
                    payload=payload,
                )
            )
        elif duration is not None:
            events.append(
                self._event(
                    -1,
                    "session.update",
                    event_id=f"{base}-duration",
                    raw_time=self.time,
                    dur=duration,
                    payload=payload,
                )
            )
        return events

    def link_events(self) -> list[Event]:
        """``old_device_id``: the device was known by another id, now merged into this one."""
        old = as_text(self.params.get("old_device_id"))
        if old is None or old == self.device_id:
            return []
        return [
            self._event(
                -1,
                LINK_EVENT,
                event_id=f"cly-{self.fingerprint}-link",
                raw_time=self.time,
                internal=True,
                properties={LINK_PREVIOUS: old},
                payload=_json_encode.encode({"old_device_id": old}),
            )
        ]

    def user_events(self) -> list[Event]:
        """``user_details`` and ``consent``: internal events of the device, after the session's."""
        events = []
        details = json_param(self.params.get("user_details"))
        if isinstance(details, dict) and details:
            events.append(
                self._event(
                    -1,
                    USER_DETAILS_EVENT,
                    event_id=f"cly-{self.fingerprint}-user-details",
                    raw_time=self.time,
                    internal=True,
                    properties=dict(details),
                    payload=_json_encode.encode({"user_details": details}),
                )
            )
        consent = json_param(self.params.get("consent"))
        if isinstance(consent, dict):
            features = {k: v for k, v in consent.items() if isinstance(v, bool)}
            if features:
                events.append(
                    self._event(
                        -1,
                        CONSENT_EVENT,
                        event_id=f"cly-{self.fingerprint}-consent",
                        raw_time=self.time,
                        internal=True,
                        properties=features,
                        payload=_json_encode.encode({"consent": consent}),
                    )
                )
        return events

    def custom_events(self) -> tuple[list[Event], list[tuple[Event, Drop]]]:
        items = json_param(self.params.get("events"))
        if not isinstance(items, list):
            return [], []
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        for index, item in enumerate(items):
            payload = _json_encode.encode(item)
            if not isinstance(item, dict):
                errors.append(
                    (
                        Event(index=index, protocol=PROTOCOL, payload=payload),
                        Drop(DropReason.INVALID_EVENT, "an event must be an object"),
                    )
                )
                continue
            events.append(self._custom_event(index, item, payload))
        return events, errors

    def _custom_event(self, index: int, item: dict[str, Any], payload: bytes) -> Event:
        key = item.get("key")
        name: Any = key if isinstance(key, str) or not key else _json_encode.encode(key).decode()
        properties = _properties(item.get("segmentation"))
        client_id = item.get("id")
        event_id = (
            client_id
            if isinstance(client_id, str) and client_id
            else f"cly-{self.fingerprint}-{index}"
        )
        timestamp = _number(item.get("timestamp"))
        fields: dict[str, Any] = {
            "raw_time": timestamp if timestamp and timestamp > 0 else self.time,
            "count": _count(item.get("count")),
            "sum": _sum(item.get("sum")),
            "dur": _dur(item.get("dur")),
            "properties": properties,
            "payload": payload,
        }
        if name == VIEW_KEY:
            # The web SDK reports a view twice under one id: the visit, then (without `visit`)
            # the time spent. The second is the view's end, not a resend and not another view.
            ended = fields["dur"] is not None and not _truthy(properties.get("visit"))
            name = "view.end" if ended else "view"
            if ended and isinstance(client_id, str) and client_id:
                event_id = f"{client_id}:end"
                properties["view_id"] = client_id
            fields["label"] = as_text(properties.get("name"))
            fields["url"] = as_text(properties.get("view"))
            fields["referrer"] = as_text(properties.get("referrer"))
        elif isinstance(name, str) and name.startswith(INTERNAL_PREFIX):
            fields["internal"] = True
        return self._event(index, name, event_id=event_id, **fields)

    def decode(self) -> DecodedRequest:
        credentials = self.credentials()
        if self.device_id == IGNORED_DEVICE:
            raise RequestError(200, "ignored_device_id", "Ignoring device_id")
        events, errors = self.custom_events()
        return DecodedRequest(
            credentials=credentials,
            events=self.link_events() + self.session_events() + self.user_events() + events,
            errors=errors,
            user_agent=as_text(self.metrics.get("_ua")),
            ip=as_text(self.params.get("ip_address")),
        )


class CountlyAdapter:
    """``/i``: one request of events, session changes and device details."""

    protocol = PROTOCOL
    methods = ("GET", "POST")
    cors_headers = CORS_HEADERS

    def credentials(self, request: IngestRequest) -> Credentials | None:
        key = as_text(read_params(request).get("app_key"))
        return AppKey(key) if key else None

    def decode(self, request: IngestRequest) -> DecodedBatch:
        return DecodedBatch(parts=[CountlyRequest(read_params(request)).decode()])

    def check(self, app: App, request: IngestRequest) -> None:
        if app.settings.countly_salt:
            verify_checksum(request, app.settings.countly_salt)

    def preflight(self) -> Reply:
        return Reply(status=200, body=b"", content_type=CONTENT_TYPE)

    def encode(self, outcome: IngestOutcome) -> Reply:
        result = outcome.result
        if result.duplicates and not result.accepted and not outcome.rejected:
            return _result(200, "Success", info="Request ignored: Duplicate request")
        return _result(200, "Success")

    def encode_error(self, error: RequestError) -> Reply:
        message = _MESSAGES.get(error.code, error.message)
        reply = _result(_STATUS.get(error.code, error.status), message)
        reply.headers = error.headers
        return reply


class CountlyBulkAdapter(CountlyAdapter):
    """``/i/bulk``: ``requests``, a JSON array of ``/i`` parameter sets.

    Unlike Countly, which answers at once and processes the items afterwards, Tally answers once
    every item is stored (Countly's ``safe_api_response``). As in Countly, items without an app
    key or device id, or naming no app, are skipped.
    """

    def decode(self, request: IngestRequest) -> DecodedBatch:
        params = read_params(request)
        if "requests" not in params:
            raise RequestError(400, "missing_requests", 'Missing parameter "requests"')
        items = json_param(params["requests"])
        if items is None:
            raise RequestError(400, "missing_requests", 'Missing parameter "requests"')
        if not isinstance(items, list):
            raise RequestError(400, "invalid_requests", 'Invalid parameter "requests"')
        parts = []
        for item in items:
            if not isinstance(item, dict):
                continue
            if "app_key" not in item and "app_key" in params:
                item = {**item, "app_key": params["app_key"]}
            try:
                parts.append(CountlyRequest(item).decode())
            except RequestError:
                continue
        return DecodedBatch(parts=parts, skip_unknown_apps=True)

    def encode(self, outcome: IngestOutcome) -> Reply:
        return _result(200, "Success")
