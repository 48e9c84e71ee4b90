"""Data management against a real ``tally serve --workers 2``: a catalog change made through one
worker applies in every worker within a second, and failed events, replay and discard counts work
through the store process (the workers reach it over its socket)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from support import App, Server, ServerFactory, create_app

RELOAD_DEADLINE = 3.0
"""Workers reload an app's rules within a second; allow for a loaded test machine."""


def synerise_tracker(client: httpx.Client, server: Server, app: App, action: str) -> httpx.Response:
    """The browser path: the tracker key in ``?token=``, so the action must be defined."""
    return client.post(
        f"{server.url}/v4/events/custom",
        params={"token": app.app_key},
        json={
            "action": action,
            "label": "Entries count",
            "client": {"uuid": "0b5e3c2a-0000-4000-8000-000000000001"},
            "params": {"shopId": "S198", "entries": 27},
        },
    )


def api(client: httpx.Client, server: Server, app: App, method: str, path: str, **kw: Any):
    return client.request(method, f"{server.url}/api/v1/apps/{app.id}{path}", auth=app.auth, **kw)


def test_rules_apply_in_every_worker_and_replay_goes_through_the_store_process(
    servers: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    app = create_app(data)
    server = servers.start(data, workers=2)
    # Separate connections land on either worker (SO_REUSEPORT), so each request below is as
    # likely to meet the worker that did not make the change.
    with httpx.Client(timeout=10.0) as client:
        rejected = synerise_tracker(client, server, app, "entries.count")
        assert rejected.status_code == 400, rejected.text
        assert rejected.json()["errors"][0]["rejectedValue"] == "entries.count"

        failed = api(
            client, server, app, "GET", "/failed-events", params={"reason": "undefined_event"}
        )
        assert failed.status_code == 200, failed.text
        [record] = failed.json()["failed_events"]
        assert record["name"] == "entries.count" and record["replayable"]

        definition = {
            "permission": "anonymous",
            "properties": [{"name": "entries", "type": "number"}],
        }
        put = api(client, server, app, "PUT", "/definitions/entries.count", json=definition)
        assert put.status_code == 201, put.text

    deadline = time.monotonic() + RELOAD_DEADLINE
    accepted_in_a_row = 0
    while accepted_in_a_row < 6:
        with httpx.Client(timeout=10.0) as fresh:  # a new connection each time: either worker
            status = synerise_tracker(fresh, server, app, "entries.count").status_code
        accepted_in_a_row = accepted_in_a_row + 1 if status == 202 else 0
        assert time.monotonic() < deadline, f"the definition did not apply everywhere: {status}"
        time.sleep(0.05)

    with httpx.Client(timeout=10.0) as client:
        report = api(client, server, app, "POST", "/failed-events/replay", json={})
        assert report.status_code == 200, report.text
        assert report.json() | {"still_failing": None} == {
            "replayed": 1,
            "stored": 1,
            "duplicates": 0,
            "discarded": 0,
            "still_failing": None,
            "not_replayable": [],
        }
        again = api(client, server, app, "POST", "/failed-events/replay", json={}).json()
        assert again["replayed"] == 0 and again["stored"] == 0
        [replayed] = api(
            client, server, app, "GET", "/failed-events", params={"replayed": "true"}
        ).json()["failed_events"]
        assert replayed["id"] == record["id"] and replayed["replayed_as"] == record["id"]
        stored = server.read_events(client, app, name="entries.count")
        assert record["id"] in {e["id"] for e in stored}

        patch = api(client, server, app, "PATCH", "/settings", json={"denylist": ["debug.*"]})
        assert patch.status_code == 200, patch.text

    time.sleep(RELOAD_DEADLINE)  # every worker has reloaded by now
    with httpx.Client(timeout=10.0) as client:
        stored_before = len(server.read_events(client, app, name="debug.click"))
        discarded_before = api(client, server, app, "GET", "/discarded").json()["totals"]
    for _ in range(8):
        with httpx.Client(timeout=10.0) as fresh:
            reply = server.ingest(fresh, app, [{"name": "debug.click"}])
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"accepted": 0, "duplicates": 0, "rejected": []}
    with httpx.Client(timeout=10.0) as client:
        assert len(server.read_events(client, app, name="debug.click")) == stored_before
        totals = api(client, server, app, "GET", "/discarded").json()["totals"]
        assert totals["denylist:debug.*"] - discarded_before.get("denylist:debug.*", 0) == 8
