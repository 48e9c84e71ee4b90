"""Ingest benchmark: Tally's batch ingest endpoints (native, EngageLab, Synerise, Segment, Countly)
and its single-event path against a bare ASGI ceiling, driven by wrk.

Every scenario gets its own server process (and, for Tally, a fresh data folder and app) on a free
port. The driver writes the scenario's request body to a file, sends it once and checks that Tally
accepted every event in it (the reply and the ``/metrics`` counters), then runs a short warm-up and
a measured wrk run with that body. All scenarios run in one go so that their ratios are comparable
on a noisy machine. The results are printed and written to the "Ingest" section of BENCHMARKS.md.
Run it with ``bench/run`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECTION = "## Ingest"
OLD_SECTIONS = ("## Ingest (native API)",)
"""Earlier headings of the section, replaced by the current one."""
OTHER_LOAD_LIMIT = 0.25
"""Cores other processes may use during a measured run before its figures are flagged."""
TARGET_EVENTS_PER_S = 150_000
"""Issue 8: batched ingest, 100 events per request, sustained, on every batch protocol."""
TARGET_VS_BARE = 0.60
"""Issue 8: single-event requests at 60% or more of the bare ASGI ceiling's req/s."""
ID_MARK = "__ID__"
"""Stands in a body file for what makes each request unique (see bench/body_ids.lua). It is left
as is by JSON and by form encoding."""
COUNTLY_ITEMS = 10
"""A Countly bulk request holds this many /i requests (one device each), splitting its events."""
TARGET_P99_MS = 20.0
"""Issue 8: p99 latency at most 20 ms at half of the maximum rate."""
PACED_CONNECTIONS = 64
"""Keep-alive connections of the paced (open-loop) generator, bench/paced.py."""
PACED_SHORT = 0.95
"""A paced run that achieved less than this share of the requested rate is marked short."""


@dataclass(frozen=True)
class Protocol:
    key: str
    title: str
    path: str
    note: str
    """How the body is shaped and authenticated, for the report."""


PROTOCOLS = {
    p.key: p
    for p in (
        Protocol(
            "native",
            "native",
            "/api/v1/events",
            '`{"events": [...]}`, app key in `X-Tally-Key`',
        ),
        Protocol(
            "engagelab",
            "EngageLab",
            "/v1/event/report",
            '`{"data": [{euid, event_name, itime, properties}]}`, Basic `api_key:api_secret`',
        ),
        Protocol(
            "synerise",
            "Synerise",
            "/v4/events/batch",
            "a JSON array of `{action, label, client.customId, params}`, "
            "Basic `api_key:api_secret`",
        ),
        Protocol(
            "segment",
            "Segment",
            "/v1/batch",
            '`{"batch": [{type: track, userId, event, properties}]}`, '
            "Basic with the app key as write key",
        ),
        Protocol(
            "countly",
            "Countly",
            "/i/bulk",
            f"form-encoded `app_key` and `requests` (as the Node SDK's CountlyBulk sends it): "
            f"{COUNTLY_ITEMS} `/i` requests of one device each, their events with web-SDK ids",
        ),
    )
}


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # "bare" or "tally"
    events: int
    protocol: str = "native"
    ids: bool = False
    """Every event carries an id no other request uses (so every request differs)."""

    @property
    def slug(self) -> str:
        return f"{self.server}-{self.protocol}-{self.events}{'-ids' if self.ids else ''}"


SCENARIOS = (
    Scenario("bare ASGI, 1 event", "bare", 1),
    Scenario("Tally, 1 event", "tally", 1),
    Scenario("Tally, 100 events", "tally", 100),
    Scenario("Tally, 100 events + unique ids", "tally", 100, ids=True),
    Scenario("EngageLab, 100 events", "tally", 100, "engagelab"),
    Scenario("Synerise batch, 100 events", "tally", 100, "synerise"),
    Scenario("Segment batch, 100 events", "tally", 100, "segment"),
    # Countly gives every event an id (from the request's content when the SDK sends none), so
    # identical requests would be duplicates: each request's events get unique ids.
    Scenario("Countly bulk, 100 events + unique ids", "tally", 100, "countly", ids=True),
)


@dataclass
class Options:
    seconds: float
    warmup: float
    connections: int
    threads: int
    workers: list[int]
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    half_rate: bool = True
    """After each Tally row's wrk run, a paced run at half its req/s (bench/paced.py)."""
    soak_minutes: float | None = None
    """Run the soak (bench/soak.py) instead of the scenarios."""
    soak_half: bool = False
    """The soak at half capacity: a paced load at half of a wrk probe's rate, with reads."""
    quick: bool = False


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]


@dataclass
class PacedResult:
    """bench/paced.py's JSON report: an open-loop run at a fixed rate, latencies measured from
    each request's scheduled send time."""

    requested_rps: float
    achieved_rps: float
    scheduled: int
    completed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    connect_errors: int
    read_errors: int
    timeouts: int
    generator_cores: float
    scheduler_lag_p99_ms: float
    connections_used: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PacedResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @property
    def short(self) -> bool:
        return self.achieved_rps < PACED_SHORT * self.requested_rps


@dataclass
class Result:
    workers: int
    scenario: Scenario
    wrk: WrkResult | None = None
    paced: PacedResult | None = None
    """The paced run at half of wrk's req/s (Tally rows)."""
    paced_error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """Deltas of Tally's Prometheus series over the measured run."""
    cpu_seconds: float = 0.0
    """CPU time the server's processes used during the measured run."""
    other_cores: float = 0.0
    """Cores busy with neither the server nor wrk during the measured run (incl. VM steal)."""
    error: str | None = None
    server_log: str = ""
    """Server stderr while it was serving, minus the expected migration notes: flags the run."""
    shutdown_log: str = ""
    """Server stderr written after the driver sent SIGTERM: reported, but does not flag the run."""

    @property
    def events_per_s(self) -> float:
        assert self.wrk is not None
        ok_share = 1 - self.wrk.non_2xx / self.wrk.requests if self.wrk.requests else 0
        return self.wrk.rps * ok_share * self.scenario.events

    def flags(self) -> list[str]:
        """Everything that makes this run's figures suspect; the report shows them all."""
        found = []
        if self.error:
            found.append(f"failed: {self.error}")
        if self.wrk:
            if self.wrk.non_2xx:
                found.append(f"{self.wrk.non_2xx} non-2xx responses")
            found += [f"socket {k} errors: {v}" for k, v in self.wrk.socket_errors.items() if v]
        if self.wrk and self.metrics:
            acknowledged = (self.wrk.requests - self.wrk.non_2xx) * self.scenario.events
            accepted = self.metrics.get(f"accepted:{self.scenario.protocol}", 0)
            if accepted < acknowledged:
                found.append(
                    f"server counted {accepted:.0f} accepted {self.scenario.protocol} events, "
                    f"fewer than the {acknowledged} acknowledged"
                )
            for key in ("duplicates", "rejected", "dropped", "discarded"):
                if self.metrics.get(key):
                    found.append(f"{self.metrics[key]:.0f} {key}")
        if self.paced and self.paced.errors:
            p = self.paced
            found.append(
                f"{p.errors} errors at half rate (non-2xx {p.non_2xx}, connect "
                f"{p.connect_errors}, read {p.read_errors}, timeouts {p.timeouts})"
            )
        if self.paced_error:
            found.append(f"half-rate run failed: {self.paced_error}")
        if self.server_log:
            found.append("server wrote to stderr while serving")
        if self.other_cores > OTHER_LOAD_LIMIT:
            found.append(f"other processes kept {self.other_cores:.2f} cores busy")
        return found


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(OSError):
            if http_get(f"{base_url}/readyz")[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group, wait, and SIGKILL whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # children may outlive the leader for a moment
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class ServerLog:
    """A server's stderr file, split where the driver sent SIGTERM, so that shutdown noise can be
    told apart from errors while serving."""

    path: Path
    served_bytes: int | None = None

    def split(self) -> tuple[str, str]:
        if not self.path.exists():
            return "", ""
        text = self.path.read_bytes()
        cut = len(text) if self.served_bytes is None else self.served_bytes
        return unexpected_stderr(text[:cut]), unexpected_stderr(text[cut:])


@contextlib.contextmanager
def running(cmd: list[str], log: ServerLog, base_url: str) -> Iterator[int]:
    """Start a server in its own session, wait for /readyz, yield its process group id, and
    always stop it afterwards."""
    with open(log.path, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        wait_ready(proc, base_url)
        yield proc.pid
    finally:
        log.served_bytes = log.path.stat().st_size
        stop(proc)


def server_command(scenario: Scenario, workers: int, port: int, data_dir: Path) -> list[str]:
    if scenario.server == "bare":
        module = ["-m", "bench.bare_asgi"]
    else:
        module = ["-m", "tally", "serve", "--data", str(data_dir), "--host", "127.0.0.1"]
    return [sys.executable, *module, "--port", str(port), "--workers", str(workers)]


@dataclass(frozen=True)
class AppKeys:
    app_key: str
    api_key: str
    api_secret: str
    app_id: str = ""


NO_APP = AppKeys("none", "none", "none")
"""What the bare ASGI server is sent (it reads no credentials)."""


def create_app(data_dir: Path) -> AppKeys:
    cmd = [sys.executable, "-m", "tally", "apps", "create", "bench", "--json"]
    out = subprocess.run(
        [*cmd, "--data", str(data_dir)], check=True, capture_output=True, cwd=ROOT
    ).stdout
    app = json.loads(out)
    return AppKeys(app["app_key"], app["api_key"], app["api_secret"], app["id"])


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in a process group, from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy (or stolen by the hypervisor) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


EXPECTED_STDERR = ("migrated ", "No dashboard user yet: ", "the dedup index holds its budget ")
"""Notes a fresh data folder makes the server print at start: the catalog and store migrations,
and the first-run hint (the benchmark creates apps, not dashboard users); and the note that the
dedup index starts forgetting its oldest ids: the unique-id scenarios send more client ids than
its default budget holds (~1M at 256 MB, ``TALLY_DEDUP_MAX_IDS``)."""


def unexpected_stderr(text: bytes) -> str:
    lines = text.decode(errors="replace").splitlines()
    return "\n".join(line for line in lines if not line.startswith(EXPECTED_STDERR))


# --- request bodies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One scenario's request. wrk sends ``body`` over and over; with unique ids, every ID_MARK in
    it is replaced by a value no other request uses."""

    path: str
    headers: dict[str, str]
    body: str

    def filled(self, value: str) -> bytes:
        return self.body.replace(ID_MARK, value).encode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _properties(i: int) -> dict[str, Any]:
    return {"path": "/pricing", "plan": "pro", "step": i}


def build_load(scenario: Scenario, keys: AppKeys) -> Load:
    """The scenario's request: the same events (``page_view``, one of 50 users or 10 devices,
    three properties) in each protocol's shape, with only the fields the protocol requires, and
    the protocol's authentication."""
    numbers = range(1, scenario.events + 1)
    path = PROTOCOLS[scenario.protocol].path
    as_json = {"Content-Type": "application/json"}
    server_auth = {"Authorization": _basic(keys.api_key, keys.api_secret)}

    def ids(i: int, key: str = "id") -> dict[str, str]:
        return {key: f"{ID_MARK}-{i}"} if scenario.ids else {}

    match scenario.protocol:
        case "native":
            events = [
                {
                    **ids(i),
                    "name": "page_view",
                    "user": f"user-{i % 50}",
                    "properties": _properties(i),
                }
                for i in numbers
            ]
            body = _json({"events": events})
            return Load(path, {**as_json, "X-Tally-Key": keys.app_key}, body)
        case "engagelab":
            now_ms = int(time.time() * 1000)
            data = [
                {
                    **ids(i, "random_id"),
                    "euid": 10_000_000 + i % 50,
                    "event_name": "page_view",
                    "itime": now_ms,
                    "properties": _properties(i),
                }
                for i in numbers
            ]
            return Load(path, {**as_json, **server_auth}, _json({"data": data}))
        case "synerise":
            items = [
                {
                    **ids(i, "eventSalt"),
                    "action": "page_view",
                    "label": "Page view",
                    "client": {"customId": f"user-{i % 50}"},
                    "params": _properties(i),
                }
                for i in numbers
            ]
            return Load(path, {**as_json, **server_auth}, _json(items))
        case "segment":
            batch = [
                {
                    **ids(i, "messageId"),
                    "type": "track",
                    "userId": f"user-{i % 50}",
                    "event": "page_view",
                    "properties": _properties(i),
                }
                for i in numbers
            ]
            auth = {"Authorization": _basic(keys.app_key, "")}
            return Load(path, {**as_json, **auth}, _json({"batch": batch}))
        case "countly":
            per_item = -(-scenario.events // COUNTLY_ITEMS)
            requests = [
                {
                    "device_id": f"device-{k}",
                    "events": [
                        {**ids(i), "key": "page_view", "count": 1, "segmentation": _properties(i)}
                        for i in numbers[k * per_item : (k + 1) * per_item]
                    ],
                }
                for k in range(COUNTLY_ITEMS)
                if numbers[k * per_item : (k + 1) * per_item]
            ]
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            body = urllib.parse.urlencode({"app_key": keys.app_key, "requests": _json(requests)})
            return Load(path, form, body)
    raise ValueError(f"unknown protocol {scenario.protocol!r}")


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def reply_problem(scenario: Scenario, status: int, reply: bytes) -> str | None:
    """What is wrong with a reply, by the protocol's own success shape; None when it is one."""
    try:
        data = json.loads(reply) if reply else None
    except ValueError:
        return "the reply is not JSON"
    match "bare" if scenario.server == "bare" else scenario.protocol:
        case "bare" | "native":
            ok = status == 200 and isinstance(data, dict)
            ok = ok and data.get("accepted") == scenario.events and not data.get("rejected")
            ok = ok and not data.get("duplicates")
        case "engagelab":
            ok = status == 200 and data == {"code": 0, "message": "success"}
        case "synerise":
            ok = status == 202 and data is None
        case "segment":
            ok = status == 200 and data == {"success": True}
        case "countly":
            ok = status == 200 and data == {"result": "Success"}
        case _:
            ok = False
    return None if ok else "not the protocol's full success"


_CHECKED = ("duplicates", "rejected", "dropped", "discarded")


def check_sample(base_url: str, scenario: Scenario, load: Load) -> None:
    """Send the scenario's request once and raise unless it was fully accepted: the reply is the
    protocol's success and, for Tally, ``/metrics`` counted every event as accepted under the
    protocol, and nothing as duplicate, rejected, dropped or discarded. (This also defines the
    event in the app's catalog before anything is measured.)"""
    tally = scenario.server == "tally"
    before = scrape(base_url) if tally else {}
    body = load.filled(f"check-{secrets.token_hex(4)}")
    status, reply = http_post(base_url + load.path, body, load.headers)
    problem = reply_problem(scenario, status, reply)
    if problem:
        raise RuntimeError(
            f"the sample request to {load.path} was not accepted ({problem}): "
            f"HTTP {status} {reply[:500].decode(errors='replace')!r}"
        )
    if not tally:
        return
    after = scrape(base_url)
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    accepted = delta.get(f"accepted:{scenario.protocol}", 0.0)
    counted = {k: delta[k] for k in _CHECKED if delta.get(k)}
    if accepted != scenario.events or counted:
        raise RuntimeError(
            f"the sample request to {load.path} was answered {status}, but the server counted "
            f"{accepted:.0f} of its {scenario.events} events as accepted under "
            f"{scenario.protocol!r}" + (f", and {counted}" if counted else "")
        )


# --- wrk -------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's ``--latency`` report."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"wrk output has no match for {pattern!r}:\n{text}")
        return match

    total = find(rf"(\d+) requests in {_TIME}")
    p50, p99 = find(rf"^\s+50%\s+{_TIME}"), find(rf"^\s+99%\s+{_TIME}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests=int(total[1]),
        seconds=_ms(total[2], total[3]) / 1000,
        rps=float(find(r"Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_ms(p50[1], p50[2]),
        p99_ms=_ms(p99[1], p99[2]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)
        )
        if sockets
        else {},
    )


def wrk_command(
    url: str, scenario: Scenario, load: Load, body_file: Path, seconds: float, args: Options
) -> list[str]:
    headers = [f"{name}: {value}" for name, value in load.headers.items()]
    if scenario.ids:
        script, script_args = "body_ids.lua", [str(body_file), secrets.token_hex(4), *headers]
    else:
        script, script_args = "body.lua", [str(body_file), *headers]
    cmd = ["wrk", "--latency", "--timeout", "10s", f"-t{args.threads}", f"-c{args.connections}"]
    return [*cmd, f"-d{seconds:g}s", "-s", str(BENCH / script), url, "--", *script_args]


def run_wrk(
    url: str, scenario: Scenario, load: Load, body_file: Path, seconds: float, args: Options
) -> WrkResult:
    """wrk with the body file and the load's headers. Without unique ids, ``body.lua`` sets the
    body once per thread and wrk stays on its fast path (no Lua call per request); with them,
    ``body_ids.lua`` fills the ids in for every request, which costs wrk a little CPU."""
    cmd = wrk_command(url, scenario, load, body_file, seconds, args)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- paced, open-loop runs ------------------------------------------------------------------


def paced_command(
    url: str, scenario: Scenario, load: Load, body_file: Path, rate: float, seconds: float
) -> list[str]:
    """bench/paced.py: ``rate`` requests/s for ``seconds``, the same request as wrk sends (with
    fresh ids when the scenario has them), over PACED_CONNECTIONS keep-alive connections."""
    cmd = [sys.executable, "-m", "bench.paced", "--json", "--url", url, "--rate", f"{rate:.1f}"]
    cmd += ["--duration", f"{seconds:g}", "--body-file", str(body_file)]
    cmd += ["--connections", str(PACED_CONNECTIONS)]
    if scenario.ids:
        cmd += ["--ids", secrets.token_hex(4)]
    for name, value in load.headers.items():
        cmd += ["--header", f"{name}: {value}"]
    return cmd


def paced_result(returncode: int, stdout: str, stderr: str) -> PacedResult:
    if not stdout.strip():
        raise RuntimeError(f"bench.paced exited with {returncode}: {stderr[-2000:]}")
    return PacedResult.from_json(json.loads(stdout))


def run_paced(
    url: str, scenario: Scenario, load: Load, body_file: Path, rate: float, seconds: float
) -> PacedResult:
    """bench/paced.py in its own process (see ``paced_command``)."""
    cmd = paced_command(url, scenario, load, body_file, rate, seconds)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60)
    return paced_result(done.returncode, done.stdout, done.stderr)


# --- Tally's own counters --------------------------------------------------------------------

_SERIES = {
    "tally_store_commit_requests_count": "commits",
    "tally_store_commit_requests_sum": "committed_requests",
    "tally_store_commit_seconds_sum": "commit_seconds",
    "tally_events_accepted_total": "accepted",
    "tally_events_duplicate_total": "duplicates",
    "tally_requests_rejected_total": "rejected",
    "tally_events_dropped_total": "dropped",
    "tally_events_discarded_total": "discarded",
}
_FAST_COMMITS = 'tally_store_commit_seconds_bucket{le="0.25"}'


def scrape(base_url: str) -> dict[str, float]:
    """The series in _SERIES from /metrics, summed over their labels; accepted events per
    protocol as ``accepted:<protocol>``; and how many commits took at most 250 ms."""
    text = http_get(f"{base_url}/metrics", timeout=10)[1].decode()
    totals = dict.fromkeys([*_SERIES.values(), "fast_commits"], 0.0)
    totals.update({f"accepted:{p}": 0.0 for p in PROTOCOLS})
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in _SERIES:
            value = float(line.rsplit(" ", 1)[1])
            totals[_SERIES[name]] += value
            protocol = re.search(r'protocol="([^"]*)"', line)
            if _SERIES[name] == "accepted" and protocol:
                key = f"accepted:{protocol[1]}"
                totals[key] = totals.get(key, 0.0) + value
        elif line.startswith(_FAST_COMMITS):
            totals["fast_commits"] += float(line.rsplit(" ", 1)[1])
    return totals


# --- one scenario ----------------------------------------------------------------------------


def run_scenario(scenario: Scenario, workers: int, scratch: Path, args: Options) -> Result:
    result = Result(workers, scenario)
    slug = f"w{workers}-{scenario.slug}"
    data_dir, log = scratch / slug, ServerLog(scratch / f"{slug}.stderr")
    body_file = scratch / f"{slug}.body"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    tally = scenario.server == "tally"
    try:
        load = build_load(scenario, create_app(data_dir) if tally else NO_APP)
        if (ID_MARK in load.body) != scenario.ids:
            raise RuntimeError(f"{scenario.name}: the body's ids do not match the scenario")
        body_file.write_text(load.body)
        with running(server_command(scenario, workers, port, data_dir), log, base_url) as pgid:
            url = base_url + load.path
            check_sample(base_url, scenario, load)
            run_wrk(url, scenario, load, body_file, args.warmup, args)
            time.sleep(0.5)  # let requests cut off by the warm-up's end finish committing
            before = scrape(base_url) if tally else {}
            server_cpu, busy, wrk_cpu = (
                group_cpu_seconds(pgid),
                machine_busy_seconds(),
                children_cpu_seconds(),
            )
            result.wrk = run_wrk(url, scenario, load, body_file, args.seconds, args)
            result.cpu_seconds = group_cpu_seconds(pgid) - server_cpu
            wrk_cpu = children_cpu_seconds() - wrk_cpu
            other = machine_busy_seconds() - busy - result.cpu_seconds - wrk_cpu
            result.other_cores = max(other, 0.0) / result.wrk.seconds
            time.sleep(0.5)
            if tally:
                after = scrape(base_url)
                result.metrics = {k: after[k] - before.get(k, 0.0) for k in after}
            if tally and args.half_rate and result.wrk.rps > 0:
                try:
                    result.paced = run_paced(
                        url, scenario, load, body_file, result.wrk.rps / 2, args.seconds
                    )
                except Exception as exc:
                    result.paced_error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.server_log, result.shutdown_log = log.split()
    return result


# --- report ----------------------------------------------------------------------------------


def _fmt_ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.2f} ms"


def _bare(results: list[Result], workers: int) -> Result | None:
    for r in results:
        if r.workers == workers and r.scenario.server == "bare" and r.wrk:
            return r
    return None


def table(results: list[Result]) -> str:
    head = (
        "| workers | scenario | req/s | events/s | p50 | p99 | vs bare | server cores "
        "| CPU µs/req | req/commit | commit ms | half rate req/s | p99 at half rate | problems |"
    )
    rows = [head, "|" + "---|" * 14]
    for r in results:
        if r.wrk is None:
            rows.append(f"| {r.workers} | {r.scenario.name} |" + " — |" * 11 + " **FAILED** |")
            continue
        w, m = r.wrk, r.metrics
        bare = _bare(results, r.workers)
        ratio = (
            f"{w.rps / bare.wrk.rps:.0%}"
            if bare and bare.wrk and r.scenario.server == "tally" and r.scenario.events == 1
            else "—"
        )
        commits = m.get("commits", 0)
        per_commit = f"{m['committed_requests'] / commits:.1f}" if commits else "—"
        commit_ms = f"{m['commit_seconds'] / commits * 1000:.1f}" if commits else "—"
        flags = r.flags()
        problems = "**FLAGGED:** " + "; ".join(flags) if flags else "none"
        rows.append(
            f"| {r.workers} | {r.scenario.name} | {w.rps:,.0f} | {r.events_per_s:,.0f} "
            f"| {_fmt_ms(w.p50_ms)} | {_fmt_ms(w.p99_ms)} | {ratio} "
            f"| {r.cpu_seconds / w.seconds:.2f} | {_cpu_us(r):,.0f} "
            f"| {per_commit} "
            f"| {commit_ms} | {_half_rate_cells(r)} | {problems} |"
        )
    return "\n".join(rows)


def _half_rate_cells(r: Result) -> str:
    """The paced run's achieved rate (of the requested one) and its p99."""
    p = r.paced
    if p is None:
        return "— | —"
    rate = f"{p.achieved_rps:,.0f} of {p.requested_rps:,.0f}" + (" (**short**)" if p.short else "")
    return f"{rate} | {_fmt_ms(p.p99_ms)}"


def _find(
    results: list[Result], workers: int, events: int, ids: bool, protocol: str = "native"
) -> Result | None:
    for r in results:
        s = r.scenario
        key = (r.workers, s.server, s.events, s.ids, s.protocol)
        if key == (workers, "tally", events, ids, protocol) and r.wrk:
            return r
    return None


def _title(scenario: Scenario) -> str:
    return PROTOCOLS[scenario.protocol].title + (" (unique ids)" if scenario.ids else "")


def _verdict(value: float, target: float, unit: str) -> str:
    """``met by X`` or ``missed by X``, and the share of the target reached."""
    gap = abs(value - target)
    word = "met" if value >= target else "missed"
    return f"{word} by {gap:,.0f}{unit} ({value / target:.0%} of it)"


def _cpu_us(r: Result) -> float:
    assert r.wrk is not None
    return r.cpu_seconds / max(r.wrk.requests, 1) * 1e6


def _per_commit(r: Result) -> str:
    commits = r.metrics.get("commits", 0)
    if not commits:
        return "no commits"
    return (
        f"{r.metrics['committed_requests'] / commits:.1f} requests per commit, "
        f"{r.metrics['commit_seconds'] / commits * 1000:.0f} ms each"
    )


def half_rate_observations(results: list[Result], args: Options) -> list[str]:
    """Per worker count: each Tally row's p99 at half its maximum rate against TARGET_P99_MS."""
    lines = []
    for w in args.workers:
        runs = [r for r in results if r.workers == w and r.paced]
        if not runs:
            continue
        parts, short = [], []
        for r in runs:
            p = r.paced
            assert p is not None
            gap = p.p99_ms - TARGET_P99_MS
            verdict = (
                f"met by {-gap:.1f} ms"
                if gap <= 0
                else f"missed by {gap:,.1f} ms ({p.p99_ms / TARGET_P99_MS:.1f} times the target)"
            )
            parts.append(
                f"{r.scenario.name} p99 {_fmt_ms(p.p99_ms)} at {p.achieved_rps:,.0f} req/s "
                f"(p50 {_fmt_ms(p.p50_ms)}, p90 {_fmt_ms(p.p90_ms)}, max {_fmt_ms(p.max_ms)}; "
                f"generator {p.generator_cores:.2f} cores, its scheduler late by "
                f"{_fmt_ms(p.scheduler_lag_p99_ms)} at p99): {verdict}"
            )
            if p.short:
                short.append(
                    f"{r.scenario.name} reached {p.achieved_rps:,.0f} of {p.requested_rps:,.0f} "
                    f"req/s (the paced generator used {p.generator_cores:.2f} cores, its "
                    f"scheduler ran up to {p.scheduler_lag_p99_ms:.1f} ms late at p99)"
                )
        line = (
            f"{w} worker(s), p99 latency at half the maximum rate (open loop, "
            f"`bench/paced.py`, {PACED_CONNECTIONS} connections, {args.seconds:g} s, latency "
            f"from each request's scheduled time); target ≤ {TARGET_P99_MS:.0f} ms: "
            + "; ".join(parts)
            + "."
        )
        if short:
            line += (
                " Short of the requested rate, so these are not at half rate (the generator "
                "is one Python process on the same cores as the server): " + "; ".join(short) + "."
            )
        lines.append(line)
    failed = [f"{r.workers} worker(s), {r.scenario.name}" for r in results if r.paced_error]
    if failed:
        lines.append("The half-rate run failed for: " + ", ".join(failed) + ".")
    return lines


def observations(results: list[Result], args: Options) -> list[str]:
    """A few lines read off the figures, so that a rerun refreshes them along with the table."""
    lines = []
    for w in args.workers:
        bare, single = _bare(results, w), _find(results, w, 1, False)
        if bare and bare.wrk and single and single.wrk:
            share = single.wrk.rps / bare.wrk.rps
            needed = TARGET_VS_BARE * bare.wrk.rps
            lines.append(
                f"{w} worker(s): Tally serves single-event requests at "
                f"{share:.0%} of the bare ASGI ceiling "
                f"({single.wrk.rps:,.0f} vs {bare.wrk.rps:,.0f} req/s); target ≥ "
                f"{TARGET_VS_BARE:.0%} ({needed:,.0f} req/s): "
                f"{'met' if share >= TARGET_VS_BARE else 'missed'} by "
                f"{abs(share - TARGET_VS_BARE) * 100:.0f} points"
                + (
                    f" (it would take {needed / single.wrk.rps:.1f} times the req/s)"
                    if share < TARGET_VS_BARE
                    else ""
                )
                + ". It spends "
                f"{_cpu_us(single):,.0f} µs of server CPU per request against "
                f"{_cpu_us(bare):,.0f} µs for the bare app. Group commit: {_per_commit(single)} "
                f"(at most {args.connections} requests can be waiting at once)."
            )
    lines += half_rate_observations(results, args)
    batched = [s for s in SCENARIOS if s.server == "tally" and s.events > 1]
    for scenario in batched:
        runs = [r for r in results if r.scenario == scenario and r.wrk and r.wrk.requests > 0]
        if runs:
            figures = "; ".join(
                f"{r.workers} worker(s) {r.events_per_s:,.0f}, "
                f"{_verdict(r.events_per_s, TARGET_EVENTS_PER_S, '')}"
                for r in runs
            )
            lines.append(
                f"Target ≥ {TARGET_EVENTS_PER_S:,} events/s, {scenario.name} "
                f"(`{PROTOCOLS[scenario.protocol].path}`): {figures}."
            )
    for w in args.workers:
        native = _find(results, w, 100, False)
        others = [
            r for r in results if r.workers == w and r.wrk and r.scenario.protocol != "native"
        ]
        if native and native.events_per_s and others:
            shares = ", ".join(
                f"{_title(r.scenario)} {r.events_per_s / native.events_per_s:.0%} "
                f"({_cpu_us(r) / r.scenario.events:,.0f} µs)"
                for r in others
            )
            with_ids = _find(results, w, 100, True)
            compare = (
                f"; native with unique ids: {with_ids.events_per_s / native.events_per_s:.0%}"
                if with_ids
                else ""
            )
            lines.append(
                f"{w} worker(s), each protocol's events/s as a share of native's (Tally, 100 "
                f"events: {native.events_per_s:,.0f} events/s), with server CPU per event in "
                f"brackets (native: {_cpu_us(native) / native.scenario.events:,.0f} µs): "
                f"{shares}{compare}."
            )
    tally = [r for r in results if r.wrk and r.scenario.server == "tally"]
    if tally:
        top = max(tally, key=lambda r: r.events_per_s)
        single = _find(results, top.workers, 1, False)
        versus = f" against {single.events_per_s:,.0f} for single events" if single else ""
        lines.append(
            f"Batching in the request is what buys throughput: best {top.events_per_s:,.0f} "
            f"events/s ({top.scenario.name}, {top.workers} worker(s)){versus}."
        )
    for w in args.workers:
        plain, ids = _find(results, w, 100, False), _find(results, w, 100, True)
        if plain and ids:
            lines.append(
                f"Unique event ids (dedup index), {w} worker(s): {ids.events_per_s:,.0f} vs "
                f"{plain.events_per_s:,.0f} events/s without ids "
                f"({ids.events_per_s / plain.events_per_s - 1:+.0%}); {_per_commit(ids)} vs "
                f"{_per_commit(plain)}."
            )
    slow = [
        f"{r.metrics['commits'] - r.metrics['fast_commits']:.0f} of {r.metrics['commits']:.0f} "
        f"({r.workers} worker(s), {r.scenario.name})"
        for r in results
        if r.metrics.get("commits", 0) > r.metrics.get("fast_commits", 0)
    ]
    if slow:
        lines.append(
            "Commits over 250 ms (the likely source of the p99 tail; DuckDB checkpointing its WAL "
            "is the probable cause): " + ", ".join(slow) + "."
        )
    cores, most = os.cpu_count() or 1, max(args.workers)
    crowded = (
        f"; with {most} HTTP workers plus Tally's store process there are more busy "
        "processes than cores"
        if most > 1 and most + 1 > cores
        else ""
    )
    lines.append(
        f"wrk (-t{args.threads} -c{args.connections}) runs on the same {cores} cores as the "
        f"server, so every figure is below what the server alone would reach{crowded}."
    )
    return lines


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return [
        f"- Machine: {os.cpu_count()} CPUs ({model[1] if model else 'unknown CPU'}), "
        f"{int(mem_kb[1]) / 1024**2:.1f} GiB RAM, Linux {platform.release()}"
        if mem_kb
        else f"- Machine: {os.cpu_count()} CPUs, Linux {platform.release()}",
        f"- Software: Python {platform.python_version()}, duckdb {version('duckdb')}, "
        f"uvicorn {version('uvicorn')}, uvloop {version('uvloop')}, "
        f"httptools {version('httptools')}, {wrk.strip()}",
    ]


def code_version() -> str:
    """The code measured: the last commit that changed src/ (a commit of docs or figures during a
    run is not a change of code), and whether src/ differs from it (it may change under a run)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("log", "-1", "--format=%h", "--", "src") or "unknown"
    diff = git("diff", "HEAD", "--", "src") + git("status", "--porcelain", "--", "src")
    if not diff:
        return commit
    digest = hashlib.sha1(diff.encode()).hexdigest()[:8]
    return f"{commit} + uncommitted changes in src/ (digest {digest})"


def half_rate_note(args: Options) -> list[str]:
    if not args.half_rate:
        return ["- half rate: not measured (`--no-half-rate`)."]
    return [
        "- half rate: after each Tally row's wrk run, on the same server, `bench/paced.py` sends "
        f"the same request open loop at half of wrk's req/s for {args.seconds:g} s over "
        f"{PACED_CONNECTIONS} keep-alive connections; each latency runs from the request's "
        "scheduled send time (waiting for a free connection counts). The cell gives the rate "
        f"it achieved of the one requested (**short** below {PACED_SHORT:.0%} of it)."
    ]


def section(results: list[Result], args: Options, command: str, code: tuple[str, str]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"- Date: {now}",
        *machine(),
        f"- Code: {code[0]}"
        + ("" if code[0] == code[1] else f" at the start, {code[1]} at the end: src/ changed"),
        f"- Command: `{command}`",
        "- Each row: a fresh server on a free port (Tally: with a fresh data folder and app); "
        "the row's request sent once and checked (the protocol's success reply, and every "
        "event counted as accepted in `/metrics`), "
        f"{args.warmup:g} s warm-up, then {args.seconds:g} s of "
        f"`wrk -t{args.threads} -c{args.connections}` POSTing that request. "
        "Tally answers only after the events are committed to DuckDB.",
        "- Requests: the same `page_view` events (one of 50 users, three properties) in each "
        "protocol's shape, with the fields it requires: "
        + "; ".join(f"{p.title} `POST {p.path}`: {p.note}" for p in PROTOCOLS.values())
        + ". Bare ASGI and the 1-event rows use the native body. Rows with unique ids give "
        "every event an id no other request has (Countly always deduplicates: it derives ids "
        "from the request's content when the SDK sends none, so its requests must differ).",
        "- vs bare: Tally single-event req/s over bare ASGI req/s with the same worker count. "
        "server cores: CPU time of the server's processes over the measured run, divided by "
        "its length; CPU µs/req: that CPU time per request. req/commit and commit ms: "
        "Tally's group-commit metrics (`/metrics`) over the measured run. A run is flagged "
        f"when other processes kept more than {OTHER_LOAD_LIMIT} cores busy during it.",
        *half_rate_note(args),
        "",
        table(results),
        "",
        "Observations:",
        "",
        *(f"- {line}" for line in observations(results, args)),
    ]
    return "\n".join(lines + server_errors(results)).rstrip("\n") + "\n"


def server_errors(results: list[Result]) -> list[str]:
    """Failures and server stderr, each distinct text shown once (last 20 lines)."""
    problems = [r for r in results if r.server_log or r.error or r.shutdown_log]
    lines = ["", "Server errors and stderr:", ""] if problems else []
    if any(r.shutdown_log for r in problems):
        lines += [
            "Output after SIGTERM comes from stopping the whole process group at once (the "
            "store process gets SIGTERM together with the HTTP workers); it does not flag the "
            "figures.",
            "",
        ]
    shown: dict[str, str] = {}
    for r in problems:
        name = f"{r.workers} worker(s), {r.scenario.name}"
        lines.append(f"- {name}: {r.error}" if r.error else f"- {name}")
        for when, log in (("while serving", r.server_log), ("after SIGTERM", r.shutdown_log)):
            if not log:
                continue
            key = re.sub(r"0x[0-9a-f]+", "0x?", log)
            if key in shown:
                lines += ["", f"  {when}: the same as for {shown[key]}", ""]
                continue
            shown[key] = name
            lines += ["", f"  {when}:", "", "  ```"]
            lines += [f"  {x}" for x in log.splitlines()[-20:]] + ["  ```", ""]
    return lines


def write_section(
    path: Path, text: str, heading: str = SECTION, replaces: tuple[str, ...] = ()
) -> None:
    """Replace one section of BENCHMARKS.md (found by its heading line, or by one of the
    headings it ``replaces``) or add it, keeping every other section."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if not old.lstrip().startswith("# Benchmarks"):
        old = "# Benchmarks\n\n" + old
    found = None
    for candidate in (heading, *replaces):
        found = re.search(rf"^{re.escape(candidate)}[ \t]*$", old, re.MULTILINE)
        if found:
            break
    if found is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        start = found.start()
        end = old.find("\n## ", found.end())
        rest = old[end + 1 :] if end >= 0 else ""
        new = old[:start] + text + ("\n" + rest if rest else "")
    path.write_text(new)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description="Tally ingest benchmark (see bench/README.md).")
    # wrk takes whole seconds.
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run")
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--threads", "-t", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--workers", help="comma-separated worker counts (default 1,2; the soak: 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 s runs, 1 s warm-up; a 1-minute soak"
    )
    parser.add_argument(
        "--no-half-rate",
        action="store_true",
        help="skip the paced run at half the maximum rate after each Tally row",
    )
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=0.0,
        metavar="MINUTES",
        help="run only the soak: one server, native 100-event batches for MINUTES "
        "(default 10, 1 with --quick), memory sampled every 10 s",
    )
    parser.add_argument(
        "--half-capacity",
        action="store_true",
        help="with --soak: measure the maximum rate with wrk first, then pace the soak at half "
        "of it (bench/paced.py) and query the store every 10 s (issue 10's soak)",
    )
    parser.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="comma-separated protocols to run (default: all); native includes the bare ASGI "
        "and single-event rows",
    )
    ns = parser.parse_args(argv)
    if ns.quick:
        ns.duration, ns.warmup = 5, 1
    soak = ns.soak
    if soak is not None and soak <= 0:
        soak = 1.0 if ns.quick else 10.0
    if ns.workers is None:
        ns.workers = "2" if soak is not None else "1,2"
    workers = [int(w) for w in ns.workers.split(",")]
    if soak is not None and len(workers) != 1:
        parser.error("--soak runs one server: give one --workers value")
    if ns.half_capacity and soak is None:
        parser.error("--half-capacity goes with --soak")
    protocols = [p.strip().lower() for p in ns.protocols.split(",") if p.strip()]
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        parser.error(f"--protocols takes some of {', '.join(PROTOCOLS)}; got {ns.protocols!r}")
    return Options(
        ns.duration,
        ns.warmup,
        ns.connections,
        ns.threads,
        workers,
        protocols,
        half_rate=not ns.no_half_rate,
        soak_minutes=soak,
        soak_half=ns.half_capacity,
        quick=ns.quick,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed; bench/run installs it (apt-get install wrk)", file=sys.stderr)
        return 2
    entry = os.environ.get("TALLY_BENCH_ENTRY", f"{sys.executable} -m bench.ingest")
    command = " ".join([entry, *map(shlex.quote, argv)])
    if args.soak_minutes is not None:
        from bench.soak import run_soak

        return run_soak(args, command)
    results: list[Result] = []
    code_at_start = code_version()
    with tempfile.TemporaryDirectory(prefix="tally-bench-") as scratch:
        for workers in args.workers:
            for scenario in [s for s in SCENARIOS if s.protocol in args.protocols]:
                print(f"-> {workers} worker(s): {scenario.name} ...", flush=True)
                result = run_scenario(scenario, workers, Path(scratch), args)
                results.append(result)
                for flag in result.flags():
                    print(f"   FLAGGED: {flag}", flush=True)
                if result.server_log:
                    print(f"   server stderr while serving:\n{result.server_log}", flush=True)
                if result.shutdown_log:
                    print(f"   server stderr after SIGTERM:\n{result.shutdown_log}", flush=True)
    code = (code_at_start, code_version())
    text = section(results, args, command, code)
    print()
    print(text)
    write_section(ROOT / "BENCHMARKS.md", text, SECTION, OLD_SECTIONS)
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    if code[0] != code[1]:
        print("WARNING: src/ changed during the run; the figures mix code versions")
    return 1 if any(r.flags() for r in results) or code[0] != code[1] else 0


if __name__ == "__main__":
    sys.exit(main())
