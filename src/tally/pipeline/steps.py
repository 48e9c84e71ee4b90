"""The pipeline's steps, in order. Each takes an event and returns it, or a ``Drop`` with a reason.

A rule that applies to more than one protocol lives here, once. Protocol adapters only translate
wire formats into ``Event`` fields.
"""

from __future__ import annotations

import math
from typing import Final

from tally.ids import uuid7
from tally.model import Drop, DropReason, Event
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
    check_definition,
    assign_id,
    note_first_seen,
)
"""The order every event takes. Cheap rejections first; definitions after the event's shape is
known to be sound; ``note_first_seen`` last, so only events that will be stored define names."""
