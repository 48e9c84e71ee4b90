"""People queries stay within a small memory limit on the embedded store.

The person of an id used to be a ``LEFT JOIN persons``. DuckDB estimates the recursive persons CTE
at millions of rows, so it turned that join around and built its hash table on the millions of
distinct (day, id) pairs instead: daily active users over 10M events needed more than 224 MB and
failed one time in four at the default 256 MB. Scaled down: a million events of 10,000 people (a
third of them with a customer id linked to their device) in a store allowed 56 MB, where that
plan failed every time and the lookup (``duckdb_sql.person_of``) answers (it needs about 48 MB),
the same as with room to spare.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tally.catalog.models import App
from tally.pipeline.app_rules import AppRules
from tally.query.model import decode_query
from tally.query.run import Runner
from tally.store.duckdb_schema import LINK_KEY_SQL
from tally.store.duckdb_store import DuckDBStore

APP_ID = "m" * 24
EVENTS = 1_000_000
PEOPLE = 10_000
QUERIES = {
    "daily active": {"kind": "users", "interval": "day"},
    "weekly active": {"kind": "users", "interval": "week"},
    "people per day": {"kind": "trends", "events": [{"event": "page.visit", "measure": "users"}]},
    "funnel": {
        "kind": "funnel",
        "steps": [{"event": "page.visit"}, {"event": "signup"}],
        "window": {"value": 7, "unit": "day"},
    },
}
PERIOD = {"from": "2026-10-01", "to": "2026-10-31", "tz": "UTC"}


def _fill(data_dir: Path) -> None:
    """Events in time order over 30 days, people drawn with a skew (a few do a lot), every third
    person's customer id on half their events, and the links those events state."""
    store = DuckDBStore(data_dir)
    store.migrate()
    store.conn.execute(
        """
        INSERT INTO events (app_id, id, name, time, received_at, user_id, device_id, count,
                            protocol)
        SELECT ?, 'e' || i, CASE WHEN i % 20 = 0 THEN 'signup' ELSE 'page.visit' END, t, t,
               CASE WHEN p % 3 = 0 AND hash(i, 'u') % 2 = 0 THEN 'u' || p END, 'd' || p, 1,
               'native'
        FROM (
            SELECT i, (? * pow((hash(i) % 1000000) / 1e6, 2))::BIGINT AS p,
                   TIMESTAMP '2026-10-01' + to_seconds(i * 30 * 86400 // ?) AS t
            FROM range(?) r(i)
        )
        """,
        [APP_ID, PEOPLE, EVENTS, EVENTS],
    )
    store.conn.execute(
        f"INSERT INTO identity_links SELECT app_id, from_id, to_id, linked_at, {LINK_KEY_SQL} "
        "FROM (SELECT app_id, device_id AS from_id, user_id AS to_id, min(time) AS linked_at "
        "FROM events WHERE user_id IS NOT NULL GROUP BY ALL)"
    )
    store.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("memory")
    _fill(data_dir)
    yield data_dir


def _answers(data_dir: Path, memory: str) -> dict[str, Any]:
    store = DuckDBStore(data_dir, memory_limit=memory)

    async def execute(sql: str, params: list[Any]) -> list[tuple]:
        return store.run_sql(sql, params)

    app = App(id=APP_ID, name="m", app_key="k", api_key="k", created_at=datetime.now(UTC))
    runner = Runner(execute, AppRules(app))
    answers = {}
    try:
        for title, body in QUERIES.items():
            query = decode_query(json.dumps({**PERIOD, **body}).encode())
            answers[title] = asyncio.run(runner.run(query))
    finally:
        store.close()
    return answers


def test_people_queries_answer_within_56_mb(filled: Path) -> None:
    small = _answers(filled, "56MB")
    assert small == _answers(filled, "1GB")
    active = [point["active"] for point in small["daily active"]["points"]]
    assert len(active) == 30 and min(active) > 1_000
