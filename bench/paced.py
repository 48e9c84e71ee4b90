"""Open-loop, paced HTTP/1.1 load generator: POSTs one body at a fixed rate, whatever the server
does, and measures each request's latency from its scheduled send time (no coordinated omission).

    python -m bench.paced --url http://127.0.0.1:8000/api/v1/events --rate 1000 --duration 10 \\
        --body-file body.json [--ids NONCE] [--connections 64] [-H "Name: value" ...] [--json]

Request i is due at ``start + i / rate``. A scheduler puts each due request on a queue (it wakes
about every millisecond and queues every request whose time has come, so its own jitter counts in
the latencies); up to ``--connections`` keep-alive connections, opened before the start, take
requests off the queue one at a time. A request that waits for a free connection waits on the
clock: its latency runs from when it was due to when its response was read in full. After the
last request is due, the generator waits up to ``--drain`` seconds for the outstanding ones;
those still unanswered count as timeouts.

With ``--ids NONCE`` every ``__ID__`` in the body is replaced by ``NONCE-<request number>`` (the
body file follows each mark with the event's index), as bench/body_ids.lua does for wrk.

It prints the requested and achieved rate, p50/p90/p99/max latency, errors (non-2xx responses,
connection failures, timeouts), how late the scheduler itself queued requests, and the CPU the
generator used, which tells whether it, rather than the server, limited the rate. With ``--json``
it prints one JSON object instead (bench/ingest.py reads that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

ID_MARK = "__ID__"
TICK = 0.001
"""How often the scheduler wakes to queue the requests that have come due (seconds)."""


@dataclass
class Report:
    requested_rps: float
    duration_s: float
    connections: int
    scheduled: int = 0
    completed: int = 0
    """Requests answered with a 2xx status."""
    elapsed_s: float = 0.0
    """From the first request's due time to the last response (or the end of the schedule)."""
    achieved_rps: float = 0.0
    """2xx responses over ``elapsed_s``."""
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    timeouts: int = 0
    """Requests unanswered after ``--timeout`` or when the drain ended."""
    scheduler_lag_p99_ms: float = 0.0
    """How late the scheduler queued requests, p99: the generator's own pacing error."""
    scheduler_lag_max_ms: float = 0.0
    generator_cores: float = 0.0
    """CPU time of this process over ``elapsed_s``: near 1.0, the generator limits the rate."""
    connections_used: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.connect_errors + self.read_errors + self.timeouts


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values)) - 1))
    return sorted_values[index]


class Request:
    """The request's bytes: fixed, or with its ids filled in per request."""

    def __init__(self, url: str, body: bytes, headers: list[str], nonce: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
        lines += headers
        self._head = "\r\n".join(lines) + "\r\nContent-Length: "
        self._nonce = nonce
        self._pieces = body.split(ID_MARK.encode())
        if nonce is not None and len(self._pieces) < 2:
            raise SystemExit(f"--ids given but the body has no {ID_MARK}")
        self._fixed = None if nonce is not None else self._build(body)

    def _build(self, body: bytes) -> bytes:
        return (self._head + f"{len(body)}\r\n\r\n").encode() + body

    def bytes(self, number: int) -> bytes:
        if self._fixed is not None:
            return self._fixed
        return self._build(f"{self._nonce}-{number}".encode().join(self._pieces))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, keep = None, False, not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = value != b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    elif length is None and status not in (204, 304) and status >= 200:
        await reader.read()  # no length: the body runs to the end of the connection
        keep = False
    return status, keep


async def run(args: argparse.Namespace) -> Report:
    headers = list(args.header)
    if not any(h.lower().startswith("content-type:") for h in headers):
        headers.append("Content-Type: application/json")
    request = Request(args.url, Path(args.body_file).read_bytes(), headers, args.ids)
    report = Report(args.rate, args.duration, args.connections)
    total = max(1, int(args.rate * args.duration))
    latencies: list[float] = []
    lags: list[float] = []
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    outstanding: set[int] = set()
    used: set[int] = set()
    last = [0.0]  # when the last response was read

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(request.host, request.port), args.timeout
            )
        except (OSError, TimeoutError):
            report.connect_errors += 1
            return None

    async def worker(slot: int, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None):
        while True:
            number, due = await queue.get()
            used.add(slot)
            if conn is None:
                conn = await connect()
                if conn is None:
                    outstanding.discard(number)
                    continue
            reader, writer = conn
            try:
                writer.write(request.bytes(number))
                status, keep = await asyncio.wait_for(read_response(reader), args.timeout)
            except TimeoutError:
                report.timeouts += 1
                keep = False
                status = 0
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                report.read_errors += 1
                keep = False
                status = 0
            if status:
                last[0] = time.monotonic()
                latencies.append(last[0] - due)
                report.statuses[str(status)] = report.statuses.get(str(status), 0) + 1
                if 200 <= status < 300:
                    report.completed += 1
                else:
                    report.non_2xx += 1
            outstanding.discard(number)
            if not keep:
                writer.close()
                conn = None

    opened = await asyncio.gather(*(connect() for _ in range(args.connections)))
    tasks = [asyncio.create_task(worker(i, c)) for i, c in enumerate(opened)]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic() + 0.05
    interval = 1.0 / args.rate
    number = 0
    while number < total:
        now = time.monotonic()
        while number < total and start + number * interval <= now:
            due = start + number * interval
            lags.append(now - due)
            outstanding.add(number)
            queue.put_nowait((number, due))
            number += 1
        if number < total:
            await asyncio.sleep(min(TICK, max(0.0, start + number * interval - time.monotonic())))
    report.scheduled = number
    end_of_schedule = start + total * interval
    deadline = time.monotonic() + args.drain
    while outstanding and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    report.timeouts += len(outstanding)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    used_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (used_cpu.ru_utime - cpu.ru_utime) + (used_cpu.ru_stime - cpu.ru_stime)
    report.elapsed_s = max(end_of_schedule, last[0]) - start
    report.achieved_rps = report.completed / report.elapsed_s if report.elapsed_s else 0.0
    latencies.sort()
    lags.sort()
    report.p50_ms, report.p90_ms, report.p99_ms = (
        percentile(latencies, q) * 1000 for q in (0.50, 0.90, 0.99)
    )
    report.max_ms = (latencies[-1] if latencies else 0.0) * 1000
    report.scheduler_lag_p99_ms = percentile(lags, 0.99) * 1000
    report.scheduler_lag_max_ms = (lags[-1] if lags else 0.0) * 1000
    report.generator_cores = cpu_s / report.elapsed_s if report.elapsed_s else 0.0
    report.connections_used = len(used)
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Open-loop paced HTTP POST load generator.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of schedule")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--connections", "-c", type=int, default=64)
    parser.add_argument("--header", "-H", action="append", default=[], help="'Name: value'")
    parser.add_argument("--ids", metavar="NONCE", help=f"fill every {ID_MARK} per request")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait at the end")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    ns = parser.parse_args(argv)
    if ns.rate <= 0 or ns.duration <= 0 or ns.connections < 1:
        parser.error("--rate, --duration and --connections must be positive")
    return ns


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop  # Tally's own event loop: less generator CPU per request

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    report = runner(run(args))
    if args.json:
        print(json.dumps({**asdict(report), "errors": report.errors}))
    else:
        print(
            f"requested {report.requested_rps:,.0f} req/s for {report.duration_s:g} s over "
            f"{report.connections} connections ({report.connections_used} used)\n"
            f"achieved  {report.achieved_rps:,.0f} req/s ({report.completed} 2xx of "
            f"{report.scheduled} scheduled, in {report.elapsed_s:.2f} s)\n"
            f"latency   p50 {report.p50_ms:.2f} ms, p90 {report.p90_ms:.2f} ms, "
            f"p99 {report.p99_ms:.2f} ms, max {report.max_ms:.2f} ms (from the scheduled time)\n"
            f"errors    non-2xx {report.non_2xx}, connect {report.connect_errors}, "
            f"read {report.read_errors}, timeouts {report.timeouts}\n"
            f"generator {report.generator_cores:.2f} cores, scheduler lag p99 "
            f"{report.scheduler_lag_p99_ms:.2f} ms, max {report.scheduler_lag_max_ms:.2f} ms"
        )
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
