"""Helpers shared by the tests that run a real ``tally serve`` process tree (tests/e2e, tests/sdk).

Every server runs in its own session (``start_new_session=True``), so its process group id is its
pid and ``os.killpg`` reaches the supervisor, the HTTP workers, the store process and the
multiprocessing helpers at once; ``ServerFactory.cleanup`` kills every group it started.
Linux only: process groups and /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO_ROOT / "node_modules"
SDK_TEST_WORKERS = 2
"""Workers of the servers the SDK tests run: what ``tally serve`` picks on a two-core machine (two
HTTP workers and a store process)."""

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
LOG_TAIL = 8000


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel picks it for a socket bound to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def live_group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process in group ``pgid`` that is not a zombie.

    Zombies are left out: they hold no file, no socket and no lock, and whether they are reaped
    soon depends on the init process of the machine, not on Tally.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # The command name in field 2 may contain spaces and parentheses; split after it.
            fields = stat[stat.rindex(")") + 2 :].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp != pgid or state in ("Z", "X"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue  # the process went away while we looked
        found.append((int(entry.name), cmdline))
    return sorted(found)


def wait_group_gone(pgid: int, timeout: float) -> list[tuple[int, str]]:
    """Wait until group ``pgid`` has no live process; returns what is still alive at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = live_group_members(pgid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children.extend(int(x) for x in text)
    except OSError:
        pass
    return sorted(set(children))


def _has_loaded(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@dataclass
class App:
    id: str
    name: str
    app_key: str
    api_key: str
    api_secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.api_key, self.api_secret)


def create_app(data_dir: Path, name: str = "e2e") -> App:
    """``tally apps create NAME --data DIR --json``, run as a real subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "tally", "apps", "create", name, "--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_server_env(),
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"tally apps create failed (exit {result.returncode})\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    data: dict[str, Any] = json.loads(result.stdout)
    return App(
        id=data["id"],
        name=data["name"],
        app_key=data["app_key"],
        api_key=data["api_key"],
        api_secret=data["api_secret"],
    )


class Server:
    """One ``tally serve`` process tree; its output goes to ``log_path``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        workers: int,
        log_path: Path,
        host: str = "127.0.0.1",
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.workers = workers
        self.host = host
        self.log_path = log_path
        self.options = list(options)
        """More ``tally serve`` options (``--store URL``, ``--header-timeout 1``...)."""
        self.env = dict(env or {})
        """Environment variables for the server (``TALLY_STORE_MEMORY``...); the test's own
        ``TALLY_`` variables are never passed on."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the server the leader of a new group whose id is its pid; the
        # id stays valid for the group's other members after the leader is gone.
        return self.pid

    def start(self) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "tally",
            "serve",
            "--data",
            str(self.data_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.options,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**_server_env(), **self.env},
            )
        return self

    def output(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        if len(text) > LOG_TAIL:
            text = "...\n" + text[-LOG_TAIL:]
        return text

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (
            f"server pid {self.pid if self.proc else None} (exit code {code}), "
            f"workers={self.workers}, port {self.port}, data {self.data_dir}\n"
            f"--- server output ({self.log_path}) ---\n{self.output()}--- end of output ---"
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Server:
        """Poll ``GET /readyz`` until it answers 200; fail with the server's output otherwise."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    pytest.fail(
                        f"tally serve exited with code {code} before ready\n{self.describe()}"
                    )
                try:
                    response = client.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return self
                    last = f"{response.status_code} {response.text}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    self.kill()
                    pytest.fail(
                        f"tally serve was not ready within {timeout:.0f} s (last: {last})\n"
                        f"{self.describe()}"
                    )
                time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of the group at once; no waiting."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and every child) and reap the leader."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def kill_supervisor_only(self) -> None:
        """SIGKILL the top process alone, leaving its children to fend for themselves."""
        assert self.proc is not None
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """Graceful stop: SIGTERM to the server process; returns its exit code.

        Fails (after killing the group) if it does not exit within ``timeout``.
        """
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"tally serve did not stop within {timeout:.0f} s of SIGTERM\n{self.describe()}"
            )
        return code

    def cleanup(self) -> None:
        """Kill whatever is left of the group and wait (briefly) for it to be gone."""
        if self.proc is None:
            return
        self.kill()
        wait_group_gone(self.pgid, timeout=10)

    # the process tree

    def children(self) -> list[int]:
        """Direct children of the server: the store, the workers, multiprocessing helpers."""
        return child_pids(self.pid)

    def live_members(self) -> list[tuple[int, str]]:
        """Live processes of this server's group (pid, command line); zombies are left out."""
        return live_group_members(self.pgid)

    def wait_gone(self, timeout: float) -> list[tuple[int, str]]:
        """Wait until no process of the group is alive; returns those still alive at timeout."""
        return wait_group_gone(self.pgid, timeout)

    def wait_children_started(self, count: int, timeout: float = READY_TIMEOUT) -> list[int]:
        """Wait until ``count`` children run an event loop (uvloop is loaded); returns their pids.

        The store process and the HTTP workers load uvloop only when their event loop starts,
        after their start-up code (which includes asking to die with the supervisor), so this
        tells a child that is serving from one that is still booting. The multiprocessing
        resource tracker never loads it.
        """
        deadline = time.monotonic() + timeout
        while True:
            started = [pid for pid in self.children() if _has_loaded(pid, "uvloop")]
            if len(started) >= count:
                return started
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"only {len(started)} of {count} children started within {timeout:.0f} s "
                    f"(children: {self.children()})\n{self.describe()}"
                )
            time.sleep(0.1)

    # HTTP helpers

    def ingest(
        self, client: httpx.Client, app: App, events: list[dict[str, Any]]
    ) -> httpx.Response:
        """``POST /api/v1/events`` with the app key header; transport errors propagate."""
        return client.post(
            f"{self.url}/api/v1/events",
            headers={"X-Tally-Key": app.app_key},
            json={"events": events},
        )

    def read_events(
        self, client: httpx.Client, app: App, **params: str | int
    ) -> list[dict[str, Any]]:
        """``GET /api/v1/apps/{id}/events`` with the app's API credentials; fails on a non-200."""
        params.setdefault("limit", 1000)
        response = client.get(
            f"{self.url}/api/v1/apps/{app.id}/events", params=params, auth=app.auth
        )
        assert response.status_code == 200, f"read {params}: {response.status_code} {response.text}"
        events: list[dict[str, Any]] = response.json()["events"]
        return events


class ServerFactory:
    """Starts servers for one test; ``cleanup`` kills all of them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def start(
        self,
        data_dir: Path,
        *,
        workers: int,
        port: int | None = None,
        wait: bool = True,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Server:
        server = Server(
            data_dir,
            port=port if port is not None else free_port(),
            workers=workers,
            log_path=self.tmp_path / f"server-{len(self.started) + 1}.log",
            options=options,
            env=env,
        )
        self.started.append(server)
        server.start()
        if wait:
            server.wait_ready()
        return server

    def cleanup(self) -> None:
        for server in self.started:
            server.cleanup()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts real servers for one test and kills every one of them afterwards."""
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


def wait_for_events(
    server: Server,
    app: App,
    done: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float,
    what: str,
    **params: str | int,
) -> list[dict[str, Any]]:
    """Poll ``GET /api/v1/apps/{id}/events`` until ``done(events)``; returns those events.

    Fails after ``timeout`` seconds with what was stored and the server's output.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            events = server.read_events(client, app, **params)
            if done(events):
                return events
            if time.monotonic() >= deadline:
                stored = json.dumps(events, indent=1, sort_keys=True)
                pytest.fail(
                    f"not stored within {timeout:.0f} s: {what}\n"
                    f"--- stored events ({len(events)}) ---\n{stored}\n{server.describe()}"
                )
            time.sleep(0.2)


def sdk_package(name: str) -> tuple[Path, str]:
    """(directory, version) of an npm package in the repo's node_modules; fails if it is missing."""
    directory = NODE_MODULES / name
    manifest = directory / "package.json"
    if not manifest.is_file():
        pytest.fail(
            f"{manifest} is missing: run ./scripts/test, or `npm ci` at the repo root, "
            "to install the SDKs from package-lock.json"
        )
    version: str = json.loads(manifest.read_text())["version"]
    return directory, version


class PageServer:
    """Static files for a browser test (a page and the SDK it loads), served on 127.0.0.1 from a
    thread of the test process. ``routes`` maps a path to (content type, body)."""

    def __init__(self, routes: dict[str, tuple[str, bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                content_type, body = routes.get(self.path, ("text/plain", b""))
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 15_000


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (``./scripts/test`` installs it)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=BROWSER_TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def module_server(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[Server, App]]:
    """One ``tally serve`` and app shared by a module's browser scenarios."""
    tmp = tmp_path_factory.mktemp(name)
    factory = ServerFactory(tmp)
    try:
        data_dir = tmp / "data"
        app = create_app(data_dir, name=name)
        yield factory.start(data_dir, workers=SDK_TEST_WORKERS), app
    finally:
        factory.cleanup()
