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

import contextlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.ingest import (
    ROOT,
    Options,
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
    parse_wrk,
    run_wrk,
    running,
    scrape,
    server_command,
    write_section,
    wrk_command,
)

SOAK_SECTION = "## Soak"
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
class Sample:
    seconds: float
    """Since the start of the soak (after the warm-up)."""
    events: float | None
    """Events stored so far (None when /metrics did not answer)."""
    rss: dict[int, int] = field(default_factory=dict)
    """VmRSS of each process of the group, bytes."""
    pss: int = 0
    """PSS of the whole group, bytes (0 when smaps_rollup is unreadable)."""

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
    events = None
    with contextlib.suppress(OSError, ValueError):
        events = scrape(base_url)["accepted"]
    result = Sample(seconds, events)
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
    samples: list[Sample] = field(default_factory=list)
    wrk: WrkResult | None = None
    roles: dict[int, str] = field(default_factory=dict)
    data_bytes: int = 0
    other_cores: float = 0.0
    server_cores: float = 0.0
    error: str | None = None
    server_log: str = ""
    shutdown_log: str = ""

    def flags(self) -> list[str]:
        found = [f"failed: {self.error}"] if self.error else []
        if self.wrk:
            if self.wrk.non_2xx:
                found.append(f"{self.wrk.non_2xx} non-2xx responses")
            found += [f"socket {k} errors: {v}" for k, v in self.wrk.socket_errors.items() if v]
        if self.server_log:
            found.append("server wrote to stderr while serving")
        return found


def run_soak(args: Options, command: str) -> int:
    assert args.soak_minutes is not None
    soak = Soak(args.soak_minutes, args.workers[0])
    seconds = max(1, round(args.soak_minutes * 60))
    code_at_start = code_version()
    print(
        f"-> soak: {soak.workers} worker(s), native 100-event batches for {seconds} s, "
        f"memory sampled every {SOAK_INTERVAL:g} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tally-soak-") as scratch:
        data_dir, log = Path(scratch) / "data", ServerLog(Path(scratch) / "server.stderr")
        body_file = Path(scratch) / "body"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        try:
            load = build_load(SCENARIO, create_app(data_dir))
            body_file.write_text(load.body)
            cmd = server_command(SCENARIO, soak.workers, port, data_dir)
            with running(cmd, log, base_url) as pgid:
                url = base_url + load.path
                check_sample(base_url, SCENARIO, load)
                run_wrk(url, SCENARIO, load, body_file, args.warmup, args)
                time.sleep(0.5)
                server_cpu, busy, wrk_cpu = (
                    group_cpu_seconds(pgid),
                    machine_busy_seconds(),
                    children_cpu_seconds(),
                )
                start = time.monotonic()
                soak.samples.append(sample(pgid, base_url, 0.0))
                wrk_cmd = wrk_command(url, SCENARIO, load, body_file, seconds, args)
                wrk = subprocess.Popen(wrk_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    tick = 1
                    while wrk.poll() is None:
                        time.sleep(max(0.0, start + tick * SOAK_INTERVAL - time.monotonic()))
                        if wrk.poll() is not None:
                            break
                        soak.samples.append(sample(pgid, base_url, time.monotonic() - start))
                        print(f"   {_line(soak.samples[-1])}", flush=True)
                        tick += 1
                    out, err = wrk.communicate(timeout=seconds + 60)
                finally:
                    if wrk.poll() is None:
                        wrk.kill()
                        wrk.wait()
                elapsed = time.monotonic() - start
                server = group_cpu_seconds(pgid) - server_cpu
                wrk_cpu = children_cpu_seconds() - wrk_cpu
                other = machine_busy_seconds() - busy - server - wrk_cpu
                soak.server_cores = server / elapsed
                soak.other_cores = max(other, 0.0) / elapsed
                if wrk.returncode != 0:
                    raise RuntimeError(f"wrk exited with {wrk.returncode}: {err or out}")
                soak.wrk = parse_wrk(out.decode())
                time.sleep(0.5)  # the last requests commit
                soak.samples.append(sample(pgid, base_url, time.monotonic() - start))
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
    write_section(ROOT / "BENCHMARKS.md", text, SOAK_SECTION)
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
    if soak.wrk:
        w = soak.wrk
        lines.append(
            f"Load: {w.rps:,.0f} req/s ({w.rps * SCENARIO.events:,.0f} events/s) over "
            f"{w.seconds:,.0f} s, p50 {w.p50_ms:.1f} ms, p99 {w.p99_ms:.1f} ms; server "
            f"{soak.server_cores:.2f} cores; other processes {soak.other_cores:.2f} cores."
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
        SOAK_SECTION,
        "",
        f"- Date: {now}",
        *machine(),
        f"- Code: {code[0]}"
        + ("" if code[0] == code[1] else f" at the start, {code[1]} at the end: src/ changed"),
        f"- Command: `{command}`",
        f"- One `tally serve --workers {soak.workers}` ({shape}) with a fresh data folder and "
        "app; the native 100-event request (`POST /api/v1/events`, no ids, as in the Ingest "
        f"section) sent once and checked, {args.warmup:g} s warm-up, then "
        f"`wrk -t{args.threads} -c{args.connections}` for {soak.minutes:g} minute(s). Every "
        f"{SOAK_INTERVAL:g} s: VmRSS (`/proc/PID/status`) and PSS (`/proc/PID/smaps_rollup`) of "
        "every process in the server's process group, and the events stored from `/metrics`.",
        "",
    ]
    if soak.samples:
        lines += [
            "| time | events stored | group RSS | group PSS | processes |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.seconds:.0f} s | {_events(s.events)} | {_mb(s.total_rss)} | {_mb(s.pss)} "
            f"| {len(s.rss)} |"
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
