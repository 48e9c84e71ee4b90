"""The pieces of the analytics SQL that are DuckDB's own and need no query parameters but a
zone: time zones, bucket text, JSON property access, the person of an event. The DuckDB query
builders (``compile``, ``funnel``, ``retention``, ``sessions``, ``customers``) use these; bucket
starts and local times, which take the period's zone offsets as parameters, are
``compile.bucket`` and ``compile.local_time``. ClickHouse has its own compiler
(``clickhouse_sql`` and ``dialects``)."""

from __future__ import annotations


def local_time(column: str) -> str:
    """``column`` (naive UTC) as naive local time in the zone bound to the first ``?``."""
    return f"timezone(?, timezone('UTC', {column}))"


def bucket_text(start: str) -> str:
    """A bucket start as ``period.Bucket.key`` (text crosses processes; apply it to grouped
    rows, not to every event)."""
    return f"strftime({start}, '%Y-%m-%d %H:%M:%S')"


def json_path(name: str) -> str:
    """The JSON path of a top-level property, quoted so any name works."""
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def property_text(name_param: str = "?") -> str:
    """A property's value as text (``27``, ``true``, ``pro``), NULL when not set, JSON null, or
    listed in the event's ``undefined_properties`` (the property was not defined when stored).
    Takes two parameters: the property's name, then its JSON path."""
    return (
        f"CASE WHEN list_contains(coalesce(undefined_properties, []), {name_param}) THEN NULL "
        "ELSE json_extract_string(properties, ?) END"
    )


def as_number(text_sql: str) -> str:
    return f"TRY_CAST({text_sql} AS DOUBLE)"


def contains(text_sql: str) -> str:
    return f"contains({text_sql}, ?)"


MATERIALIZED = "MATERIALIZED "
"""Marks a common table expression to be computed once however often the query reads it."""


def latest(column: str, by: str = "e.time") -> str:
    """The value of ``column`` on the row with the largest ``by`` (rows where it is set)."""
    return f"arg_max({column}, {by})"


def contains_ignore_case(text_sql: str) -> str:
    return f"contains(lower({text_sql}), lower(?))"


PERSON_IDS_CTE = """
edges AS (
    SELECT from_id AS a, to_id AS b FROM identity_links WHERE app_id = ?
    UNION ALL
    SELECT to_id, from_id FROM identity_links WHERE app_id = ?
),
person(id) AS (
    SELECT ?
    UNION
    SELECT edges.b FROM edges JOIN person ON edges.a = person.id
)
"""
"""One person's ids: the given id and every id linked to it, directly or through others. Takes the
app id twice, then the id. Needs ``WITH RECURSIVE``."""


def in_person(table: str = "") -> str:
    """Events of the person ``PERSON_IDS_CTE`` found (columns of ``table``, e.g. ``e``)."""
    prefix = f"{table}." if table else ""
    return (
        f"({prefix}user_id IN (SELECT id FROM person) "
        f"OR {prefix}device_id IN (SELECT id FROM person))"
    )


PERSONS_CTE = """
edges AS (
    SELECT from_id AS a, to_id AS b FROM identity_links WHERE app_id = ?
    UNION SELECT to_id, from_id FROM identity_links WHERE app_id = ?
),
reach(id, other) AS (
    SELECT a, b FROM edges
    UNION SELECT reach.id, edges.b FROM reach JOIN edges ON edges.a = reach.other
),
persons AS (SELECT id, least(id, min(other)) AS person FROM reach GROUP BY id)
"""
"""Each linked id and its person: the smallest id it is linked to, directly or through others.
Takes the app id twice. Needs ``WITH RECURSIVE``."""

ACTOR_WITHOUT_PERSONS = "coalesce(e.user_id, e.device_id)"


def person_of(actor: str) -> str:
    """The person of the id ``actor`` (a column): its row in the persons CTE, or itself.

    A scalar lookup, not ``LEFT JOIN persons``: DuckDB runs it as a join it never turns around.
    It estimates the recursive CTE at millions of rows (33,000 links: 1.9M), so it turned the
    LEFT JOIN into a RIGHT one building its hash table on the 3M distinct (day, id) pairs of
    daily active users at 10M events, which needed more than 224 MB and at the default 256 MB
    failed one time in four (``query_too_large``); looked up, it runs in 128 MB and 20% faster."""
    return f"coalesce((SELECT p.person FROM persons p WHERE p.id = {actor}), {actor})"


def seconds_between(earlier: str, later: str) -> str:
    return f"epoch({later} - {earlier})"


def seconds_after(column: str, seconds_param: str = "?") -> str:
    """``column`` plus a number of seconds given as a parameter."""
    return f"{column} + to_seconds(CAST({seconds_param} AS BIGINT))"


def earliest_after(times: str, after: str, entry: str) -> str:
    """The earliest of the list ``times`` later than ``after`` and at most a number of seconds
    (a parameter) after ``entry``; NULL if none is."""
    return f"list_min(list_filter({times}, lambda x: x > {after} AND x <= {seconds_after(entry)}))"


def periods_between(interval: str, earlier_local: str, later_local: str) -> str:
    """Whole day or week buckets between two local bucket starts."""
    return f"date_diff('{interval}', {earlier_local}, {later_local})"


def local_bucket(column: str, interval: str) -> str:
    """The naive local start of ``column``'s bucket (takes the zone parameter once)."""
    return f"date_trunc('{interval}', {local_time(column)})"
