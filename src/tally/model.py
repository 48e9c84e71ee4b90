"""The event record every protocol decodes into, and the reasons an event can be dropped."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec


class DropReason(enum.StrEnum):
    """The closed set of reasons an event is rejected. Stable: clients and dashboards use them."""

    INVALID_BODY = "invalid_body"
    """The request body is not valid JSON, or not the shape the protocol expects."""
    INVALID_EVENT = "invalid_event"
    """One item of a batch has a field of the wrong type or is not an object."""
    EVENT_TOO_LARGE = "event_too_large"
    """One item of a batch is larger than the per-event limit."""
    MISSING_NAME = "missing_name"
    """The event has no name (Countly key, Synerise action, EngageLab event_name...)."""
    INVALID_NAME = "invalid_name"
    """The name breaks the name rule that applies to it."""
    INVALID_TIME = "invalid_time"
    """The time is present but cannot be read as an instant."""
    INVALID_MEASURE = "invalid_measure"
    """count, sum or dur is not a finite number, or count is below 1."""
    INVALID_ID = "invalid_id"
    """The client-supplied event id is empty or too long."""
    TOO_MANY_PROPERTIES = "too_many_properties"
    """The event carries more properties than the limit allows."""
    VALUE_TOO_LONG = "value_too_long"
    """A property name, a string property value, or a user, device or session id is longer
    than its limit."""
    NESTING_TOO_DEEP = "nesting_too_deep"
    """A property value nests objects and arrays deeper than the limit allows."""
    TOO_MANY_EVENTS = "too_many_events"
    """The request carries more events than the per-request limit allows."""
    INVALID_CHECKSUM = "invalid_checksum"
    """The request's checksum is missing or does not match the app's salt (Countly)."""
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    """A request with the public app key came from a site the app's ``allowed_origins`` does
    not list."""
    MISSING_IDENTITY = "missing_identity"
    """The event names neither a user nor a device (Segment: no userId and no anonymousId)."""
    UNDEFINED_EVENT = "undefined_event"
    """The path requires a definition (browser tracker, customer JWT, strict app) and the event
    has none."""
    FORBIDDEN_EVENT = "forbidden_event"
    """The event's definition does not allow it with the credentials the request used."""
    RESERVED_EVENT = "reserved_event"
    """The name is reserved for a dedicated endpoint (``transaction.charge``: transactions)."""
    MISSING_PROPERTY = "missing_property"
    """A property the event's definition requires is absent."""
    INVALID_PROPERTY = "invalid_property"
    """A property's value does not have its defined type (and could not, or must not, be
    coerced)."""


class Access(enum.StrEnum):
    """Who a request speaks for, by the credentials it used; event permissions are checked
    against it."""

    ANONYMOUS = "anonymous"
    """A public key: the app key, a Synerise tracker key."""
    CUSTOMER = "customer"
    """A customer (profile) JWT: an authenticated end user."""
    SERVER = "server"
    """The app's API key and secret, or a workspace JWT: a trusted back end."""


MAX_COUNT = 2**63 - 1
"""The largest ``count`` the stores hold (a 64-bit integer column). The pipeline rejects larger
ones (``invalid_measure``): acknowledged, such a batch could never be loaded."""

LINK_EVENT = "identity.link"
"""An internal event saying that ``properties["previous_id"]`` is the same person as the event's
user (or device): Countly's ``old_device_id``, and later Segment's alias."""
LINK_PREVIOUS = "previous_id"


class Drop(msgspec.Struct, frozen=True):
    """A pipeline step's verdict that an event must not be stored."""

    reason: DropReason
    message: str
    value: Any = None
    """The offending value, where one field is to blame (echoed by protocols that report it)."""


class Discard(msgspec.Struct, frozen=True):
    """A pipeline step's verdict that an event is unwanted (an allow/deny list, a bot, internal
    traffic). Unlike a ``Drop`` it is not an error: the client is not told, the event is not kept
    as failed, and each rule counts the events it discarded."""

    rule: str


class Event(msgspec.Struct, kw_only=True):
    """One event, as every protocol adapter produces it and every pipeline step refines it.

    Adapters fill what their wire format carries, leaving ``raw_time`` as the client sent it;
    pipeline steps validate, resolve ``time``, enrich the context and assign ``id``.
    """

    index: int
    """Position of the item in its request, for per-item errors."""
    protocol: str
    name: Any = None
    id: str | None = None
    client_id: bool = False
    """True when ``id`` came from the client, so a retry must be deduplicated."""
    label: str | None = None
    raw_time: Any = None
    time: datetime | None = None
    received_at: datetime | None = None
    user_id: str | None = None
    device_id: str | None = None
    session_id: str | None = None
    count: Any = None
    sum: Any = None
    dur: Any = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    undefined_properties: list[str] = msgspec.field(default_factory=list)
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
    """ISO 3166-1 alpha-2, as the client or SDK states it (Countly ``country_code``)."""
    city: str | None = None
    location: str | None = None
    """``"lat,lon"`` as the client states it (Countly ``location``)."""
    coerced_properties: list[str] = msgspec.field(default_factory=list)
    """Properties whose value was converted to the type their definition gives."""
    internal: bool = False
    """An SDK's own bookkeeping event (Countly ``[CLY]_`` keys), kept but apart from user events."""
    payload: bytes = b""
    """The item exactly as received, kept for the failed-event record."""


class FailedEvent(msgspec.Struct, kw_only=True):
    """An event (or whole request) that was rejected, kept with its reason so it can be replayed."""

    app_id: str
    received_at: datetime
    protocol: str
    reason: DropReason
    message: str
    payload: bytes
    name: str | None = None
    event_index: int | None = None
    replay: bytes | None = None
    """What replaying needs (``pipeline.replay``); None when the request could not be decoded
    into events at all."""
