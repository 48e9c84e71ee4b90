"""``tally query``: the same queries as the HTTP API, read from the DuckDB file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from tally.catalog import Catalog, sqlite_url
from tally.cli import main
from tally.limits import Limits
from tally.model import Access, Event
from tally.pipeline import DEFAULT_STEPS, Pipeline, RequestContext
from tally.pipeline.app_rules import AppRules
from tally.sink import AppendBatch
from tally.store.embedded import EmbeddedStore
from tally.store.rows import event_rows


def _store_events(data: Path, app_id: str) -> None:
    """Three purchases, through the pipeline and the embedded store, as the server would."""
    app = Catalog(sqlite_url(data)).get_app(app_id)
    assert app is not None
    sent = [
        ("2026-03-01T10:00:00Z", "d1", 10.0),
        ("2026-03-01T12:00:00Z", "d2", 5.0),
        ("2026-03-02T09:00:00Z", "d1", 2.5),
    ]
    events = [
        Event(index=i, protocol="native", name="purchase", raw_time=t, device_id=d, sum=s)
        for i, (t, d, s) in enumerate(sent)
    ]
    ctx = RequestContext(
        app=app,
        rules=AppRules(app),
        protocol="native",
        received_at=datetime(2026, 3, 3, tzinfo=UTC),
        limits=Limits(),
        access=Access.SERVER,
    )
    accepted = Pipeline(DEFAULT_STEPS).run(events, ctx).accepted

    async def write() -> None:
        store = EmbeddedStore(data)
        await store.append(AppendBatch(events=event_rows(app_id, accepted)))
        await store.close()

    asyncio.run(write())


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_query_formats(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = run("apps", "create", "Shop", "--data", str(data), "--json")
    app = json.loads(out)
    _store_events(data, app["id"])
    query = tmp_path / "q.json"
    query.write_text(
        json.dumps(
            {
                "kind": "trends",
                "events": [{"event": "purchase"}, {"event": "purchase", "measure": "sum"}],
                "from": "2026-03-01",
                "to": "2026-03-03",
            }
        )
    )
    code, out = run(
        "query", "--app", app["id"], str(query), "--data", str(data), "--format", "json"
    )
    assert code == 0, out
    answer = json.loads(out)
    assert [s["total"] for s in answer["series"]] == [3, 17.5]
    code, out = run(
        "query", "--app", app["app_key"], str(query), "--data", str(data), "--format", "csv"
    )
    assert code == 0, out
    assert out.splitlines() == [
        "t,purchase count,purchase sum",
        "2026-03-01T00:00:00+00:00,2,15.0",
        "2026-03-02T00:00:00+00:00,1,2.5",
        "total,3,17.5",
    ]
    code, out = run("query", "--app", app["id"], str(query), "--data", str(data))
    assert code == 0 and "purchase sum" in out.splitlines()[0]


def test_query_errors(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _, out = run("apps", "create", "Shop", "--data", str(data), "--json")
    app = json.loads(out)
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "nope"}')
    code, out = run("query", "--app", app["id"], str(bad), "--data", str(data))
    assert code == 2 and "Invalid value for FILE" in out
    tz = tmp_path / "tz.json"
    tz.write_text('{"kind": "users", "from": "2026-03-01", "to": "2026-03-02", "tz": "Mars/Base"}')
    code, out = run("query", "--app", app["id"], str(tz), "--data", str(data))
    assert code == 1 and "invalid_timezone" in out
    code, out = run("query", "--app", "nope", str(tz), "--data", str(data))
    assert code == 1 and "no app" in out
