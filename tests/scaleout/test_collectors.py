"""Two collectors (real ``tally serve`` processes, one of them with two HTTP workers) and one
``tally loader`` on one machine, sharing a PostgreSQL catalog, a NATS JetStream stream and a
ClickHouse database: events sent to either collector are readable through both, and each
collector's live stream shows the events the other one took."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
from scaleout_support import Processes, create_app

from support import wait_for_events


def _watch_live(
    url: str,
    auth: tuple[str, str],
    seen: list[dict[str, Any]],
    ready: threading.Event,
    stop: threading.Event,
) -> None:
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as http,
        http.stream("GET", url, auth=auth) as response,
    ):
        assert response.status_code == 200
        ready.set()
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
            if stop.is_set():
                return


def test_two_collectors_one_loader(
    tmp_path: Path,
    postgres_catalog_url: str,
    log_url: str,
    store_url: str,
    processes: Processes,
) -> None:
    app = create_app(postgres_catalog_url, tmp_path / "admin")
    options = ["--catalog", postgres_catalog_url, "--store", store_url, "--log", log_url]
    first = processes.collector(options, workers=1)
    second = processes.collector(options, workers=2)
    processes.loader(log_url, store_url, "--max-wait", "0.05").wait_started()

    seen: list[dict[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=_watch_live,
        args=(f"{first.url}/api/v1/apps/{app.id}/live", app.auth, seen, ready, stop),
        daemon=True,
    )
    watcher.start()
    assert ready.wait(15), "the live stream did not open"

    sent: set[str] = set()
    with httpx.Client(timeout=10.0) as http:
        for server, tag in ((first, "a"), (second, "b")):
            for request in range(5):
                events = [
                    {"id": f"{tag}{request}-{i}", "name": "visit", "user": f"{tag}-u{i % 4}"}
                    for i in range(20)
                ]
                response = server.ingest(http, app, events)
                assert response.status_code == 200, response.text
                assert response.json()["accepted"] == 20
                sent.update(e["id"] for e in events)
        # A retry through the other collector is a duplicate: the log is shared.
        response = first.ingest(http, app, [{"id": "b0-0", "name": "visit", "user": "b-u0"}])
        assert response.json() == {"accepted": 0, "duplicates": 1, "rejected": []}

    for server in (first, second):
        events = wait_for_events(
            server,
            app,
            lambda found: {e["id"] for e in found} == sent,
            timeout=60,
            what="every event sent to either collector",
        )
        assert len(events) == len(sent)  # each once

    stop.set()
    watcher.join(timeout=35)
    live_ids = {event["id"] for event in seen}
    assert {i for i in sent if i.startswith("b")} <= live_ids  # taken by the other collector
    assert {i for i in sent if i.startswith("a")} <= live_ids
