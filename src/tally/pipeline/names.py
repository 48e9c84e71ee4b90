"""Event name rules (each protocol's own, or one the app chooses) and event aliases."""

from __future__ import annotations

import re
from typing import Final

from tally import metrics
from tally.catalog.models import Convention, NameRule
from tally.model import Drop, DropReason, Event
from tally.pipeline.context import RequestContext
from tally.pipeline.runner import needed_when


class Rule:
    def __init__(self, longest: int, pattern: str | None = None, says: str = "") -> None:
        self.longest = longest
        self.pattern = re.compile(pattern) if pattern else None
        self.says = says


RULES: Final = {
    NameRule.SYNERISE: Rule(32, r"[a-zA-Z0-9.\-_]+", "letters, digits, '.', '-' and '_' only"),
    NameRule.ENGAGELAB: Rule(
        255, r"[a-z][a-z0-9_]*", "lowercase letters, digits and underscores, starting with a letter"
    ),
    NameRule.COUNTLY: Rule(127),
    NameRule.ANY: Rule(255),
}
RULE_BY_PROTOCOL: Final = {
    "synerise": NameRule.SYNERISE,
    "engagelab": NameRule.ENGAGELAB,
    "countly": NameRule.COUNTLY,
}
"""Each protocol's documented rule; the others (Segment, native) allow any name up to 255."""
CONVENTION: Final = re.compile(r"[^.]+(\.[^.]+)+")
"""``context.action``: at least two non-empty parts separated by dots."""


def name_rule(ctx: RequestContext) -> NameRule:
    chosen = ctx.rules.settings.name_rule
    if chosen is not NameRule.PROTOCOL:
        return chosen
    return RULE_BY_PROTOCOL.get(ctx.protocol, NameRule.ANY)


_WARN: Final = "warn"
"""A name verdict: stored, but counted as off the context.action convention."""
_UNJUDGED: Final = object()


def check_name(event: Event, ctx: RequestContext) -> Event | Drop:
    name = event.name
    if type(name) is str and not event.internal:
        # A request's events mostly share a few names: each is judged once per request.
        verdicts = ctx.name_verdicts
        verdict = verdicts.get(name, _UNJUDGED)
        if verdict is _UNJUDGED:
            verdict = verdicts[name] = _judge(name, internal=False, ctx=ctx)
    else:
        verdict = _judge(name, internal=event.internal, ctx=ctx)
    if verdict is None:
        return event
    if verdict is _WARN:
        ctx.count(metrics.NAME_CONVENTION_WARNINGS)
        return event
    return verdict


def _judge(name: object, *, internal: bool, ctx: RequestContext) -> Drop | str | None:
    """None for a name that passes, ``_WARN``, or the ``Drop``."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return Drop(DropReason.MISSING_NAME, "event name is missing or empty")
    if not isinstance(name, str):
        return Drop(
            DropReason.INVALID_NAME, f"event name must be a string, got {type(name).__name__}"
        )
    kind = name_rule(ctx)
    rule = RULES[kind]
    if len(name) > rule.longest:
        return Drop(
            DropReason.INVALID_NAME,
            f"event name is {len(name)} characters; at most {rule.longest} are allowed",
        )
    if internal:
        # SDK bookkeeping events ([CLY]_view...) follow the SDK's naming, not the app's rule.
        return None
    if rule.pattern is not None and not rule.pattern.fullmatch(name):
        return Drop(DropReason.INVALID_NAME, f"event name {name!r} must be {rule.says}")
    if kind is NameRule.SYNERISE and not CONVENTION.fullmatch(name):
        convention = ctx.rules.settings.convention
        if convention is Convention.ENFORCE:
            return Drop(
                DropReason.INVALID_NAME,
                f"event name {name!r} must follow the context.action convention "
                "(for example page.visit)",
            )
        if convention is Convention.WARN:
            return _WARN
    return None


@needed_when(lambda ctx: bool(ctx.rules.aliases))
def rename_alias(event: Event, ctx: RequestContext) -> Event | Drop:
    """An event sent under an alias is stored under the name it now has."""
    renamed = ctx.rules.aliases.get(event.name)
    if renamed is not None:
        event.name = renamed
    return event
