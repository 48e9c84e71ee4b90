"""Query benchmark: every analytics query kind over a generated data set (10M events of 100k people
over 30 days by default), answered by a real ``tally serve`` through ``POST .../query``.

The data set is written straight into a fresh DuckDB file (loading is not what is measured; the
ingest benchmark measures that), the catalog gets the definitions the queries filter on, then a
server process starts and this process times each query over HTTP. Results go to the "Queries"
section of BENCHMARKS.md. Run it with ``bench/queries`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.ingest import ROOT, code_version, free_port, stop, wait_ready, write_section
from tally.catalog import Catalog, sqlite_url
from tally.catalog.definitions import EventDefinition, PropertyDefinition, PropertyType
from tally.store.columns import EVENT_COLUMNS
from tally.store.duckdb_store import DuckDBStore

SECTION = "## Queries"
START = datetime(2026, 10, 1, tzinfo=UTC)
NAMES = ("page.visit", "purchase", "signup", "session.start", "session.end")
WEIGHTS = (0.55, 0.08, 0.04, 0.165, 0.165)
PLANS = np.array(["free", "pro", "team"])
SYSTEMS = np.array(["iOS", "Android", "Windows", "Mac OS X", "Linux"])
CHUNK = 1_000_000


def _strings(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def generate(rng: np.random.Generator, rows: int, people: int, days: int, app_id: str, offset: int):
    """One chunk of events as an Arrow table in the events table's column order."""
    person = (people * rng.random(rows) ** 2).astype(np.int64)  # a few people do a lot
    names = rng.choice(len(NAMES), size=rows, p=WEIGHTS)
    seconds = rng.integers(0, days * 86_400, rows)
    time = pa.array((np.int64(START.timestamp()) + seconds) * 1_000_000, type=pa.timestamp("us"))
    is_purchase = names == 1
    amount = np.round(rng.exponential(40.0, rows), 2)
    plan = PLANS[rng.integers(0, 3, rows)]
    properties = pc.if_else(
        pa.array(is_purchase),
        pc.binary_join_element_wise(
            '{"plan":"',
            pa.array(plan),
            '","amount":',
            pc.cast(pa.array(amount), pa.string()),
            "}",
            "",
        ),
        pa.nulls(rows, pa.string()),
    )
    has_user = (person % 3 == 0) & (rng.random(rows) < 0.5)
    columns: dict[str, pa.Array] = {
        "app_id": pa.array(np.full(rows, app_id)),
        "id": _strings("b", np.arange(offset, offset + rows)),
        "name": pa.array(np.array(NAMES)[names]),
        "label": pa.nulls(rows, pa.string()),
        "time": time,
        "received_at": time,
        "user_id": pc.if_else(
            pa.array(has_user), _strings("u", person), pa.nulls(rows, pa.string())
        ),
        "device_id": _strings("d", person),
        "session_id": pa.nulls(rows, pa.string()),
        "count": pa.array(np.ones(rows, dtype=np.int64)),
        "sum": pa.array(np.where(is_purchase, amount, np.nan), from_pandas=True),
        "dur": pa.array(
            np.where(names == 4, rng.exponential(300.0, rows), np.nan), from_pandas=True
        ),
        "properties": properties,
        "os": pa.array(SYSTEMS[person % len(SYSTEMS)]),
        "protocol": pa.array(np.full(rows, "native")),
        "internal": pa.array(np.zeros(rows, dtype=bool)),
    }
    arrays = [
        columns[name] if name in columns else pa.nulls(rows, kind) for name, kind in EVENT_COLUMNS
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(EVENT_COLUMNS))


def load(data_dir: Path, app_id: str, events: int, people: int, days: int) -> float:
    started = time.monotonic()
    store = DuckDBStore(data_dir)
    store.migrate()
    rng = np.random.default_rng(7)
    names = ", ".join(name for name, _ in EVENT_COLUMNS)
    for offset in range(0, events, CHUNK):
        chunk = generate(rng, min(CHUNK, events - offset), people, days, app_id, offset)  # noqa: F841
        store.conn.execute(f"INSERT INTO events ({names}) SELECT {names} FROM chunk")
    store.conn.execute(
        "INSERT INTO identity_links SELECT DISTINCT app_id, device_id, user_id, min(time) "
        "FROM events WHERE user_id IS NOT NULL GROUP BY ALL"
    )
    store.conn.execute("CHECKPOINT")
    store.close()
    return time.monotonic() - started


QUERIES: dict[str, tuple[dict[str, Any], int | None]] = {
    "trends: count per day, 30 days": (
        {"kind": "trends", "events": [{"event": "page.visit"}], "interval": "day"},
        100,
    ),
    "trends: top 20 operating systems (breakdown)": (
        {
            "kind": "trends",
            "events": [{"event": "page.visit"}],
            "breakdown": {"field": "os", "limit": 20},
        },
        300,
    ),
    "users: daily active": ({"kind": "users", "interval": "day"}, 300),
    "trends: people per day": (
        {"kind": "trends", "events": [{"event": "page.visit", "measure": "users"}]},
        None,
    ),
    "trends: revenue per hour, Europe/Warsaw, filter": (
        {
            "kind": "trends",
            "interval": "hour",
            "tz": "Europe/Warsaw",
            "events": [{"event": "purchase", "measure": "sum"}],
            "filters": [{"field": "properties.amount", "op": "gt", "value": 20}],
        },
        None,
    ),
    "trends: people by plan (breakdown), compare": (
        {
            "kind": "trends",
            "events": [{"event": "purchase", "measure": "users"}],
            "breakdown": {"field": "properties.plan", "limit": 2},
            "compare": True,
        },
        None,
    ),
    "users: weekly active, new, returning": ({"kind": "users", "interval": "week"}, None),
    "sessions: per day with durations": ({"kind": "sessions", "interval": "day"}, None),
    "funnel: visit -> signup -> purchase, 7 days": (
        {
            "kind": "funnel",
            "window": {"value": 7, "unit": "day"},
            "steps": [{"event": "page.visit"}, {"event": "signup"}, {"event": "purchase"}],
        },
        1000,
    ),
    "retention: signup -> purchase, 8 weeks": (
        {
            "kind": "retention",
            "interval": "week",
            "periods": 8,
            "start_event": {"event": "signup"},
            "return_event": {"event": "purchase"},
        },
        1500,
    ),
}
ACTIVITY = "activity: one customer's feed, newest 50"
ACTIVITY_TARGET_MS = 20
ACTIVITY_USER = "u6"
"""A busy customer (people are drawn with a skew towards low numbers)."""


def post(url: str, body: dict[str, Any] | None, auth: str) -> tuple[float, int]:
    """POSTs ``body`` (GETs when None); the seconds until the whole answer was read, its size."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
        method="GET" if body is None else "POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Tally query benchmark")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    code = code_version()
    with tempfile.TemporaryDirectory(prefix="tally-bench-q-") as tmp:
        data_dir = Path(tmp)
        catalog = Catalog(sqlite_url(data_dir))
        catalog.migrate()
        new = catalog.create_app("bench")
        purchase = EventDefinition(
            name="purchase",
            properties=[
                PropertyDefinition(name="plan"),
                PropertyDefinition(name="amount", type=PropertyType.NUMBER),
            ],
        )
        catalog.definitions.put(new.app.id, purchase)
        catalog.close()
        print(f"loading {args.events:,} events of {args.people:,} people...", flush=True)
        load_seconds = load(data_dir, new.app.id, args.events, args.people, args.days)
        store_bytes = (data_dir / "events.duckdb").stat().st_size
        print(f"loaded in {load_seconds:.1f} s", flush=True)
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tally",
                "serve",
                "--data",
                str(data_dir),
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        auth = b64encode(f"{new.app.api_key}:{new.api_secret}".encode()).decode()
        period = {
            "from": START.date().isoformat(),
            "to": datetime.fromtimestamp(START.timestamp() + args.days * 86_400, UTC)
            .date()
            .isoformat(),
        }
        results = []
        rss_mb = 0.0
        try:
            wait_ready(proc, base)
            url = f"{base}/api/v1/apps/{new.app.id}/query"
            feed = f"{base}/api/v1/apps/{new.app.id}/users/{ACTIVITY_USER}/activity?limit=50"
            runs = [
                (t, url, {"tz": "UTC", **period, **q}, target) for t, (q, target) in QUERIES.items()
            ]
            runs.append((ACTIVITY, feed, None, ACTIVITY_TARGET_MS))
            for title, target_url, body, target in runs:
                times = []
                for _ in range(args.runs):
                    seconds, size = post(target_url, body, auth)
                    times.append(seconds)
                results.append((title, statistics.median(times), min(times), size, target))
                print(f"{title}: median {statistics.median(times) * 1000:,.0f} ms", flush=True)
            rss_mb = resident_mb(proc.pid)
        finally:
            stop(proc)
    text = section(results, args, load_seconds, code, store_bytes, rss_mb)
    print(text)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, SECTION)


def resident_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def verdict(median: float, target_ms: int | None) -> str:
    if target_ms is None:
        return "—"
    ms = median * 1000
    if ms <= target_ms:
        return f"≤ {target_ms:,} ms: met"
    return f"≤ {target_ms:,} ms: missed ({ms / target_ms:.1f} times)"


def section(
    results: list,
    args: argparse.Namespace,
    load_seconds: float,
    code: str,
    store_bytes: int,
    rss_mb: float,
) -> str:
    mem = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    lines = [
        SECTION,
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} CPUs, {mem / 1024**2:.1f} GiB RAM, "
        f"Linux {platform.release()}",
        f"- Software: Python {platform.python_version()}, duckdb {version('duckdb')}",
        f"- Code: {code}",
        f"- Command: `bench/queries --events {args.events} --people {args.people} "
        f"--days {args.days} --runs {args.runs}`",
        f"- Data: {args.events:,} events of {args.people:,} people over {args.days} days "
        "(page visits, purchases with plan and amount, signups, sessions; a third of the people "
        f"also have a customer id linked to their device), loaded in {load_seconds:.0f} s "
        "straight into DuckDB. Each query: one `tally serve` worker, over HTTP, "
        f"{args.runs} runs; the whole period; UTC unless said.",
        "",
        f"- Disk: the event store holds {store_bytes / args.events:.1f} bytes per event "
        f"({store_bytes / 1024**2:,.0f} MiB; target ≤ 40). Loaded in million-row inserts; "
        "events committed by ingest in small group commits are compressed per row group the "
        "same way once DuckDB checkpoints.",
        f"- Server memory after the queries: {rss_mb:,.0f} MiB resident (one worker; target "
        "≤ 500 MB).",
        "- ClickHouse: not measured yet (the ClickHouse store is issue 9's).",
        "",
        "| query | median | best | target | answer bytes |",
        "|---|---|---|---|---|",
        *(
            f"| {t} | {m * 1000:,.0f} ms | {b * 1000:,.0f} ms | {verdict(m, target)} | {s:,} |"
            for t, m, b, s, target in results
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
