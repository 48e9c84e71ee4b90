"""Real ``tally loader`` and ``tally serve`` (collector) processes for the scale-out tests, each in
a session of its own so that a kill reaches its whole process group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest
from clickhouse_driver import Client

from support import App, Server, _server_env, free_port, wait_group_gone
from tally.store.clickhouse_client import ClickHouseUrl


def tally(*args: str) -> list[str]:
    return [sys.executable, "-m", "tally", *args]


class LoaderProcess:
    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_server_env(),
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_started(self, timeout: float = 30.0) -> LoaderProcess:
        """Until the loader has bound its consumer (it logs ``loading``)."""
        wait_until(lambda: "loading " in self.output(), timeout, "loader start", self.output)
        return self

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


class Processes:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loaders: list[LoaderProcess] = []
        self.collectors: list[Server] = []

    def loader(self, log_url: str, store_url: str, *options: str) -> LoaderProcess:
        path = self.tmp_path / f"loader-{len(self.loaders) + 1}.log"
        loader = LoaderProcess(
            tally("loader", "--log", log_url, "--store", store_url, *options), path
        )
        self.loaders.append(loader)
        return loader

    def collector(self, options: list[str], *, workers: int = 1) -> Server:
        number = len(self.collectors) + 1
        server = Server(
            self.tmp_path / f"collector-{number}",
            port=free_port(),
            workers=workers,
            log_path=self.tmp_path / f"collector-{number}.log",
            options=options,
        )
        self.collectors.append(server)
        server.start()
        server.wait_ready()
        return server

    def cleanup(self) -> None:
        for loader in self.loaders:
            loader.kill()
        for server in self.collectors:
            server.cleanup()
        for loader in self.loaders:
            wait_group_gone(loader.proc.pid, timeout=10)


def create_app(catalog_url: str, data_dir: Path, name: str = "scaleout") -> App:
    """``tally apps create NAME --catalog URL --json``, as a real subprocess."""
    result = subprocess.run(
        tally("apps", "create", name, "--data", str(data_dir), "--catalog", catalog_url, "--json"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_server_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return App(data["id"], data["name"], data["app_key"], data["api_key"], data["api_secret"])


def wait_until(
    done: Callable[[], bool], timeout: float, what: str, describe: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}\n{describe()}")
        time.sleep(0.05)


class StoredEvents:
    """Counts in a test's ClickHouse database, read directly."""

    def __init__(self, store_url: str) -> None:
        url = ClickHouseUrl.parse(store_url)
        self.database = url.database
        self.client = Client(host=url.host, port=url.port, user=url.user, password=url.password)

    def scalar(self, sql: str) -> int:
        try:
            [(value,)] = self.client.execute(sql.replace("{db}", self.database))
        except Exception as exc:
            if "doesn't exist" in str(exc) or "UNKNOWN_TABLE" in str(exc):
                return 0  # the loader has not made the tables yet
            raise
        return int(value)

    def rows(self) -> int:
        """Rows as inserted (copies not merged yet count twice)."""
        return self.scalar("SELECT count() FROM {db}.events")

    def events(self) -> int:
        """Events as reads see them (FINAL collapses copies)."""
        return self.scalar("SELECT count() FROM {db}.events FINAL")

    def distinct_ids(self) -> int:
        return self.scalar("SELECT uniqExact(app_id, id) FROM {db}.events")

    def close(self) -> None:
        self.client.disconnect()


async def send(client: httpx.AsyncClient, app: Any, events: list[dict[str, Any]]) -> httpx.Response:
    return await client.post(
        "/api/v1/events", headers={"X-Tally-Key": app.app_key}, json={"events": events}
    )


def auth(new_app: Any) -> tuple[str, str]:
    return (new_app.app.api_key, new_app.api_secret)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def consumer_done(nc: nats.NATS, stream: str, delivered: int) -> bool:
    """The loaders' consumer has had ``delivered`` messages and every one is acknowledged."""
    try:
        info = await nc.jetstream().consumer_info(stream, f"{stream}_loader")
    except nats.js.errors.NotFoundError:
        return False
    return (
        info.delivered.stream_seq >= delivered
        and info.num_pending == 0
        and info.num_ack_pending == 0
    )
