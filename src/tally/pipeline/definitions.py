"""The catalog's rules for each event: reserved names, definitions and permissions, property
types; and new names noted for definition on first sight.

Where definitions are required (the browser tracker, customer JWTs, strict apps) an undefined event
is rejected and undefined properties are kept but marked; elsewhere a protocol's documented
behaviour stands: a new event, and each new property, is defined when first seen.
SDK-internal events (``[CLY]_`` keys, identity links) are outside the catalog.
"""

from __future__ import annotations

from typing import Final

from tally import metrics
from tally.catalog.definitions import RESERVED_EVENTS, OnMismatch, Permission, render_label
from tally.model import Access, Drop, DropReason, Event
from tally.pipeline.coerce import EXACT_TYPES, Mismatch, coerce, conforms, type_of
from tally.pipeline.context import RequestContext
from tally.pipeline.runner import needed_when

_exact_type = EXACT_TYPES.get

ALLOWED_BY: Final = {
    Access.ANONYMOUS: frozenset({Permission.ANONYMOUS}),
    Access.CUSTOMER: frozenset({Permission.ANONYMOUS, Permission.CUSTOMER}),
    Access.SERVER: frozenset(Permission),
}
"""Which permissions each kind of credentials satisfies."""
_NEEDS: Final = {
    Permission.CUSTOMER: "a customer JWT or server credentials",
    Permission.SERVER: "server credentials (the API key and secret)",
}


@needed_when(lambda ctx: not ctx.allow_reserved)
def check_reserved(event: Event, ctx: RequestContext) -> Event | Drop:
    where = RESERVED_EVENTS.get(event.name)
    if where is not None and not ctx.allow_reserved:
        return Drop(
            DropReason.RESERVED_EVENT,
            f"{event.name} is reserved and cannot be sent as a custom event: {where}",
            event.name,
        )
    return event


def check_definition(event: Event, ctx: RequestContext) -> Event | Drop:
    if event.internal:
        return event
    name = event.name
    rules = ctx.rules
    definition = rules.definitions.get(name)
    strict = ctx.requires_definitions
    if definition is None:
        if strict and name not in RESERVED_EVENTS:  # reserved ones passed check_reserved
            return Drop(
                DropReason.UNDEFINED_EVENT,
                f"event {name!r} is not defined; define it in the app's catalog first",
                name,
            )
        return event
    if strict and definition.permission not in ALLOWED_BY[ctx.access]:
        return Drop(
            DropReason.FORBIDDEN_EVENT,
            f"event {name!r} needs {_NEEDS[definition.permission]}",
            name,
        )
    properties = event.properties
    for required in rules.required[name]:
        if properties.get(required) is None:
            return Drop(
                DropReason.MISSING_PROPERTY,
                f"property {required!r} is required by the definition of {name!r}",
                required,
            )
    defined = rules.properties[name]
    undefined: list[str] = []
    # Kept on the event as they happen: a replay of an event dropped further on still knows.
    coerced = event.coerced_properties
    for key, value in properties.items():
        prop = defined.get(key)
        if prop is None:
            if strict:
                undefined.append(key)
            continue
        if _exact_type(type(value)) is prop.type or conforms(value, prop.type):
            continue  # the first test settles most values without a call
        if prop.on_mismatch is OnMismatch.REJECT:
            return Drop(
                DropReason.INVALID_PROPERTY,
                f"property {key!r} must be a {prop.type}, got {value!r}",
                value,
            )
        try:
            properties[key] = coerce(value, prop.type)
        except Mismatch as exc:
            return Drop(
                DropReason.INVALID_PROPERTY, f"property {key!r} must be a {prop.type}: {exc}", value
            )
        ctx.count(metrics.PROPERTIES_COERCED)
        if key not in coerced:
            coerced.append(key)
    event.undefined_properties = undefined
    if event.label is None and definition.label_template:
        event.label = render_label(definition.label_template, properties)
    return event


@needed_when(lambda ctx: not ctx.requires_definitions)
def note_first_seen(event: Event, ctx: RequestContext) -> Event | Drop:
    """The last step: an event that will be stored and is new (or has new properties) is noted
    for definition, with the type of the first value seen."""
    name = event.name
    if event.internal or ctx.requires_definitions or name in RESERVED_EVENTS:
        return event
    rules = ctx.rules
    defined = rules.properties.get(name)
    properties = event.properties
    if defined is not None and defined.keys() >= properties.keys():
        return event  # most events: defined, with no property that is not
    new = defined is None and not rules.reported(name)
    noted = ctx.first_seen.get(name)
    for key, value in properties.items():
        if (defined is not None and key in defined) or rules.reported(name, key):
            continue
        kind = type_of(value)
        if kind is None:
            continue
        if noted is None:
            noted = ctx.first_seen.setdefault(name, {})
        noted.setdefault(key, kind)
    if new and noted is None:
        ctx.first_seen[name] = {}
    return event
