"""Who an event belongs to: a customer JWT's customer, and the protocols that require a user or
device on every event."""

from __future__ import annotations

from typing import Final

from tally.model import Drop, DropReason, Event
from tally.pipeline.context import RequestContext
from tally.pipeline.runner import needed_when

IDENTITY_REQUIRED: Final = {
    "segment": "the message has neither userId nor anonymousId",
    "synerise": "client: needs at least one of id, uuid, customId, email",
    "engagelab": "euid is required",
}
"""Protocols whose every event must name a user or a device, with how each says it is missing.
Countly refuses a request without device_id as a whole (an adapter rule: it is a parameter of
the request); the native API allows events with no identity."""


@needed_when(lambda ctx: ctx.customer_id is not None)
def bind_customer(event: Event, ctx: RequestContext) -> Event | Drop:
    """Events sent with a customer JWT belong to the customer the token names, whatever the
    body says."""
    if ctx.customer_id is not None:
        event.user_id = ctx.customer_id
    return event


@needed_when(lambda ctx: ctx.protocol in IDENTITY_REQUIRED)
def require_identity(event: Event, ctx: RequestContext) -> Event | Drop:
    if event.user_id is None and event.device_id is None:
        missing = IDENTITY_REQUIRED.get(ctx.protocol)
        if missing is not None:
            return Drop(DropReason.MISSING_IDENTITY, missing)
    return event
