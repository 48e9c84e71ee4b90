"""People for ClickHouse queries: linked ids (``identity_links``: undirected, transitive) resolved
to one person, the smallest id connected, as DuckDB's recursive ``PERSONS_CTE`` does.

ClickHouse 18.16 has no recursive CTE, so the links are resolved here, in Python (union-find over
the app's links, one query), and handed to the query as an external table that the native
protocol sends along with it. A compiled query asks for such a table with a *table parameter*
(``Persons`` or ``PersonIds``) among its positional parameters; ``ClickHouseDB.run_sql`` fills it
in and writes the table's name where the parameter's ``%s`` is.

Reading every link of the app per query is exact and needs no state kept at insert time (links
arrive from several loaders, in any order, and deletions remove them); it costs one scan of the
app's links, small next to the events a query reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

PLACEHOLDER_ROW = ("", "")
"""``transform()`` refuses empty arrays: a persons table always holds this row (no id is '')."""


@dataclass(frozen=True)
class Persons:
    """Table ``(id String, person String)``: every linked id of the app and its person."""

    app_id: str
    name: ClassVar[str] = "_tally_persons"


@dataclass(frozen=True)
class PersonIds:
    """Table ``(id String)``: the ids of one customer's person, the customer's own included."""

    app_id: str
    customer: str
    name: ClassVar[str] = "_tally_person_ids"


TableParam = Persons | PersonIds


def persons_of(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each linked id and its person: the smallest id it is connected to (itself included)."""
    parent: dict[str, str] = {}

    def root(item: str) -> str:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            # the smaller root wins, so every root is its component's smallest id
            if rb < ra:
                ra, rb = rb, ra
            parent[rb] = ra
    return {item: root(item) for item in parent}
