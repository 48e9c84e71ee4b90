"""Event and property definitions, and event aliases: an app's taxonomy (Data Management)."""

from __future__ import annotations

import enum
import re
from typing import Final

import msgspec


class EventStatus(enum.StrEnum):
    ACTIVE = "active"
    HIDDEN = "hidden"
    """Accepted and stored, but left out of the dashboard's lists."""
    DEPRECATED = "deprecated"
    """Accepted (old clients keep working) and flagged so nobody builds on it."""


class Permission(enum.StrEnum):
    """Who may send an event where permissions are checked (see ``pipeline.definitions``)."""

    ANONYMOUS = "anonymous"
    """Available to anonymous profiles: the app key or tracker key is enough."""
    CUSTOMER = "customer"
    """Requires a customer (profile) JWT, or server credentials."""
    SERVER = "server"
    """Server-side only: the API key and secret, or a workspace JWT."""


class PropertyType(enum.StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    """Stored as an ISO 8601 string in UTC."""
    LIST = "list"
    OBJECT = "object"


class OnMismatch(enum.StrEnum):
    COERCE = "coerce"
    """Convert the value to the defined type when it can be done without loss; else reject."""
    REJECT = "reject"


class Source(enum.StrEnum):
    MANUAL = "manual"
    """Written through the API, the CLI or a catalog file."""
    FIRST_SEEN = "first_seen"
    """Defined by Tally when a protocol that accepts new names first sent it."""


class PropertyDefinition(
    msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    name: str
    type: PropertyType = PropertyType.STRING
    required: bool = False
    description: str = ""
    on_mismatch: OnMismatch = OnMismatch.COERCE


class EventDefinition(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    """The action as clients send it (Countly key, Synerise action, EngageLab event_name...)."""
    display_name: str = ""
    description: str = ""
    label_template: str = ""
    """Rendered into the event's label when the client sends none: ``Visited page {{title}}``."""
    status: EventStatus = EventStatus.ACTIVE
    permission: Permission = Permission.SERVER
    properties: list[PropertyDefinition] = msgspec.field(default_factory=list)
    source: Source = Source.MANUAL

    def property(self, name: str) -> PropertyDefinition | None:
        for prop in self.properties:
            if prop.name == name:
                return prop
        return None


class EventAlias(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Events sent as ``alias`` are stored as ``name`` from now on; queries over either name see
    both."""

    alias: str
    name: str


MAX_DEFINED_NAME: Final = 255
_TEMPLATE_FIELD = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


def render_label(template: str, properties: dict[str, object]) -> str:
    """``Visited page {{title}}`` with ``title`` from the properties (missing: empty)."""

    def field(match: re.Match[str]) -> str:
        value = properties.get(match.group(1))
        return "" if value is None else str(value)

    return _TEMPLATE_FIELD.sub(field, template)


BUILT_IN_EVENTS: Final = (
    EventDefinition(
        name="page.visit",
        display_name="Page visit",
        description="A page view, sent automatically on every page load.",
        label_template="Visited page {{title}}",
        permission=Permission.ANONYMOUS,
        properties=[
            PropertyDefinition(name="url", description="The page's address."),
            PropertyDefinition(name="title", description="The page's title."),
            PropertyDefinition(name="referrer", description="The previous page."),
        ],
    ),
    EventDefinition(
        name="session.start",
        display_name="Session start",
        label_template="Started session",
        permission=Permission.ANONYMOUS,
    ),
    EventDefinition(
        name="session.end",
        display_name="Session end",
        label_template="Session end",
        permission=Permission.ANONYMOUS,
    ),
    EventDefinition(
        name="form.submit",
        display_name="Form submit",
        description="Declarative tracking: a tagged form was submitted.",
        permission=Permission.ANONYMOUS,
    ),
    EventDefinition(
        name="button.click",
        display_name="Button click",
        description="Declarative tracking: a tagged element was clicked.",
        permission=Permission.ANONYMOUS,
    ),
)
"""Predefined in every app and available to anonymous profiles; an app's own definition of the
same name replaces the built-in one."""

RESERVED_EVENTS: Final = {
    "transaction.charge": "send transactions to POST /v4/transactions",
    "product.buy": "it is recorded for each product of a transaction sent to POST /v4/transactions",
}
"""Names only the transactions endpoint may produce, with where to send them instead."""
