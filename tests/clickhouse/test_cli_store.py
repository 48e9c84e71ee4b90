"""The data commands with ``--store clickhouse://...`` (the scale-out event store): export, import,
forget and query, against the real ClickHouse server."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from stored_events import batch, ev
from tally.catalog import Catalog, sqlite_url
from tally.cli import main
from tally.store.clickhouse_db import ClickHouseDB
from tally.testing.clickhouse_databases import drop_database


def test_export_import_forget_and_query_on_clickhouse(tmp_path: Path, ch_url: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    catalog = Catalog(sqlite_url(data))
    catalog.migrate()
    app = catalog.create_app("Shop").app
    catalog.close()
    source = ClickHouseDB(ch_url)
    source.migrate()
    source.append(
        batch(
            ev("signup", id="e1", user_id="u1", device_id="d1"),
            ev("view", id="e2", device_id="d1"),  # u1's device: the same person
            ev("view", id="e3", user_id="u2"),
            app_id=app.id,
        )
    )
    runner = CliRunner()
    common = ["--data", str(data), "--store", ch_url]

    exported = tmp_path / "events.jsonl"
    result = runner.invoke(main, ["export", "--app", app.id, "-o", str(exported), *common])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == ["e1", "e2", "e3"]

    # into a second ClickHouse database, through the same command line
    target_url = ch_url + "_copy"
    result = runner.invoke(
        main, ["import", "--app", app.id, str(exported), "--data", str(data), "--store", target_url]
    )
    assert result.exit_code == 0, result.output
    target = ClickHouseDB(target_url)
    try:
        assert sorted(r[0] for r in target.run_sql("SELECT id FROM events FINAL", [])) == [
            "e1",
            "e2",
            "e3",
        ]
    finally:
        target.close()
        drop_database(target_url)

    query = tmp_path / "query.json"
    query.write_text(
        json.dumps(
            {
                "kind": "trends",
                "from": "2026-03-01",
                "to": "2026-03-02",
                "events": [{"event": "*", "measure": "users"}],
            }
        )
    )
    result = runner.invoke(
        main, ["query", "--app", app.id, str(query), "--format", "json", *common]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["series"][0]["total"] == 2  # u1 (with d1) and u2

    result = runner.invoke(main, ["forget", "--app", app.id, "u1", "--yes", *common])
    assert result.exit_code == 0, result.output
    left = source.run_sql("SELECT id FROM events FINAL WHERE app_id = %s", [app.id])
    assert [r[0] for r in left] == ["e3"]
    source.close()
