"""The Python SDK (``tally.client``) against real ``tally serve`` processes: batches (counted by a
proxy and by the server's metrics), a lost answer and a server that goes away and comes back (each
event stored exactly once), 4xx not retried, 413 split, the flush at exit of a program that never
calls ``flush()``, and the asyncio client."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import App, Server, ServerFactory, free_port
from tally.client import AsyncTally, Failure, Tally

FAST = {"backoff_base": 0.05, "backoff_cap": 0.25, "flush_at_exit": False}


class CountingProxy:
    """An HTTP proxy in front of a server that records the events of each ``POST
    /api/v1/events`` and can lose answers: with ``lose`` > 0 it forwards the request (the server
    stores the events) and then hangs up without answering."""

    def __init__(self, upstream: str) -> None:
        proxy = self
        self.upstream = upstream
        self.batches: list[list[str]] = []
        self.statuses: list[int] = []
        self.codes: list[str | None] = []
        self.lose = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "authorization", "x-tally-key", "user-agent")
                }
                with httpx.Client(timeout=30) as http:
                    reply = http.request(
                        self.command, proxy.upstream + self.path, content=body, headers=headers
                    )
                with proxy.lock:
                    if self.path == "/api/v1/events":
                        proxy.batches.append([e["id"] for e in json.loads(body)["events"]])
                        proxy.statuses.append(reply.status_code)
                        error = reply.json().get("error") if reply.content else None
                        proxy.codes.append(error["code"] if error else None)
                    lose = proxy.lose > 0
                    proxy.lose -= lose
                if lose:
                    self.close_connection = True  # stored, but the client never hears of it
                    return
                self.send_response(reply.status_code)
                for name in ("content-type", "retry-after"):
                    if name in reply.headers:
                        self.send_header(name, reply.headers[name])
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def server_client(url: str, app: App, **options: Any) -> Tally:
    return Tally(
        url,
        api_key=app.api_key,
        api_secret=app.api_secret,
        app_id=app.id,
        **{**FAST, **options},
    )


def stored_ids(tally: Tally, name: str) -> Counter[str]:
    return Counter(e["id"] for e in tally.events(name=name, limit=1000))


def request_histogram(server: Server) -> tuple[float, float]:
    """(requests, events) of ``tally_ingest_request_events`` for the native protocol."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    values = {}
    for part in ("count", "sum"):
        found = re.search(
            rf'^tally_ingest_request_events_{part}\{{protocol="native"\}} (\S+)$', text, re.M
        )
        values[part] = float(found.group(1)) if found else 0.0
    return values["count"], values["sum"]


def count_query(name: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "kind": "trends",
        "events": [{"event": name, "measure": "count"}],
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=2)).isoformat(),
    }


def test_events_go_in_batches_and_a_lost_answer_stores_nothing_twice(
    servers: ServerFactory, data_dir: Path, app: App
) -> None:
    server = servers.start(data_dir, workers=1)
    with CountingProxy(server.url) as proxy:
        tally = server_client(proxy.url, app, batch_size=250, flush_interval=60)
        ids = [tally.track("sdk.batch", user=f"u{i % 7}", properties={"i": i}) for i in range(1000)]
        proxy.lose = 1  # the first batch is stored, but its answer is lost: the client retries
        assert tally.flush(20)
        assert [len(b) for b in proxy.batches] == [250, 250, 250, 250, 250]
        assert proxy.batches[0] == proxy.batches[1] == ids[:250]
        assert [i for batch in proxy.batches[1:] for i in batch] == ids
        assert (tally.sent, tally.failed, tally.dropped) == (1000, 0, 0)
        stored = stored_ids(tally, "sdk.batch")
        assert sorted(stored) == sorted(ids) and set(stored.values()) == {1}
        # The server saw five requests of 250 events: the batches, not 1000 requests.
        assert request_histogram(server) == (5.0, 1250.0)
        tally.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_server_goes_away_and_comes_back(
    servers: ServerFactory, data_dir: Path, app: App, kind: str
) -> None:
    first = servers.start(data_dir, workers=1)
    options = {**FAST, "max_retries": None, "flush_interval": 0.05}
    failures: list[Failure] = []
    if kind == "sync":
        tally = server_client(first.url, app, on_error=failures.append, **options)
        before = [tally.track("sdk.outage", properties={"n": n}) for n in range(5)]
        assert tally.flush(10)
        first.terminate()
        during = [tally.track("sdk.outage", properties={"n": n}) for n in range(5, 305)]
        time.sleep(1.0)  # the client retries against a closed port
        assert tally.pending == 300 and tally.sent == 5
        servers.start(data_dir, workers=1, port=first.port)
        assert tally.flush(20)
        stored = stored_ids(tally, "sdk.outage")
        tally.close()
    else:

        async def run() -> tuple[list[str | None], list[str | None], Counter[str]]:
            async with AsyncTally(
                first.url,
                api_key=app.api_key,
                api_secret=app.api_secret,
                app_id=app.id,
                on_error=failures.append,
                **options,
            ) as tally:
                before = [tally.track("sdk.outage", properties={"n": n}) for n in range(5)]
                assert await tally.flush(10)
                await asyncio.to_thread(first.terminate)
                during = [tally.track("sdk.outage", properties={"n": n}) for n in range(5, 305)]
                await asyncio.sleep(1.0)
                assert tally.pending == 300 and tally.sent == 5
                await asyncio.to_thread(servers.start, data_dir, workers=1, port=first.port)
                assert await tally.flush(20)
                events = await tally.events(name="sdk.outage", limit=1000)
                return before, during, Counter(e["id"] for e in events)

        before, during, stored = asyncio.run(run())
    assert failures == []
    assert sorted(stored) == sorted(before + during)
    assert set(stored.values()) == {1}  # each event exactly once


def test_rejections_and_a_wrong_key_are_not_retried(
    servers: ServerFactory, data_dir: Path, app: App
) -> None:
    server = servers.start(data_dir, workers=1)
    failures: list[Failure] = []
    with CountingProxy(server.url) as proxy:
        wrong = Tally(proxy.url, app_key="0" * 40, on_error=failures.append, **FAST)
        wrong.track("sdk.wrong")
        assert wrong.flush(10)
        wrong.close()
        public = Tally(proxy.url, app_key=app.app_key, on_error=failures.append, **FAST)
        too_old = public.track("sdk.old", time="1999-12-31T00:00:00Z")
        assert public.flush(10)
        public.close()
        assert proxy.statuses == [401, 400]  # one request each
    assert [(f.code, f.status, [e["id"] for e in f.events]) for f in failures] == [
        ("unknown_app_key", 401, [failures[0].events[0]["id"]]),
        ("invalid_time", 400, [too_old]),
    ]


def test_413_splits_batches_over_the_servers_limits(
    servers: ServerFactory, data_dir: Path, app: App
) -> None:
    server = servers.start(data_dir, workers=1)
    failures: list[Failure] = []
    with CountingProxy(server.url) as proxy:
        # More events per request than the server takes (10,000).
        tally = server_client(
            proxy.url,
            app,
            batch_size=12_000,
            max_queue=20_000,
            max_batch_bytes=10_000_000,
            flush_interval=60,
            on_error=failures.append,
        )
        now = int(time.time())
        for i in range(12_000):  # small events: 12,000 of them are under 1 MB
            tally.track("sdk.many", id=f"m{i}", time=now)
        assert tally.flush(30)
        assert [len(b) for b in proxy.batches] == [12_000, 6_000, 6_000]
        assert proxy.codes == ["too_many_events", None, None]
        assert tally.query(count_query("sdk.many"))["series"][0]["total"] == 12_000
        # A bigger body than the server takes (1 MB): 60 events of 25 KB.
        del proxy.batches[:], proxy.codes[:]
        ids = [tally.track("sdk.big", properties={"p": "x" * 25_000}) for _ in range(60)]
        assert tally.flush(30)
        assert [len(b) for b in proxy.batches] == [60, 30, 30]
        assert proxy.codes == ["body_too_large", None, None]
        assert sorted(stored_ids(tally, "sdk.big")) == sorted(ids)
        assert failures == [] and tally.sent == 12_060
        tally.close()


EXIT_SCRIPT = """
import asyncio, sys
from tally.client import AsyncTally, Tally

url, app_key, kind = sys.argv[1:4]
if kind == "sync":
    tally = Tally(url, app_key=app_key, flush_interval=3600)
    for i in range(40):
        tally.track("sdk.exit.sync", device="d1", properties={"i": i})
else:
    async def main():
        tally = AsyncTally(url, app_key=app_key, flush_interval=3600)
        for i in range(40):
            tally.track("sdk.exit.async", device="d1", properties={"i": i})
        await asyncio.sleep(0)  # the sending task starts, then is cancelled by asyncio.run
    asyncio.run(main())
print("exiting without flush")
"""


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_queued_events_are_sent_at_exit(
    servers: ServerFactory, data_dir: Path, app: App, tmp_path: Path, kind: str
) -> None:
    server = servers.start(data_dir, workers=1)
    script = tmp_path / "exit_without_flush.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), server.url, app.app_key, kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "exiting without flush" in result.stdout
    reader = server_client(server.url, app)
    stored = reader.events(name=f"sdk.exit.{kind}", limit=1000)
    reader.close()
    assert sorted(e["properties"]["i"] for e in stored) == list(range(40)), result.stderr


def test_identify_and_alias_link_ids_on_a_real_server(
    servers: ServerFactory, data_dir: Path, app: App
) -> None:
    server = servers.start(data_dir, workers=2)

    async def run() -> None:
        async with AsyncTally(
            server.url, api_key=app.api_key, api_secret=app.api_secret, app_id=app.id, **FAST
        ) as tally:
            tally.track("page.view", device="dev-1")
            tally.identify("cust-1", {"plan": "pro"}, device_id="dev-1")
            tally.track("purchase", user="cust-1", sum=12.5)
            tally.track("page.view", device="anon-7")
            tally.alias("anon-7", "cust-1")
            assert await tally.flush(10)
            for who in ("dev-1", "anon-7", "cust-1"):
                names = Counter(e["name"] for e in await tally.events(user=who))
                assert names == {
                    "page.view": 2,
                    "identity.identify": 1,
                    "purchase": 1,
                    "identity.link": 1,
                }, who
            period = {k: v for k, v in count_query("page.view").items() if k in ("from", "to")}
            users = await tally.query({"kind": "users", "interval": "month", **period})
            assert sum(p["active"] for p in users["points"]) == 1  # one person

    asyncio.run(run())
