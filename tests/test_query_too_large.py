"""A query that needs more memory than the store may use answers 400 ``query_too_large`` (in
Countly's shape on its read API), never a 500, on one worker (the store in the worker) and on two
(the store in its own process, the error crossing the store wire); a real server whose DuckDB may
use 1 MB (``TALLY_STORE_MEMORY``), over 40,000 people. (ClickHouse's ``max_memory_usage``:
tests/clickhouse/test_clickhouse_store.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stored_events import batch, ev
from support import ServerFactory, create_app
from tally.store.base import QueryTooLarge
from tally.store.duckdb_store import DuckDBStore

START = datetime(2026, 12, 1, tzinfo=UTC)
PEOPLE = 40_000


def _fill(data_dir: Path, app_id: str) -> None:
    """One visit each of ``PEOPLE`` people (each from a referrer of its own), written straight
    into the store's file."""
    store = DuckDBStore(data_dir)
    store.migrate()
    for first in range(0, PEOPLE, 5_000):
        events = [
            ev(
                "page.visit",
                time=START + timedelta(seconds=i),
                user_id=f"u{i}",
                device_id=f"d{i}",
                properties={"ref": f"r{i}"},
            )
            for i in range(first, first + 5_000)
        ]
        store.commit_group([batch(*events, app_id=app_id)])
    store.close()


def test_the_store_says_which_setting_limits_it(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path, memory_limit="1MB")
    store.migrate()
    with pytest.raises(QueryTooLarge, match=r"\(1MB, TALLY_STORE_MEMORY\)"):
        store.run_sql("SELECT list(range) FROM range(3000000)", [])
    assert store.run_sql("SELECT 1", []) == [(1,)]  # and goes on answering
    store.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_query_too_large_for_the_store_is_a_400(
    servers: ServerFactory, data_dir: Path, workers: int
) -> None:
    app = create_app(data_dir)
    _fill(data_dir, app.id)
    server = servers.start(data_dir, workers=workers, env={"TALLY_STORE_MEMORY": "1MB"})
    query = f"{server.url}/api/v1/apps/{app.id}/query"
    body = {"kind": "users", "from": "2026-12-01", "to": "2026-12-02", "interval": "day"}
    with httpx.Client(timeout=60) as client:
        response = client.post(query, json=body, auth=app.auth)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "query_too_large"
        assert "TALLY_STORE_MEMORY" in error["message"]
        # the server goes on answering what fits
        small = {**body, "kind": "trends", "events": [{"event": "page.visit"}]}
        answer = client.post(query, json=small, auth=app.auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["series"][0]["total"] == PEOPLE
    assert "Traceback" not in server.output()


def test_a_countly_read_too_large_for_the_store_is_a_400_in_countlys_shape(
    servers: ServerFactory, data_dir: Path
) -> None:
    app = create_app(data_dir)
    _fill(data_dir, app.id)
    server = servers.start(data_dir, workers=1, env={"TALLY_STORE_MEMORY": "1MB"})
    with httpx.Client(timeout=60) as client:
        # the event's ``ref`` property defined, so Countly's read lists it as a segment
        defined = client.put(
            f"{server.url}/api/v1/apps/{app.id}/definitions/page.visit",
            json={"properties": [{"name": "ref"}]},
            auth=app.auth,
        )
        assert defined.status_code in (200, 201), defined.text
        params = {
            "method": "events",
            "app_id": app.id,
            "event": "page.visit",
            "segmentation": "ref",
            "period": "[1796083200000,1796169599000]",  # 2026-12-01, the whole day (UTC)
        }
        response = client.get(f"{server.url}/o", params=params, auth=app.auth)
        assert response.status_code == 400, response.text
        assert "TALLY_STORE_MEMORY" in response.json()["result"]
        # (every events read also lists the segments' top values, so a smaller read is another
        # method's) the server goes on answering what fits
        listed = {"method": "get_events", "app_id": app.id}
        answer = client.get(f"{server.url}/o", params=listed, auth=app.auth)
        assert answer.status_code == 200, answer.text
        assert "page.visit" in answer.text
    assert "Traceback" not in server.output()
