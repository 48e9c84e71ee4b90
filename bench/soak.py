"""Soak: one Tally server under native 100-event batches for many minutes, its memory sampled.

``bench/run --soak [MINUTES]`` (see bench/README.md) starts one ``tally serve`` (2 workers unless
``--workers`` says otherwise) with a fresh data folder, checks and warms it up like a benchmark
row, then runs wrk for the whole soak while this process samples, every SOAK_INTERVAL seconds,
the resident memory of every process in the server's process group (VmRSS from
``/proc/PID/status``, and PSS from ``/proc/PID/smaps_rollup``, which shares the pages several
processes map between them) and the events stored (``tally_events_accepted_total`` from
``/metrics``). It reports the memory at the start (after the warm-up), at the end, the maximum,
when 10M events were stored, and how much it moved over the second half, against issue 8's target
(at most 500 MB after 10M events, flat during a 10-minute soak), and writes the "Soak" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.ingest import (
    ROOT,
    AppKeys,
    Load,
    Options,
    PacedResult,
    Scenario,
    ServerLog,
    WrkResult,
    build_load,
    check_sample,
    children_cpu_seconds,
    code_version,
    create_app,
    free_port,
    group_cpu_seconds,
    machine,
    machine_busy_seconds,
    paced_command,
    paced_result,
    parse_wrk,
    run_wrk,
    running,
    scrape,
    server_command,
    write_section,
    wrk_command,
)

SOAK_SECTION = "## Soak"
HALF_SECTION = "## Soak at half capacity"
SOAK_INTERVAL = 10.0
"""Seconds between memory samples."""
TARGET_RSS_MB = 500.0
"""Issue 8: server memory at most 500 MB after 10M events ..."""
TARGET_EVENTS = 10_000_000
FLAT_SHARE = 0.05
"""... and flat during the soak: over its second half, within 5% of the mid-soak sample."""
MAX_ROWS = 21
"""Samples shown in the report's table (evenly picked, plus the last and the largest)."""
SCENARIO = Scenario("Tally, 100 events", "tally", 100)
MB = 1024 * 1024


@dataclass
class Read:
    status: int
    """HTTP status; 0 when the request failed without one."""
    ms: float
    counted: int | None = None
    """Events the query counted (None unless it answered 200)."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.counted is not None


READ_QUERY = {"kind": "trends", "events": [{"event": "*", "measure": "count"}], "interval": "day"}
"""Asked once per sample during the half-capacity soak: every event of the last two days."""


def read_probe(base_url: str, keys: AppKeys) -> Read:
    """One query while the load runs: its status, latency, and what it counted."""
    today = datetime.now(UTC).date()
    body = {
        **READ_QUERY,
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    auth = base64.b64encode(f"{keys.api_key}:{keys.api_secret}".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/apps/{keys.app_id}/query",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
    )
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.loads(reply.read())
            ms = (time.monotonic() - start) * 1000
            return Read(reply.status, ms, int(sum(s["total"] for s in answer["series"])))
    except urllib.error.HTTPError as exc:
        return Read(exc.code, (time.monotonic() - start) * 1000)
    except (OSError, ValueError, KeyError, TypeError):
        return Read(0, (time.monotonic() - start) * 1000)


@dataclass
class Sample:
    seconds: float
    """Since the start of the soak (after the warm-up)."""
    events: float | None
    """Events stored so far (None when /metrics did not answer)."""
    rss: dict[int, int] = field(default_factory=dict)
    """VmRSS of each process of the group, bytes."""
    pss: int = 0
    """PSS of the whole group, bytes (0 when smaps_rollup is unreadable)."""
    rejected: float | None = None
    """Requests the server refused so far (``tally_requests_rejected_total``)."""
    read: Read | None = None
    """The query sent with this sample (half-capacity soak only)."""

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[2]) == pgid:
                pids.append(int(stat.parent.name))
    return sorted(pids)


def _kb_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def sample(pgid: int, base_url: str, seconds: float) -> Sample:
    events = rejected = None
    with contextlib.suppress(OSError, ValueError):
        counters = scrape(base_url)
        events, rejected = counters["accepted"], counters["rejected"]
    result = Sample(seconds, events, rejected=rejected)
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            result.rss[pid] = _kb_field(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
        with contextlib.suppress(OSError):
            result.pss += _kb_field(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
    return result


def roles(pgid: int, data_dir: Path) -> dict[int, str]:
    """What each process of the group is: the leader (supervisor, or the only process), the
    store (it holds the DuckDB file open), multiprocessing's resource tracker, or a worker."""
    found = {}
    for pid in group_pids(pgid):
        role = "leader" if pid == pgid else "HTTP worker"
        with contextlib.suppress(OSError):
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                role = "resource tracker"
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(str(data_dir)) and target.endswith(".duckdb"):
                        role = "leader (store)" if pid == pgid else "store"
        found[pid] = role
    return found


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Soak:
    minutes: float
    workers: int
    half: bool = False
    """Paced at half of the probed capacity, with a query per sample (issue 10's soak)."""
    samples: list[Sample] = field(default_factory=list)
    wrk: WrkResult | None = None
    """The load (full-speed soak), or the capacity probe (half-capacity soak)."""
    paced: PacedResult | None = None
    """The load of the half-capacity soak."""
    roles: dict[int, str] = field(default_factory=dict)
    data_bytes: int = 0
    other_cores: float = 0.0
    server_cores: float = 0.0
    error: str | None = None
    server_log: str = ""
    shutdown_log: str = ""

    @property
    def section(self) -> str:
        """Its own section per kind and, away from the default 2 workers, per worker count, so
        that a one-worker soak does not replace the default one."""
        heading = HALF_SECTION if self.half else SOAK_SECTION
        return heading if self.workers == 2 else f"{heading}, {self.workers} worker(s)"

    @property
    def reads(self) -> list[Read]:
        return [s.read for s in self.samples if s.read is not None]

    def flags(self) -> list[str]:
        found = [f"failed: {self.error}"] if self.error else []
        if self.wrk:
            if self.wrk.non_2xx:
                found.append(f"{self.wrk.non_2xx} non-2xx responses")
            found += [f"socket {k} errors: {v}" for k, v in self.wrk.socket_errors.items() if v]
        if self.paced and self.paced.errors:
            p = self.paced
            found.append(
                f"{p.errors} load errors (non-2xx {p.non_2xx}, connect {p.connect_errors}, "
                f"read {p.read_errors}, timeouts {p.timeouts})"
            )
        failed_reads = [r for r in self.reads if not r.ok]
        if failed_reads:
            found.append(f"{len(failed_reads)} of {len(self.reads)} queries failed")
        if self.server_log:
            found.append("server wrote to stderr while serving")
        return found


def _load_command(
    soak: Soak, url: str, load: Load, body_file: Path, seconds: int, args: Options
) -> list[str]:
    """The soak's load: wrk at full speed, or (half capacity) a wrk probe of the maximum rate
    for ``args.seconds`` and then bench/paced.py at half of it."""
    if not soak.half:
        return wrk_command(url, SCENARIO, load, body_file, seconds, args)
    print(f"   probing the maximum rate: wrk for {args.seconds:g} s", flush=True)
    soak.wrk = run_wrk(url, SCENARIO, load, body_file, args.seconds, args)
    rate = soak.wrk.rps / 2
    print(f"   {soak.wrk.rps:,.0f} req/s; pacing the soak at {rate:,.0f} req/s", flush=True)
    return paced_command(url, SCENARIO, load, body_file, rate, seconds)


def run_soak(args: Options, command: str) -> int:
    assert args.soak_minutes is not None
    soak = Soak(args.soak_minutes, args.workers[0], half=args.soak_half)
    seconds = max(1, round(args.soak_minutes * 60))
    code_at_start = code_version()
    pace = "at half of the maximum rate, a query per sample" if soak.half else "with wrk"
    print(
        f"-> soak: {soak.workers} worker(s), native 100-event batches for {seconds} s {pace}, "
        f"memory sampled every {SOAK_INTERVAL:g} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tally-soak-") as scratch:
        data_dir, log = Path(scratch) / "data", ServerLog(Path(scratch) / "server.stderr")
        body_file = Path(scratch) / "body"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        try:
            keys = create_app(data_dir)
            load = build_load(SCENARIO, keys)
            body_file.write_text(load.body)
            cmd = server_command(SCENARIO, soak.workers, port, data_dir)
            with running(cmd, log, base_url) as pgid:
                url = base_url + load.path
                check_sample(base_url, SCENARIO, load)
                run_wrk(url, SCENARIO, load, body_file, args.warmup, args)
                load_cmd = _load_command(soak, url, load, body_file, seconds, args)
                time.sleep(0.5)
                server_cpu, busy, gen_cpu = (
                    group_cpu_seconds(pgid),
                    machine_busy_seconds(),
                    children_cpu_seconds(),
                )
                start = time.monotonic()

                def take() -> Sample:
                    taken = sample(pgid, base_url, time.monotonic() - start)
                    if soak.half:
                        taken.read = read_probe(base_url, keys)
                    return taken

                soak.samples.append(take())
                generator = subprocess.Popen(
                    load_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
                )
                try:
                    tick = 1
                    while generator.poll() is None:
                        time.sleep(max(0.0, start + tick * SOAK_INTERVAL - time.monotonic()))
                        if generator.poll() is not None:
                            break
                        soak.samples.append(take())
                        print(f"   {_line(soak.samples[-1])}", flush=True)
                        tick += 1
                    out, err = generator.communicate(timeout=seconds + 120)
                finally:
                    if generator.poll() is None:
                        generator.kill()
                        generator.wait()
                elapsed = time.monotonic() - start
                server = group_cpu_seconds(pgid) - server_cpu
                gen_cpu = children_cpu_seconds() - gen_cpu
                other = machine_busy_seconds() - busy - server - gen_cpu
                soak.server_cores = server / elapsed
                soak.other_cores = max(other, 0.0) / elapsed
                if soak.half:
                    soak.paced = paced_result(generator.returncode, out.decode(), err.decode())
                else:
                    if generator.returncode != 0:
                        raise RuntimeError(f"wrk exited with {generator.returncode}: {err or out}")
                    soak.wrk = parse_wrk(out.decode())
                time.sleep(0.5)  # the last requests commit
                soak.samples.append(take())
                soak.roles = roles(pgid, data_dir)
                print(f"   end: {_line(soak.samples[-1])}", flush=True)
            soak.data_bytes = folder_bytes(data_dir)
        except Exception as exc:
            soak.error = f"{type(exc).__name__}: {exc}"
        soak.server_log, soak.shutdown_log = log.split()
    code = (code_at_start, code_version())
    text = soak_section(soak, args, command, code)
    print()
    print(text)
    write_section(ROOT / "BENCHMARKS.md", text, soak.section)
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    if code[0] != code[1]:
        print("WARNING: src/ changed during the run")
    return 1 if soak.flags() or code[0] != code[1] else 0


def _mb(value: float) -> str:
    return f"{value / MB:,.0f} MB"


def _events(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _line(s: Sample) -> str:
    return (
        f"{s.seconds:5.0f} s: {_events(s.events)} events, RSS {_mb(s.total_rss)} "
        f"({len(s.rss)} processes), PSS {_mb(s.pss)}"
    )


def _read_cells(s: Sample) -> str:
    read = s.read
    if read is None:
        query = "-"
    elif read.ok:
        query = f"{read.ms:,.0f} ms, {_events(read.counted)} events"
    else:
        query = f"failed ({read.status or 'no answer'})"
    return f" {_events(s.rejected)} | {query} |"


def _shown(samples: list[Sample]) -> list[Sample]:
    if len(samples) <= MAX_ROWS:
        return samples
    step = (len(samples) - 1) / (MAX_ROWS - 2)
    picked = {round(i * step) for i in range(MAX_ROWS - 1)} | {len(samples) - 1}
    picked.add(max(range(len(samples)), key=lambda i: samples[i].total_rss))
    return [samples[i] for i in sorted(picked)]


def summary(soak: Soak) -> list[str]:
    samples = soak.samples
    if len(samples) < 2:
        return ["Too few samples to judge the memory."]
    first, last = samples[0], samples[-1]
    top = max(samples, key=lambda s: s.total_rss)
    lines = []
    stored = last.events or 0
    cores = f"server {soak.server_cores:.2f} cores; other processes {soak.other_cores:.2f} cores"
    if soak.paced:
        p = soak.paced
        probe = soak.wrk
        lines.append(
            f"Capacity probe (wrk): {probe.rps:,.0f} req/s. " if probe else "Capacity probe: ?. "
        )
        lines[-1] += (
            f"Load at half of it: {p.requested_rps:,.0f} req/s requested, "
            f"{p.achieved_rps:,.0f} achieved ({p.achieved_rps * SCENARIO.events:,.0f} events/s), "
            f"{p.scheduled:,} requests; latency from each request's due time p50 "
            f"{p.p50_ms:.1f} ms, p90 {p.p90_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, max "
            f"{p.max_ms:,.0f} ms; {cores}."
        )
        lines.append(
            f"Errors: {p.errors} of {p.scheduled:,} requests (non-2xx {p.non_2xx}, connection "
            f"{p.connect_errors}, read {p.read_errors}, timeouts {p.timeouts}); requests the "
            f"server refused (`tally_requests_rejected_total`): {_events(last.rejected)}."
        )
    elif soak.wrk:
        w = soak.wrk
        lines.append(
            f"Load: {w.rps:,.0f} req/s ({w.rps * SCENARIO.events:,.0f} events/s) over "
            f"{w.seconds:,.0f} s, p50 {w.p50_ms:.1f} ms, p99 {w.p99_ms:.1f} ms; {cores}."
        )
    reads = soak.reads
    if reads:
        answered = sorted(r.ms for r in reads if r.ok)
        failed = len(reads) - len(answered)
        median = answered[len(answered) // 2] if answered else 0.0
        lines.append(
            f"Reads during the load: {len(reads)} trend queries (every event of the last two "
            f"days, per day), {failed} failed; latency median {median:,.0f} ms, max "
            f"{max(answered, default=0.0):,.0f} ms. The last counted {_events(reads[-1].counted)} "
            f"events of the {_events(last.events)} acknowledged."
        )
    lines.append(
        f"Events stored: {_events(last.events)} (`tally_events_accepted_total`, warm-up "
        f"included); data folder {_mb(soak.data_bytes)} at the end."
    )
    lines.append(
        f"Group RSS (all {len(last.rss)} processes): {_mb(first.total_rss)} at the start "
        f"(after the warm-up), {_mb(last.total_rss)} at the end, at most "
        f"{_mb(top.total_rss)} (at {top.seconds:.0f} s); PSS {_mb(first.pss)} -> "
        f"{_mb(last.pss)}. At the end, per process: "
        + ", ".join(
            f"{soak.roles.get(pid, f'pid {pid}')} {_mb(rss)}"
            for pid, rss in sorted(last.rss.items(), key=lambda kv: -kv[1])
        )
        + "."
    )
    reached = next((s for s in samples if (s.events or 0) >= TARGET_EVENTS), None)
    gap = top.total_rss / MB - TARGET_RSS_MB
    verdict = f"met by {-gap:,.0f} MB" if gap <= 0 else f"missed by {gap:,.0f} MB"
    if reached:
        at_target = (
            f"{_mb(reached.total_rss)} when {TARGET_EVENTS / 1e6:.0f}M events were stored "
            f"(at {reached.seconds:.0f} s)"
        )
    else:
        at_target = (
            f"{TARGET_EVENTS / 1e6:.0f}M events were not reached ({stored:,.0f} stored), so "
            "this run does not test the target"
        )
    lines.append(
        f"Target ≤ {TARGET_RSS_MB:,.0f} MB after {TARGET_EVENTS / 1e6:.0f}M events: {at_target}; "
        f"the largest sample, {_mb(top.total_rss)}: {verdict}."
    )
    half = soak.minutes * 60 / 2
    second = [s for s in samples if s.seconds >= half - SOAK_INTERVAL / 2]
    if len(second) >= 2:
        mid = second[0].total_rss
        low, high = min(s.total_rss for s in second), max(s.total_rss for s in second)
        change = last.total_rss / mid - 1
        spread = max(high / mid - 1, 1 - low / mid)
        flat = spread <= FLAT_SHARE
        lines.append(
            f"Second half ({second[0].seconds:.0f} s to {last.seconds:.0f} s): "
            f"{_mb(mid)} -> {_mb(last.total_rss)} ({change:+.1%}), between {_mb(low)} and "
            f"{_mb(high)}; target flat (within {FLAT_SHARE:.0%} of the mid-soak sample): "
            + ("met" if flat else f"missed (moved up to {spread:.1%})")
            + (
                f"; a {soak.minutes:g}-minute soak, shorter than issue 8's 10 minutes"
                if soak.minutes < 10
                else ""
            )
            + "."
        )
    lines.append(
        "RSS counts pages shared between the processes (the Python runtime, libraries) once "
        "per process; PSS splits them, so it is the closer measure of the group's memory. The "
        "target is judged on RSS, the stricter of the two."
    )
    return lines


def soak_section(soak: Soak, args: Options, command: str, code: tuple[str, str]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    shape = "1 process" if soak.workers == 1 else f"{soak.workers} HTTP workers + 1 store process"
    lines = [
        soak.section,
        "",
        f"- Date: {now}",
        *machine(),
        f"- Code: {code[0]}"
        + ("" if code[0] == code[1] else f" at the start, {code[1]} at the end: src/ changed"),
        f"- Command: `{command}`",
        f"- One `tally serve --workers {soak.workers}` ({shape}) with a fresh data folder and "
        "app; the native 100-event request (`POST /api/v1/events`, no ids, as in the Ingest "
        f"section) sent once and checked, {args.warmup:g} s warm-up, then "
        + (
            f"`wrk -t{args.threads} -c{args.connections}` for {args.seconds:g} s to find the "
            "maximum rate, then `bench/paced.py` (open loop, latency from each request's due "
            f"time) at half of that rate for {soak.minutes:g} minute(s)"
            if soak.half
            else f"`wrk -t{args.threads} -c{args.connections}` for {soak.minutes:g} minute(s)"
        )
        + f". Every {SOAK_INTERVAL:g} s: VmRSS (`/proc/PID/status`) and PSS "
        "(`/proc/PID/smaps_rollup`) of every process in the server's process group, the events "
        "stored and the requests refused from `/metrics`"
        + (", and one trend query over the API." if soak.half else "."),
        "",
    ]
    if soak.samples:
        extra = " refused | query |" if soak.half else ""
        lines += [
            "| time | events stored | group RSS | group PSS | processes |" + extra,
            "|---|---|---|---|---|" + ("---|---|" if soak.half else ""),
        ]
        lines += [
            f"| {s.seconds:.0f} s | {_events(s.events)} | {_mb(s.total_rss)} | {_mb(s.pss)} "
            f"| {len(s.rss)} |" + (_read_cells(s) if soak.half else "")
            for s in _shown(soak.samples)
        ]
        lines.append("")
    lines += ["Observations:", ""]
    lines += [f"- {line}" for line in summary(soak)]
    flags = soak.flags()
    if flags:
        lines += ["", "**FLAGGED:** " + "; ".join(flags)]
    for when, log in (("while serving", soak.server_log), ("after SIGTERM", soak.shutdown_log)):
        if log:
            lines += ["", f"Server stderr {when}:", "", "```", *log.splitlines()[-20:], "```"]
    return "\n".join(lines).rstrip("\n") + "\n"
