"""``customers``' queries compiled for ClickHouse: the same columns, with times as stored
(``UInt64`` microseconds; ``Dialect.instant`` turns them into datetimes). A person's ids come
from ``clickhouse_persons.PersonIds`` (the links walked by the store), as 18.16 cannot recurse.
"""

from __future__ import annotations

from tally.query.clickhouse_sql import ACTOR, EVENTS
from tally.query.compile import Sql
from tally.query.customers import DEVICE_FIELDS, TOP_EVENTS
from tally.store.clickhouse_persons import PersonIds


def _contains_ignore_case(column: str) -> str:
    return f"ifNull(position(lowerUTF8({column}), lowerUTF8(%s)) > 0, 0)"


def search_sql(app_id: str, text: str | None, limit: int) -> Sql:
    """Columns: id, is_user, events, first_seen, last_seen (most recently seen first)."""
    sql = Sql(
        f"SELECT {ACTOR} AS cid, max(isNotNull(user_id)), count(), min(time), max(time) "
        f"FROM {EVENTS} WHERE app_id = %s AND isNotNull(cid)",
        [app_id],
    )
    if text:
        sql = sql + Sql(
            f" AND ({_contains_ignore_case('user_id')} OR {_contains_ignore_case('device_id')})",
            [text, text],
        )
    return sql + Sql(" GROUP BY cid ORDER BY max(time) DESC, cid LIMIT %s", [limit])


def _in_person(app_id: str, customer: str) -> Sql:
    ids = PersonIds(app_id, customer)
    return Sql("(ifNull(user_id GLOBAL IN %s, 0) OR ifNull(device_id GLOBAL IN %s, 0))", [ids, ids])


def linked_ids_sql(app_id: str, customer: str) -> Sql:
    """Every id of the customer's person, the customer's own included. Column: id."""
    return Sql("SELECT id FROM %s ORDER BY id", [PersonIds(app_id, customer)])


def summary_sql(app_id: str, customer: str) -> Sql:
    """Columns: events, first_seen, last_seen (one row; events 0 when there are none)."""
    return Sql(
        f"SELECT count(), min(time), max(time) FROM {EVENTS} WHERE app_id = %s AND ", [app_id]
    ) + _in_person(app_id, customer)


def devices_sql(app_id: str, customer: str) -> Sql:
    """Columns: device, events, first_seen, last_seen, then DEVICE_FIELDS (each the value of
    the device's latest event that has it: argMax skips NULLs, as DuckDB's arg_max)."""
    latest = ", ".join(f"argMax({name}, time)" for name in DEVICE_FIELDS)
    return (
        Sql(
            f"SELECT device_id, count(), min(time), max(time), {latest} FROM {EVENTS} "
            "WHERE app_id = %s AND isNotNull(device_id) AND ",
            [app_id],
        )
        + _in_person(app_id, customer)
        + " GROUP BY device_id ORDER BY max(time) DESC, device_id"
    )


def top_events_sql(app_id: str, customer: str) -> Sql:
    """Columns: name, events, last_seen (most frequent first)."""
    return (
        Sql(f"SELECT name, count(), max(time) FROM {EVENTS} WHERE app_id = %s AND ", [app_id])
        + _in_person(app_id, customer)
        + Sql(" GROUP BY name ORDER BY count() DESC, name LIMIT %s", [TOP_EVENTS])
    )
