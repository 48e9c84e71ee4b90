"""The pipeline's steps, in order. Each takes an event and returns it, or a ``Drop`` with a reason.

A rule that applies to more than one protocol lives here, once. Protocol adapters only translate
wire formats into ``Event`` fields.
"""

from __future__ import annotations

import math
from typing import Final

from tally.limits import Limits
from tally.model import MAX_COUNT, Drop, DropReason, Event
from tally.pipeline.context import RequestContext
from tally.pipeline.definitions import check_definition, check_reserved, note_first_seen
from tally.pipeline.filters import filter_lists, filter_traffic
from tally.pipeline.identity import bind_customer, require_identity
from tally.pipeline.names import check_name, rename_alias
from tally.pipeline.runner import Step
from tally.pipeline.timeparse import FUTURE_TOLERANCE, TimeError, correct_skew, parse_instant
from tally.pipeline.useragent import parse_user_agent


def limit_event_size(event: Event, ctx: RequestContext) -> Event | Drop:
    size = len(event.payload)
    if size > ctx.limits.max_event_bytes:
        return Drop(
            DropReason.EVENT_TOO_LARGE,
            f"event is {size} bytes; the limit is {ctx.limits.max_event_bytes} bytes",
        )
    return event


def resolve_time(event: Event, ctx: RequestContext) -> Event | Drop:
    """Event time from the client's clock, corrected for skew, never in the future."""
    received = ctx.received_at
    event.received_at = received
    if event.raw_time is None:
        event.time = received
        return event
    try:
        instant = parse_instant(event.raw_time)
    except TimeError as exc:
        return Drop(DropReason.INVALID_TIME, str(exc))
    if ctx.sent_at is not None:
        instant = correct_skew(instant, ctx.sent_at, received)
    if instant > received + FUTURE_TOLERANCE:
        instant = received
    event.time = instant
    return event


def check_measures(event: Event, ctx: RequestContext) -> Event | Drop:
    """count defaults to 1 and is a whole number >= 1; sum and dur are finite, dur not negative."""
    count = event.count
    if event.sum is None and event.dur is None:  # most events: the checks below in short
        if count is None:
            event.count = 1
            return event
        if type(count) is int and 1 <= count <= MAX_COUNT:
            return event
    if count is None:
        event.count = 1
    elif isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        return Drop(
            DropReason.INVALID_MEASURE,
            f"count must be a whole number from 1 to {MAX_COUNT}, got {count!r}",
        )
    for field in ("sum", "dur"):
        value = getattr(event, field)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return Drop(
                DropReason.INVALID_MEASURE, f"{field} must be a finite number, got {value!r}"
            )
        setattr(event, field, float(value))
    if event.dur is not None and event.dur < 0:
        return Drop(DropReason.INVALID_MEASURE, f"dur must not be negative, got {event.dur!r}")
    return event


def limit_properties(event: Event, ctx: RequestContext) -> Event | Drop:
    if len(event.properties) > ctx.limits.max_properties:
        return Drop(
            DropReason.TOO_MANY_PROPERTIES,
            f"event has {len(event.properties)} properties; "
            f"the limit is {ctx.limits.max_properties}",
        )
    return event


_USER_FIELDS: Final = (
    ("user_id", "user id"),
    ("device_id", "device id"),
    ("session_id", "session id"),
)


def limit_values(event: Event, ctx: RequestContext) -> Event | Drop:
    """The operator's caps on lengths and nesting: event name, user/device/session ids, property
    names and string values (at any depth), and how deep property values nest."""
    limits = ctx.limits
    name = event.name
    if isinstance(name, str) and len(name) > limits.max_name_length:
        # the protocol's own name rule (check_name) is usually the stricter one
        return Drop(
            DropReason.INVALID_NAME,
            f"event name is {len(name)} characters; the limit is {limits.max_name_length}",
        )
    longest = limits.max_user_id_length
    user_id, device_id, session_id = event.user_id, event.device_id, event.session_id
    if (
        (isinstance(user_id, str) and len(user_id) > longest)
        or (isinstance(device_id, str) and len(device_id) > longest)
        or (isinstance(session_id, str) and len(session_id) > longest)
    ):
        for field, what in _USER_FIELDS:
            value = getattr(event, field)
            if isinstance(value, str) and len(value) > longest:
                return Drop(
                    DropReason.VALUE_TOO_LONG,
                    f"{what} is {len(value)} characters; the limit is {longest}",
                )
    if event.properties:
        return _check_nested(event.properties, limits, 0, "") or event
    return event


def _check_nested(container: dict | list, limits: Limits, depth: int, path: str) -> Drop | None:
    """The first property name, string value or nesting in ``container`` over its limit."""
    if depth > limits.max_depth:
        return Drop(
            DropReason.NESTING_TOO_DEEP,
            f"property {path} nests objects and arrays deeper than {limits.max_depth} levels",
        )
    longest_key, longest = limits.max_key_length, limits.max_string_length
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        if isinstance(key, str) and len(key) > longest_key:
            return Drop(
                DropReason.VALUE_TOO_LONG,
                f"a property name is {len(key)} characters; the limit is {longest_key}",
            )
        if type(value) is str:
            if len(value) > longest:
                return Drop(
                    DropReason.VALUE_TOO_LONG,
                    f"property {_path(path, key)} is {len(value)} characters; "
                    f"the limit is {longest}",
                )
        elif isinstance(value, dict | list):
            drop = _check_nested(value, limits, depth + 1, _path(path, key))
            if drop is not None:
                return drop
    return None


def _path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def enrich_context(event: Event, ctx: RequestContext) -> Event | Drop:
    """Fill ip and user agent from the request, and parse the user agent."""
    if event.ip is None:
        event.ip = ctx.ip
    if event.user_agent is None:
        event.user_agent = ctx.user_agent
    if event.user_agent:
        agent = parse_user_agent(event.user_agent)
        event.browser = event.browser or agent.browser
        event.os = event.os or agent.os
        event.device_type = event.device_type or agent.device_type
    return event


def assign_id(event: Event, ctx: RequestContext) -> Event | Drop:
    """Keep a client-supplied id (so retries deduplicate) or make a time-ordered one."""
    if event.id is None:
        event.id = ctx.new_event_id()
        event.client_id = False
        return event
    if not event.id or len(event.id) > ctx.limits.max_id_length:
        return Drop(
            DropReason.INVALID_ID,
            f"event id must be 1 to {ctx.limits.max_id_length} characters",
        )
    event.client_id = True
    return event


DEFAULT_STEPS: Final[tuple[Step, ...]] = (
    limit_event_size,
    check_name,
    bind_customer,
    require_identity,
    rename_alias,
    check_reserved,
    filter_lists,
    enrich_context,
    filter_traffic,
    resolve_time,
    check_measures,
    limit_properties,
    limit_values,
    check_definition,
    assign_id,
    note_first_seen,
)
"""The order every event takes. Cheap rejections first; definitions after the event's shape is
known to be sound; ``note_first_seen`` last, so only events that will be stored define names."""
