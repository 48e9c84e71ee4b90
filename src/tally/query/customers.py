"""Customers: finding them by id, and one customer's profile (their linked ids, devices, most
frequent events and the properties their SDKs reported about them).

A customer is a user id, or a device id for events with no user; a profile covers every id linked
to it (identify, alias, login, ``old_device_id``), as the activity feed does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from tally.query import duckdb_sql as dialect
from tally.query.compile import Sql
from tally.utc import aware

PROFILE_EVENTS: Final = ("user.details", "identity.identify", "user.set", "user.increase")
"""Events whose properties describe the customer: Countly ``user_details``, Segment and
tally.client ``identify`` traits, EngageLab ``/v1/user/property`` (``set`` and ``increase``)."""
INCREMENT_EVENT: Final = "user.increase"
DEVICE_FIELDS: Final = (
    "os",
    "browser",
    "device_type",
    "sdk_name",
    "country_code",
    "city",
    "locale",
)
TOP_EVENTS: Final = 10

_ACTOR: Final = dialect.ACTOR_WITHOUT_PERSONS
_IN_PERSON: Final = dialect.in_person("e")


def search_sql(app_id: str, text: str | None, limit: int) -> Sql:
    """Customers whose user or device id contains ``text`` (any case), most recently seen first.
    Columns: id, is_user, events, first_seen, last_seen."""
    sql = Sql(
        f"SELECT {_ACTOR} AS id, max(CASE WHEN e.user_id IS NULL THEN 0 ELSE 1 END), count(*), "
        f"min(e.time), max(e.time) FROM events e WHERE e.app_id = ? AND {_ACTOR} IS NOT NULL",
        [app_id],
    )
    if text:
        sql = sql + Sql(
            f" AND ({dialect.contains_ignore_case('e.user_id')} "
            f"OR {dialect.contains_ignore_case('e.device_id')})",
            [text, text],
        )
    return sql + Sql(" GROUP BY 1 ORDER BY 5 DESC, 1 LIMIT ?", [limit])


def _person(app_id: str, customer: str) -> Sql:
    return Sql("WITH RECURSIVE " + dialect.PERSON_IDS_CTE, [app_id, app_id, customer])


def linked_ids_sql(app_id: str, customer: str) -> Sql:
    """Every id of the customer's person, the customer's own included. Column: id."""
    return _person(app_id, customer) + "SELECT id FROM person ORDER BY id"


def summary_sql(app_id: str, customer: str) -> Sql:
    """Columns: events, first_seen, last_seen (one row; events 0 when there are none)."""
    return _person(app_id, customer) + Sql(
        f"SELECT count(*), min(e.time), max(e.time) FROM events e "
        f"WHERE e.app_id = ? AND {_IN_PERSON}",
        [app_id],
    )


def devices_sql(app_id: str, customer: str) -> Sql:
    """The person's devices, most recently seen first, with what their latest events said.
    Columns: device, events, first_seen, last_seen, then DEVICE_FIELDS."""
    latest = ", ".join(dialect.latest(f"e.{name}") for name in DEVICE_FIELDS)
    return _person(app_id, customer) + Sql(
        f"SELECT e.device_id, count(*), min(e.time), max(e.time), {latest} FROM events e "
        f"WHERE e.app_id = ? AND e.device_id IS NOT NULL AND {_IN_PERSON} "
        "GROUP BY 1 ORDER BY 4 DESC, 1",
        [app_id],
    )


def top_events_sql(app_id: str, customer: str) -> Sql:
    """The person's most frequent events. Columns: name, events, last_seen."""
    return _person(app_id, customer) + Sql(
        f"SELECT e.name, count(*), max(e.time) FROM events e WHERE e.app_id = ? AND {_IN_PERSON} "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [app_id, TOP_EVENTS],
    )


def device_rows(
    rows: Iterable[Sequence[Any]], instant: Callable[[Any], Any] = lambda value: value
) -> list[dict[str, Any]]:
    """``devices_sql``'s rows as the profile has them; ``instant`` reads a time column (the
    dialect's: ClickHouse rows carry microseconds)."""
    out = []
    for device, events, first, last, *fields in rows:
        item: dict[str, Any] = {
            "device": device,
            "events": events,
            "first_seen": aware(instant(first)),
            "last_seen": aware(instant(last)),
        }
        item.update(zip(DEVICE_FIELDS, fields, strict=True))
        out.append(item)
    return out


def merge_properties(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The customer's properties from their profile events, oldest first: later values replace
    earlier ones; ``user.increase`` adds to a number."""
    merged: dict[str, Any] = {}
    for event in events:
        properties = event.get("properties") or {}
        if event["name"] != INCREMENT_EVENT:
            merged.update(properties)
            continue
        for key, amount in properties.items():
            current = merged.get(key)
            number = isinstance(current, int | float) and not isinstance(current, bool)
            merged[key] = (current if number else 0) + amount
    return merged
