"""Synerise's REST events API (v4), server side: custom events, batches, the predefined event
endpoints and transactions, with Synerise's error body (see docs/protocols.md).

Authentication, as Synerise offers it:

- server side, the workspace's HTTP Basic form ``<workspace GUID>:<API key>`` (the Tally app's API
  key and secret), or a workspace JWT from ``POST /v4/auth/login/profile`` as a Bearer token;
- in the browser, the tracker key (the app key) in the ``token`` query parameter, optionally with
  a customer JWT as the Bearer token. This path only accepts defined events (see
  ``pipeline.definitions``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import msgspec

from tally.adapters.base import (
    UNREADABLE,
    AppKey,
    BearerToken,
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
from tally.model import Drop, DropReason, Event
from tally.pipeline.runner import Rejection
from tally.pipeline.timeparse import FUTURE_TOLERANCE, TimeError, parse_instant

PROTOCOL = "synerise"
MAX_BATCH = 1000
RESERVED_PARAMS = frozenset(
    {"modifiedBy", "apiKey", "eventUUID", "ip", "time", "businessProfileId"}
)
ORIGINAL_TIME = "snr-original-time"
PREDEFINED_ACTIONS = {
    "logged-in": "client.login",
    "logged-out": "client.logout",
    "registered": "client.register",
    "added-to-cart": "product.addToCart",
    "removed-from-cart": "product.removeFromCart",
    "added-to-favorites": "product.addToFavorite",
    "product-view": "product.view",
    "searched": "client.search",
    "shared": "client.shared",
    "visited-screen": "screen.view",
    "application-started": "client.applicationStarted",
    "appeared-in-location": "client.appearedInLocation",
    "hit-timer": "client.hitTimer",
    "cancelled-transaction": "transaction.cancel",
    "assigned-to-company": "client.assignedToCompany",
    "item-search-click": "item.search.click",
    "push/received": "push.receive",
    "push/viewed": "push.view",
    "push/clicked": "push.click",
    "push/cancelled": "push.cancel",
}
"""Endpoint under /v4/events/ -> the action it records (a body ``action`` is ignored there)."""
ERROR_CODES = {
    "invalid_json": 1001,
    "invalid_body": 1002,
    "invalid_event": 1003,
    "missing_name": 1004,
    "invalid_name": 1005,
    "invalid_time": 1006,
    "invalid_id": 1007,
    "event_too_large": 1008,
    "too_many_properties": 1009,
    "too_many_events": 1010,
    "undefined_event": 1011,
    "forbidden_event": 1012,
    "reserved_event": 1013,
    "missing_property": 1014,
    "invalid_property": 1015,
    "invalid_token": 1016,
    "missing_identity": 1017,
    "value_too_long": 1018,
    "nesting_too_deep": 1019,
    "origin_not_allowed": 1020,
}
"""Tally's numbers for ``errors[].code`` (Synerise's own catalogue is not public)."""
_FIELD_OF_CODE = {
    "missing_name": "action",
    "invalid_name": "action",
    "invalid_time": "time",
    "invalid_id": "eventSalt",
    "too_many_properties": "params",
    "undefined_event": "action",
    "forbidden_event": "action",
    "reserved_event": "action",
    "missing_property": "params",
    "invalid_property": "params",
    "missing_identity": "client",
}

_AUTH_MESSAGES = {
    "missing_app_key": "send the workspace credentials with HTTP Basic authentication "
    "(the app's API key and API secret), a workspace JWT as a Bearer token, or the tracker key "
    "in the token query parameter",
    "unknown_app_key": "the credentials are not valid",
}
CORS_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, OPTIONS"),
    ("access-control-allow-headers", "Authorization, Content-Type, Accept, Api-Version"),
    ("access-control-max-age", "86400"),
]
_json = msgspec.json.Encoder()
_any = msgspec.json.Decoder()
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class SyneriseClient(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    id: int | str | None = None
    uuid: str | None = None
    customId: str | None = None
    email: str | None = None


class SyneriseEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    action: str | None = None
    label: str | None = None
    client: SyneriseClient | None = None
    params: dict[str, Any] | None = None
    time: str | None = None
    eventSalt: str | None = None


class Money(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    amount: float
    currency: str


class Transaction(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    client: SyneriseClient | None = None
    orderId: str | None = None
    value: Money | None = None
    revenue: Money | None = None
    products: list[dict[str, Any]] = msgspec.field(default_factory=list)
    recordedAt: str | None = None
    eventSalt: str | None = None
    metadata: dict[str, Any] | None = None
    paymentInfo: dict[str, Any] | None = None


_event = msgspec.json.Decoder(SyneriseEvent)
_transaction = msgspec.json.Decoder(Transaction)


class _Invalid(Exception):
    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.value = value


def _identity(client: SyneriseClient | None) -> tuple[str | None, str | None]:
    """(user, device): customId, else email, else the numeric id; and the uuid. (An event with
    neither is refused by ``pipeline.identity``.)"""
    if client is None:
        return None, None
    user = client.customId or client.email or (str(client.id) if client.id is not None else None)
    return user, client.uuid or None


def _properties(params: dict[str, Any] | None, time: str | None) -> dict[str, Any]:
    properties = {k: v for k, v in (params or {}).items() if k not in RESERVED_PARAMS}
    if time:
        try:
            instant = parse_instant(time)
        except TimeError:
            return properties  # the pipeline rejects it with its reason
        if instant > datetime.now(UTC) + FUTURE_TOLERANCE:
            properties[ORIGINAL_TIME] = time
    return properties


def error_body(status: int, path: str, message: str, errors: list[dict[str, Any]]) -> bytes:
    return _json.encode(
        {
            "error": HTTPStatus(status).phrase,
            "message": message,
            "path": path,
            "status": status,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "errors": errors,
        }
    )


class SyneriseEventsAdapter:
    """``/v4/events/custom`` (``action`` from the body) or a predefined endpoint (fixed action)."""

    protocol = PROTOCOL
    methods = ("POST",)
    cors_headers = CORS_HEADERS
    allow_reserved = False

    def __init__(self, path: str, action: str | None = None) -> None:
        self.path = path
        self.action = action

    def credentials(self, request: IngestRequest) -> Credentials | None:
        tracker_key = request.query.get("token")
        if tracker_key:
            return AppKey(tracker_key)
        authorization = request.headers.get("authorization")
        bearer = bearer_token(authorization)
        return BearerToken(bearer) if bearer else basic_credentials(authorization)

    def check(self, app: App, request: IngestRequest) -> None:
        return None

    def preflight(self) -> Reply:
        return Reply(status=204, body=b"")

    def _items(self, request: IngestRequest) -> list[msgspec.Raw]:
        raw = decode_json_body(request.body, msgspec.json.Decoder(msgspec.Raw))
        return [raw]

    def decode(self, request: IngestRequest) -> DecodedBatch:
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        for index, raw in enumerate(self._items(request)):
            payload = bytes(raw)
            try:
                events.extend(self._events(index, raw, payload))
            except (_Invalid, *UNREADABLE) as exc:
                bare = Event(index=index, protocol=PROTOCOL, payload=payload)
                value = exc.value if isinstance(exc, _Invalid) else None
                errors.append((bare, Drop(DropReason.INVALID_EVENT, str(exc), value)))
        credentials = self.credentials(request)
        browser = isinstance(credentials, AppKey)
        part = DecodedRequest(
            credentials=credentials,
            events=events,
            errors=errors,
            enforce_definitions=browser,
            allow_reserved=self.allow_reserved,
            customer_token=bearer_token(request.headers.get("authorization")) if browser else None,
        )
        return DecodedBatch(parts=[part])

    def _events(self, index: int, raw: msgspec.Raw, payload: bytes) -> list[Event]:
        item = _event.decode(raw)
        if not item.label:
            raise _Invalid("label", "must not be empty", item.label)
        user, device = _identity(item.client)
        return [
            Event(
                index=index,
                protocol=PROTOCOL,
                name=self.action or item.action,
                label=item.label,
                id=item.eventSalt,
                raw_time=item.time,
                user_id=user,
                device_id=device,
                properties=_properties(item.params, item.time),
                payload=payload,
            )
        ]

    def encode(self, outcome: IngestOutcome) -> Reply:
        result = outcome.result
        if outcome.rejected and not (result.accepted or result.duplicates):
            errors = [self._error_entry(r) for r in outcome.rejected]
            forbidden = all(r.code == "forbidden_event" for r in outcome.rejected)
            status = 403 if forbidden else 400
            body = error_body(status, self.path, "the request was not accepted", errors)
            return Reply(status=status, body=body)
        return Reply(status=202, body=b"")

    def _error_entry(self, rejection: Rejection) -> dict[str, Any]:
        field, sep, rest = rejection.message.partition(": ")
        if not sep or " " in field:
            field, rest = _FIELD_OF_CODE.get(rejection.code, ""), rejection.message
        return {
            "code": ERROR_CODES.get(rejection.code, 1000),
            "field": self._field(rejection.index, field) if field else None,
            "message": rest,
            "rejectedValue": rejection.value,
        }

    def _field(self, index: int, field: str) -> str:
        return field

    def encode_error(self, error: RequestError) -> Reply:
        message = _AUTH_MESSAGES.get(error.code, error.message)
        errors = []
        if error.status == 400 or error.code in ERROR_CODES:
            errors.append(
                {
                    "code": ERROR_CODES.get(error.code, 1000),
                    "field": None,
                    "message": error.message,
                    "rejectedValue": None,
                }
            )
        body = error_body(error.status, self.path, message, errors)
        return Reply(status=error.status, body=body, headers=error.headers)


class SyneriseBatchAdapter(SyneriseEventsAdapter):
    """``/v4/events/batch``: a JSON array of at most 1000 events."""

    def _items(self, request: IngestRequest) -> list[msgspec.Raw]:
        items = decode_json_body(request.body, _raw_list)
        if len(items) > MAX_BATCH:
            raise RequestError(
                400,
                "too_many_events",
                f"a batch holds at most {MAX_BATCH} events, got {len(items)}",
            )
        return items

    def _field(self, index: int, field: str) -> str:
        return f"[{index}].{field}"


class SyneriseTransactionsAdapter(SyneriseBatchAdapter):
    """``/v4/transactions`` (one) and ``/v4/transactions/batch`` (an array): each transaction is
    a ``transaction.charge`` event plus a ``product.buy`` event per product."""

    allow_reserved = True

    def __init__(self, path: str, *, batch: bool) -> None:
        super().__init__(path)
        self.batch = batch

    def _items(self, request: IngestRequest) -> list[msgspec.Raw]:
        if self.batch:
            return super()._items(request)
        return [decode_json_body(request.body, msgspec.json.Decoder(msgspec.Raw))]

    def _field(self, index: int, field: str) -> str:
        return super()._field(index, field) if self.batch else field

    def _events(self, index: int, raw: msgspec.Raw, payload: bytes) -> list[Event]:
        item = _transaction.decode(raw)
        user, device = _identity(item.client)
        if not item.orderId:
            raise _Invalid("orderId", "is required")
        if item.value is None:
            raise _Invalid("value", "is required")
        charge = {
            "orderId": item.orderId,
            "value": msgspec.to_builtins(item.value),
            "products": item.products,
        }
        for key in ("revenue", "metadata", "paymentInfo"):
            value = getattr(item, key)
            if value is not None:
                charge[key] = msgspec.to_builtins(value)
        common = {
            "index": index,
            "protocol": PROTOCOL,
            "raw_time": item.recordedAt,
            "user_id": user,
            "device_id": device,
            "payload": payload,
        }
        salt = item.eventSalt
        events = [Event(name="transaction.charge", id=salt, properties=charge, **common)]
        for position, product in enumerate(item.products):
            events.append(
                Event(
                    name="product.buy",
                    id=f"{salt}:{position}" if salt else None,
                    properties={"orderId": item.orderId, **product},
                    **common,
                )
            )
        return events


def synerise_adapters() -> dict[str, SyneriseEventsAdapter]:
    """Every Synerise endpoint Tally serves, by path."""
    adapters: dict[str, SyneriseEventsAdapter] = {
        "/v4/events/custom": SyneriseEventsAdapter("/v4/events/custom"),
        "/v4/events/batch": SyneriseBatchAdapter("/v4/events/batch"),
        "/v4/transactions": SyneriseTransactionsAdapter("/v4/transactions", batch=False),
        "/v4/transactions/batch": SyneriseTransactionsAdapter("/v4/transactions/batch", batch=True),
    }
    for endpoint, action in PREDEFINED_ACTIONS.items():
        path = f"/v4/events/{endpoint}"
        adapters[path] = SyneriseEventsAdapter(path, action)
    return adapters
