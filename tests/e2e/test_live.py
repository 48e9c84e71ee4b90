"""The live stream against real servers: every accepted event reaches a subscriber once, whichever
worker took it, filtered by name; nothing is sent for other apps."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ServerFactory, create_app


def _listen(url: str, auth: tuple[str, str], out: queue.Queue, ready: threading.Event) -> None:
    client = httpx.Client(timeout=httpx.Timeout(30.0))
    try:
        with client, client.stream("GET", url, auth=auth) as response:
            out.put(("status", response.status_code, response.headers.get("content-type")))
            kind = None
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    out.put((kind, json.loads(line.removeprefix("data: ")), None))
    except httpx.HTTPError:
        return  # the server was stopped at the end of the test


@pytest.mark.parametrize("workers", [1, 2])
def test_live_stream_sees_every_workers_events(
    servers: ServerFactory, tmp_path: Path, workers: int
) -> None:
    data = tmp_path / "data"
    app = create_app(data)
    other = create_app(data, "other")
    server = servers.start(data, workers=workers)
    received: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
    ready = threading.Event()
    url = f"{server.url}/api/v1/apps/{app.id}/live?name=live.a&name=live.b"
    threading.Thread(target=_listen, args=(url, app.auth, received, ready), daemon=True).start()
    assert ready.wait(10), "the stream did not open"
    assert received.get(timeout=5) == ("status", 200, "text/event-stream; charset=utf-8")

    sent = []
    for i in range(12):
        with httpx.Client(timeout=10) as fresh:  # new connections: either worker
            name = ("live.a", "live.b", "live.c")[i % 3]
            event = {"id": f"ev-{i}", "name": name, "device": "d1", "properties": {"i": i}}
            assert server.ingest(fresh, app, [event]).json()["accepted"] == 1
            server.ingest(fresh, other, [{"id": f"x-{i}", "name": "live.a"}])
            if name != "live.c":
                sent.append(event["id"])
    got = []
    while len(got) < len(sent):
        kind, body, _ = received.get(timeout=10)
        assert kind == "event"
        got.append(body["id"])
        assert body["name"] in ("live.a", "live.b") and body["device"] == "d1"
    assert sorted(got) == sorted(sent)
    with pytest.raises(queue.Empty):
        received.get(timeout=1.0)  # nothing more: no live.c, nothing of the other app


def test_live_stream_needs_the_apps_credentials(servers: ServerFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = create_app(data)
    server = servers.start(data, workers=1)
    with httpx.Client(timeout=10) as client:
        reply = client.get(f"{server.url}/api/v1/apps/{app.id}/live")
        assert reply.status_code == 401
