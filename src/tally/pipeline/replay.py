"""What a failed event keeps so it can run through the pipeline again after the catalog is fixed.

The event is kept as it was when it was dropped (steps are idempotent, so running them again on a
partly enriched event gives the same result), with the request context the steps read.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from tally.catalog.models import App
from tally.limits import Limits
from tally.model import Access, Event
from tally.pipeline.app_rules import AppRules
from tally.pipeline.context import RequestContext


class ReplayState(msgspec.Struct, kw_only=True):
    event: Event
    ip: str | None = None
    user_agent: str | None = None
    sent_at: datetime | None = None
    access: Access = Access.SERVER
    enforce_definitions: bool = False
    allow_reserved: bool = False
    customer_id: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ReplayState)


def replay_state(event: Event, ctx: RequestContext) -> bytes | None:
    """The state to keep, or None if it cannot be encoded (an integer beyond 64 bits, which
    JSON allows): the failed event is then kept without it, to be resent rather than replayed."""
    try:
        return _encode_state(event, ctx)
    except (OverflowError, msgspec.EncodeError):
        return None


def _encode_state(event: Event, ctx: RequestContext) -> bytes:
    return _encoder.encode(
        ReplayState(
            event=msgspec.structs.replace(event, payload=b""),
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            sent_at=ctx.sent_at,
            access=ctx.access,
            enforce_definitions=ctx.enforce_definitions,
            allow_reserved=ctx.allow_reserved,
            customer_id=ctx.customer_id,
        )
    )


def restore(
    blob: bytes,
    payload: bytes,
    *,
    app: App,
    rules: AppRules,
    protocol: str,
    received_at: datetime,
    limits: Limits,
) -> tuple[Event, RequestContext]:
    """The event and a context like the original request's, with the app's current rules."""
    state = _decoder.decode(blob)
    event = state.event
    event.payload = payload
    ctx = RequestContext(
        app=app,
        rules=rules,
        protocol=protocol,
        received_at=received_at,
        limits=limits,
        ip=state.ip,
        user_agent=state.user_agent,
        sent_at=state.sent_at,
        access=state.access,
        enforce_definitions=state.enforce_definitions,
        allow_reserved=state.allow_reserved,
        customer_id=state.customer_id,
    )
    return event, ctx
