"""Traffic an app does not want stored: its allow and deny lists, bots, its own addresses.

These steps discard rather than drop: nothing was wrong with the event, so the client is not told
and no failed event is kept, but each rule counts what it discarded.
"""

from __future__ import annotations

import ipaddress

from tally.model import Discard, Drop, Event
from tally.pipeline.context import RequestContext
from tally.pipeline.runner import needed_when

NOT_ALLOWED = "allowlist"
"""The rule an event matching no allowlist pattern is counted under."""
BOT = "bot"


@needed_when(lambda ctx: bool(ctx.rules.denylist or ctx.rules.allowlist))
def filter_lists(event: Event, ctx: RequestContext) -> Event | Drop | Discard:
    """The denylist wins over the allowlist; SDK-internal events (identity links, sessions'
    bookkeeping) are exempt from the allowlist, which names the app's own events."""
    rules = ctx.rules
    name = event.name
    for pattern, compiled in rules.denylist:
        if compiled.match(name):
            return Discard(f"denylist:{pattern}")
    allowed = rules.allowlist
    if allowed and not event.internal and not any(c.match(name) for _, c in allowed):
        return Discard(NOT_ALLOWED)
    return event


@needed_when(lambda ctx: ctx.rules.settings.filter_bots or bool(ctx.rules.internal_networks))
def filter_traffic(event: Event, ctx: RequestContext) -> Event | Drop | Discard:
    """Bots by user agent (runs after ``enrich_context`` parsed it) and internal addresses."""
    rules = ctx.rules
    if rules.settings.filter_bots and event.device_type == "bot":
        return Discard(BOT)
    if rules.internal_networks and event.ip:
        try:
            address = ipaddress.ip_address(event.ip)
        except ValueError:
            return event
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack listener
        for network in rules.internal_networks:
            if address in network:
                return Discard(f"internal_ips:{network}")
    return event
