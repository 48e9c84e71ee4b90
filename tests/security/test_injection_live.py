"""The live stream's ``name`` filter and the ``tally query`` command with hostile input.

The live stream filters in Python (no SQL): a subscription for a name made of a payload gets the
events with exactly that name, of its own app only. ``tally query`` reads the same query model as
the HTTP API: a hostile query is answered literally or refused with a message, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from injection_support import CLICKHOUSE_PAYLOADS, PAYLOADS

from stored_events import APP, batch, ev
from tally.cli import main
from tally.store.embedded import EmbeddedStore

OTHER_APP = "b" * 24


@pytest.mark.parametrize("key", CLICKHOUSE_PAYLOADS)
async def test_a_live_subscription_by_a_payload_name_gets_that_name_only(
    store: EmbeddedStore, key: str
) -> None:
    name = PAYLOADS[key]
    stream = store.subscribe(APP, names=[name])
    assert await anext(stream) == {"subscribed": True}
    await store.append(batch(ev(name, id="other-app"), app_id=OTHER_APP))
    await store.append(batch(ev("' OR 1=1 --" if name != "' OR 1=1 --" else "x", id="other")))
    await store.append(batch(ev(name, id="mine")))
    live = await asyncio.wait_for(anext(stream), 5)
    assert (live["id"], live["name"]) == ("mine", name)
    await stream.aclose()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("place", "expected_code"),
    [("event", 0), ("value", 0), ("property", 1), ("tz", 1), ("from", 1)],
)
def test_tally_query_takes_a_hostile_query_literally_or_refuses_it(
    tmp_path: Path, place: str, expected_code: int
) -> None:
    data = tmp_path / "d"
    _, out = run("apps", "create", "Shop", "--data", str(data), "--json")
    app = json.loads(out)
    payload = PAYLOADS["drop-table"]
    query = {
        "kind": "trends",
        "from": "2026-03-01",
        "to": "2026-03-08",
        "events": [{"event": payload if place == "event" else "purchase"}],
        "filters": [],
    }
    if place == "value":
        query["filters"] = [{"field": "user", "op": "eq", "value": payload}]
    if place == "property":  # not defined: refused, whatever its name
        query["filters"] = [{"field": f"properties.{payload}", "op": "is_set"}]
    if place in ("tz", "from"):
        query[place] = PAYLOADS["zone"]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(query))
    code, out = run("query", "--app", app["id"], str(path), "--data", str(data), "--format", "json")
    assert code == expected_code, out
    if code == 0:
        assert [s["total"] for s in json.loads(out)["series"]] == [0]
    else:
        assert "Error:" in out and "Traceback" not in out
