"""The pipeline's steps, in order. Each takes an event and returns it, or a ``Drop`` with a reason.

A rule that applies to more than one protocol lives here, once. Protocol adapters only translate
wire formats into ``Event`` fields.
"""

from __future__ import annotations

import math
import re
from typing import Final

from tally.ids import uuid7
from tally.model import Drop, DropReason, Event
from tally.pipeline.context import RequestContext
from tally.pipeline.timeparse import FUTURE_TOLERANCE, TimeError, correct_skew, parse_instant
from tally.pipeline.useragent import parse_user_agent

MAX_NAME_LENGTH: Final = 255
NAME_LENGTH_BY_PROTOCOL: Final = {"countly": 127, "synerise": 32}
"""Protocols whose documented rule is stricter than the default (Countly drops keys >= 128;
Synerise actions have at most 32 characters)."""
NAME_PATTERN_BY_PROTOCOL: Final = {
    "synerise": (re.compile(r"[a-zA-Z0-9.\-_]+"), "letters, digits, '.', '-' and '_' only"),
    "engagelab": (
        re.compile(r"[a-z][a-z0-9_]*"),
        "lowercase letters, digits and underscores, starting with a letter",
    ),
}


def limit_event_size(event: Event, ctx: RequestContext) -> Event | Drop:
    size = len(event.payload)
    if size > ctx.limits.max_event_bytes:
        return Drop(
            DropReason.EVENT_TOO_LARGE,
            f"event is {size} bytes; the limit is {ctx.limits.max_event_bytes} bytes",
        )
    return event


def check_name(event: Event, ctx: RequestContext) -> Event | Drop:
    name = event.name
    if name is None or (isinstance(name, str) and not name.strip()):
        return Drop(DropReason.MISSING_NAME, "event name is missing or empty")
    if not isinstance(name, str):
        return Drop(
            DropReason.INVALID_NAME, f"event name must be a string, got {type(name).__name__}"
        )
    rule = NAME_PATTERN_BY_PROTOCOL.get(ctx.protocol)
    if rule is not None and not event.internal and not rule[0].fullmatch(name):
        return Drop(DropReason.INVALID_NAME, f"event name {name!r} must be {rule[1]}")
    longest = NAME_LENGTH_BY_PROTOCOL.get(ctx.protocol, MAX_NAME_LENGTH)
    if len(name) > longest:
        return Drop(
            DropReason.INVALID_NAME,
            f"event name is {len(name)} characters; at most {longest} are allowed",
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
    if count is None:
        event.count = 1
    elif isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return Drop(DropReason.INVALID_MEASURE, f"count must be a whole number >= 1, got {count!r}")
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
        event.id = uuid7()
        event.client_id = False
        return event
    if not event.id or len(event.id) > ctx.limits.max_id_length:
        return Drop(
            DropReason.INVALID_ID,
            f"event id must be 1 to {ctx.limits.max_id_length} characters",
        )
    event.client_id = True
    return event


DEFAULT_STEPS: Final = (
    limit_event_size,
    check_name,
    resolve_time,
    check_measures,
    limit_properties,
    enrich_context,
    assign_id,
)
