"""EngageLab Marketing Automation: ``/v1/event/report``, ``/v1/user/register``,
``/v1/user/property`` (see docs/protocols.md for codes and mapping).

Every call authenticates with HTTP Basic ``api_key:api_secret`` (the app's server credentials)
and is answered ``{"code": 0, "message": "success"}`` on full or partial success.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from tally.adapters.base import (
    UNREADABLE,
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
from tally.http.auth import basic_credentials
from tally.model import LINK_EVENT, LINK_PREVIOUS, Drop, DropReason, Event

PROTOCOL = "engagelab"
AUTH_FAILED = 40050
CODES = {
    "missing_app_key": (401, AUTH_FAILED, "Interface authentication failed"),
    "unknown_app_key": (401, AUTH_FAILED, "Interface authentication failed"),
    "invalid_json": (400, 40001, None),
    "invalid_body": (400, 40002, None),
    "all_rejected": (400, 40003, None),
    "body_too_large": (413, 40004, None),
    "too_many_events": (413, 40005, None),
    "invalid_user_property": (400, 55102, "Invalid user attributes exist"),
    "method_not_allowed": (405, 40500, None),
    "request_timeout": (408, 40800, None),
    "rate_limited": (429, 42900, None),
    "store_unavailable": (503, 50300, None),
    "catalog_unavailable": (503, 50301, None),
    "internal_error": (500, 50000, None),
}
"""Tally's stable EngageLab codes: (HTTP status, code, message if fixed). 40050 and 55102 are
EngageLab's own; the others are Tally's, documented in docs/protocols.md."""
IDENTITY_NAMES = frozenset({"user_id", "anonymous_id", "registration_id"})
MAX_IDENTITY_VALUES = 100
MAX_IDENTITY_LENGTH = 256
PROPERTY_OPERATIONS = frozenset({"set", "increase"})

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


class ReportedEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    euid: int | str | None = None
    event_name: str | None = None
    itime: int | float | None = None
    random_id: str | None = None
    properties: dict[str, Any] | None = None


class EventReport(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    app_key: str | None = None
    """The App/Web AppKey the events come from; informative, the Basic credentials name the app."""
    data: list[msgspec.Raw]


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    identity_name: str
    identity_values: list[str | int]


class UserProperty(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    euid: int | str
    type: str
    properties: dict[str, Any]


_report = msgspec.json.Decoder(EventReport)
_reported = msgspec.json.Decoder(ReportedEvent)
_registration = msgspec.json.Decoder(Registration)
_user_property = msgspec.json.Decoder(UserProperty)


def euid_for(identity_name: str, value: str) -> int:
    """A stable EUID for an identity: the same value always gets the same EUID, with no lookup
    (events are kept per app, so EUIDs need not differ between apps). 53 bits, so JavaScript
    clients read it exactly."""
    digest = hashlib.blake2b(f"{identity_name}\x00{value}".encode(), digest_size=8)
    return (int.from_bytes(digest.digest(), "big") >> 11) or 1


class EngageLabAdapter:
    """``POST /v1/event/report``: a batch of behaviour events of EUIDs."""

    protocol = PROTOCOL
    methods = ("POST",)
    cors_headers: list[tuple[str, str]] = []

    def credentials(self, request: IngestRequest) -> Credentials | None:
        return basic_credentials(request.headers.get("authorization"))

    def check(self, app: App, request: IngestRequest) -> None:
        return None

    def preflight(self) -> Reply:
        return Reply(status=204, body=b"")

    def decode(self, request: IngestRequest) -> DecodedBatch:
        report = decode_json_body(request.body, _report)
        events: list[Event] = []
        errors: list[tuple[Event, Drop]] = []
        for index, raw in enumerate(report.data):
            payload = bytes(raw)
            try:
                item = _reported.decode(raw)
            except UNREADABLE as exc:
                errors.append(
                    (self._bare(index, payload), Drop(DropReason.INVALID_EVENT, str(exc)))
                )
                continue
            if item.itime is None:  # a missing euid is pipeline.identity's to refuse
                errors.append(
                    (
                        self._bare(index, payload),
                        Drop(DropReason.INVALID_EVENT, "itime is required"),
                    )
                )
                continue
            events.append(
                Event(
                    index=index,
                    protocol=PROTOCOL,
                    name=item.event_name,
                    id=item.random_id,
                    raw_time=item.itime,
                    user_id=None if item.euid is None else str(item.euid),
                    properties=item.properties or {},
                    payload=payload,
                )
            )
        part = DecodedRequest(credentials=self.credentials(request), events=events, errors=errors)
        return DecodedBatch(parts=[part])

    @staticmethod
    def _bare(index: int, payload: bytes) -> Event:
        return Event(index=index, protocol=PROTOCOL, payload=payload)

    def encode(self, outcome: IngestOutcome) -> Reply:
        result = outcome.result
        if outcome.rejected and not (result.accepted or result.duplicates):
            first = outcome.rejected[0]
            return self.encode_error(
                RequestError(
                    400,
                    "all_rejected",
                    f"no event was accepted; event {first.index}: {first.code}: {first.message}",
                )
            )
        return Reply(status=200, body=_json.encode({"code": 0, "message": "success"}))

    def encode_error(self, error: RequestError) -> Reply:
        status, code, fixed = CODES.get(error.code, (error.status, 40000 + error.status, None))
        body = _json.encode({"code": code, "message": fixed or error.message})
        return Reply(status=status, body=body, headers=error.headers)


class EngageLabRegisterAdapter(EngageLabAdapter):
    """``POST /v1/user/register``: EUIDs for identities (``user_id``, ``anonymous_id``,
    ``registration_id``). Each registration is stored as an ``identity.link`` event so that the
    identity and its EUID are one person in queries."""

    def decode(self, request: IngestRequest) -> DecodedBatch:
        registration = decode_json_body(request.body, _registration)
        name = registration.identity_name
        if name not in IDENTITY_NAMES:
            raise RequestError(
                400, "invalid_body", f"identity_name must be one of {sorted(IDENTITY_NAMES)}"
            )
        values = [str(v) for v in registration.identity_values]
        if not 1 <= len(values) <= MAX_IDENTITY_VALUES:
            raise RequestError(
                400, "invalid_body", f"identity_values must hold 1 to {MAX_IDENTITY_VALUES} values"
            )
        if any(not v or len(v) > MAX_IDENTITY_LENGTH for v in values):
            raise RequestError(
                400, "invalid_body", f"each identity value must be 1 to {MAX_IDENTITY_LENGTH} long"
            )
        events, data = [], []
        for index, value in enumerate(values):
            euid = euid_for(name, value)
            data.append({"identity_value": value, "euid": euid})
            events.append(
                Event(
                    index=index,
                    protocol=PROTOCOL,
                    name=LINK_EVENT,
                    id=f"el-{name}-{value}",
                    user_id=str(euid),
                    internal=True,
                    properties={LINK_PREVIOUS: value, "identity_name": name},
                    payload=_json.encode({name: value}),
                )
            )
        part = DecodedRequest(credentials=self.credentials(request), events=events)
        return DecodedBatch(parts=[part], reply_data=data)

    def encode(self, outcome: IngestOutcome) -> Reply:
        reply = super().encode(outcome)
        if reply.status == 200:
            body = {"code": 0, "message": "success", "data": outcome.reply_data}
            reply.body = _json.encode(body)
        return reply


class EngageLabPropertyAdapter(EngageLabAdapter):
    """``POST /v1/user/property``: user attributes, stored as an internal ``user.<type>`` event
    of the EUID (``user.set``, ``user.increase``)."""

    def decode(self, request: IngestRequest) -> DecodedBatch:
        change = decode_json_body(request.body, _user_property)
        if change.type not in PROPERTY_OPERATIONS:
            raise RequestError(
                400, "invalid_body", f"type must be one of {sorted(PROPERTY_OPERATIONS)}"
            )
        if change.type == "increase" and any(
            isinstance(v, bool) or not isinstance(v, int) for v in change.properties.values()
        ):
            raise RequestError(400, "invalid_user_property", "increase takes whole numbers")
        event = Event(
            index=0,
            protocol=PROTOCOL,
            name=f"user.{change.type}",
            user_id=str(change.euid),
            internal=True,
            properties=change.properties,
            payload=request.body,
        )
        part = DecodedRequest(credentials=self.credentials(request), events=[event])
        return DecodedBatch(parts=[part])
