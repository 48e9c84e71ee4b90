"""Query benchmark: every analytics query kind over a generated data set (10M events of 100k people
over 30 days by default), answered by a real ``tally serve`` through ``POST .../query``.

The data set is written straight into a fresh DuckDB file (loading is not what is measured; the
ingest benchmark measures that), the catalog gets the definitions the queries filter on, then a
server process starts and this process times each query over HTTP. Results go to the "Queries"
section of BENCHMARKS.md. Run it with ``bench/queries`` (see bench/README.md).

Next to each query, the same query directly on ClickHouse (issue 8): Debian's clickhouse-server,
started by this process (``tally.testing.clickhouse_server``), gets the same generated events in
a fresh database (``ClickHouseDB.insert_event_columns``, one insert per million-row chunk) and the
same identity links; each query is compiled for ClickHouse (``Runner`` with the ClickHouse
dialect) and run here through the driver, and its answer is compared with the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.ingest import ROOT, code_version, free_port, stop, wait_ready, write_section
from tally.catalog import Catalog, sqlite_url
from tally.catalog.definitions import (
    EventDefinition,
    PropertyDefinition,
    PropertyType,
    render_label,
)
from tally.http.activity import encode_cursor
from tally.http.read import event_json
from tally.pipeline.app_rules import AppRules
from tally.query.dialects import CLICKHOUSE
from tally.query.model import decode_query
from tally.query.run import Runner
from tally.store.clickhouse_db import ClickHouseDB
from tally.store.clickhouse_rows import property_arrays
from tally.store.columns import EVENT_COLUMNS
from tally.store.duckdb_schema import LINK_KEY_SQL
from tally.store.duckdb_store import DuckDBStore
from tally.store.query import EventCursor, EventQuery
from tally.store.rows import EVENT_COLUMN_NAMES
from tally.testing.clickhouse_server import ClickHouseServer, start_clickhouse

SECTION = "## Queries"
START = datetime(2026, 10, 1, tzinfo=UTC)
NAMES = ("page.visit", "purchase", "signup", "session.start", "session.end")
WEIGHTS = (0.55, 0.08, 0.04, 0.165, 0.165)
PLANS = np.array(["free", "pro", "team"])
SYSTEMS = np.array(["iOS", "Android", "Windows", "Mac OS X", "Linux"])
CHUNK = 1_000_000


def _strings(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def generate(
    rng: np.random.Generator,
    rows: int,
    people: int,
    days: int,
    app_id: str,
    offset: int,
    events: int,
):
    """One chunk of events as an Arrow table in the events table's column order. The chunks of
    ``events`` follow each other in time and each is in time order, as live ingest stores them
    (events arrive as they happen)."""
    person = (people * rng.random(rows) ** 2).astype(np.int64)  # a few people do a lot
    names = rng.choice(len(NAMES), size=rows, p=WEIGHTS)
    period = days * 86_400
    first, last = period * offset // events, period * (offset + rows) // events
    seconds = np.sort(rng.integers(first, max(last, first + 1), rows))
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


_MICROS = ("time", "received_at")
_LISTS = ("undefined_properties", "coerced_properties")


def clickhouse_columns(chunk: pa.Table) -> list[list[Any]]:
    """A generated chunk as ``ClickHouseDB.insert_event_columns`` takes it: columns in
    ``INSERT_COLUMNS`` order, times as microseconds, lists empty for none, ``internal`` as 0/1,
    then the property arrays (``clickhouse_rows.property_arrays``, as an append makes them)."""
    rows = chunk.num_rows
    columns: list[list[Any]] = []
    for name, _ in EVENT_COLUMNS:
        column = chunk.column(name)
        if name in _MICROS:
            values = pc.cast(column, pa.int64()).to_pylist()
        elif name in _LISTS:
            values = [value or [] for value in column.to_pylist()]
        elif name == "internal":
            values = pc.cast(column, pa.uint8()).to_pylist()
        elif column.null_count == rows:
            values = [None] * rows
        else:
            values = column.to_pylist()
        columns.append(values)
    keys, texts = [], []
    for properties in columns[EVENT_COLUMN_NAMES.index("properties")]:
        k, v = property_arrays(properties)
        keys.append(k)
        texts.append(v)
    return [*columns, keys, texts]


@dataclass
class Loaded:
    """Seconds spent making the data and loading each store (each store's own work only)."""

    generate: float = 0.0
    duckdb: float = 0.0
    clickhouse: float = 0.0
    clickhouse_merge: float = 0.0
    links: int = 0


def load(
    data_dir: Path,
    app_id: str,
    events: int,
    people: int,
    days: int,
    clickhouse: ClickHouseDB | None,
) -> Loaded:
    """Generate the events chunk by chunk and write each chunk into DuckDB and, when given, into
    ClickHouse; then the identity links (DuckDB derives them, ClickHouse gets the same rows)."""
    took = Loaded()
    store = DuckDBStore(data_dir)
    store.migrate()
    rng = np.random.default_rng(7)
    names = ", ".join(name for name, _ in EVENT_COLUMNS)
    for offset in range(0, events, CHUNK):
        started = time.monotonic()
        rows = min(CHUNK, events - offset)
        chunk = generate(rng, rows, people, days, app_id, offset, events)
        took.generate += time.monotonic() - started
        started = time.monotonic()
        store.conn.execute(f"INSERT INTO events ({names}) SELECT {names} FROM chunk")
        took.duckdb += time.monotonic() - started
        if clickhouse is not None:
            started = time.monotonic()
            clickhouse.insert_event_columns(clickhouse_columns(chunk))
            took.clickhouse += time.monotonic() - started
    started = time.monotonic()
    store.conn.execute(
        "INSERT INTO identity_links SELECT app_id, from_id, to_id, linked_at, "
        f"{LINK_KEY_SQL} FROM (SELECT app_id, device_id AS from_id, user_id AS to_id, "
        "min(time) AS linked_at FROM events WHERE user_id IS NOT NULL GROUP BY ALL)"
    )
    store.conn.execute("CHECKPOINT")
    links = store.conn.execute(
        "SELECT app_id, from_id, to_id, epoch_us(linked_at) FROM identity_links"
    ).fetchall()
    took.links = len(links)
    store.close()
    took.duckdb += time.monotonic() - started
    if clickhouse is not None:
        started = time.monotonic()
        for piece in range(0, len(links), CHUNK):
            clickhouse.conn.execute(
                "INSERT INTO identity_links (app_id, from_id, to_id, linked_at) VALUES",
                links[piece : piece + CHUNK],
            )
        took.clickhouse += time.monotonic() - started
        # One part per partition, as DuckDB's checkpoint leaves its file: the state background
        # merges reach for data that is no longer being written.
        started = time.monotonic()
        clickhouse.conn.execute("OPTIMIZE TABLE events FINAL")
        clickhouse.conn.execute("OPTIMIZE TABLE identity_links FINAL")
        took.clickhouse_merge = time.monotonic() - started
        took.clickhouse += took.clickhouse_merge
    return took


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
ACTIVITY_TARGET_MS = 20
ACTIVITY_FEEDS = {
    "activity: one customer's feed, newest 50": "u6",
    "activity: a rare customer's feed, newest 50": "u99999",
}
"""A busy customer (people are drawn with a skew towards low numbers: about 6,000 events over the
period) and a rare one (about 50 events spread over it)."""


def post(url: str, body: dict[str, Any] | None, auth: str) -> tuple[float, bytes]:
    """POSTs ``body`` (GETs when None); the seconds until the whole answer was read, and it."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
        method="GET" if body is None else "POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = response.read()
    return time.perf_counter() - started, answer


_encoder = msgspec.json.Encoder()
"""What ``http.api.json_response`` encodes answers with."""


class OnClickHouse:
    """The benchmark's queries answered directly on ClickHouse, in this process: decoded and
    compiled as the server does (``Runner`` with the ClickHouse dialect, the app's rules), run
    through the driver (``ClickHouseDB.run_sql`` / ``fetch_events``), shaped and encoded to the
    JSON the HTTP API answers. No HTTP, no server process, no authentication."""

    def __init__(self, db: ClickHouseDB, rules: AppRules) -> None:
        self.db = db
        self.rules = rules
        self.loop = asyncio.new_event_loop()
        self.runner = Runner(self._execute, rules, CLICKHOUSE)

    async def _execute(self, sql: str, params: list[Any]) -> list[tuple]:
        return self.db.run_sql(sql, params)

    def query(self, body: dict[str, Any]) -> bytes:
        query = decode_query(json.dumps(body).encode())
        return _encoder.encode(self.loop.run_until_complete(self.runner.run(query)))

    def activity(self, user: str, limit: int) -> bytes:
        """``http.activity.user_activity``'s answer (first page) from ``fetch_events``."""
        rows = self.db.fetch_events(
            EventQuery(app_id=self.rules.app_id, user=user, limit=limit + 1)
        )
        page, more = rows[:limit], len(rows) > limit
        events = []
        for row in page:
            item = event_json(row)
            definition = self.rules.definitions.get(row["name"])
            if item["label"] is None and definition is not None and definition.label_template:
                item["label"] = render_label(definition.label_template, row["properties"])
            events.append(item)
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = encode_cursor(EventCursor(last["time"], last["received_at"], last["id"]))
        return _encoder.encode({"events": events, "next_cursor": next_cursor})

    def close(self) -> None:
        self.loop.close()


def differences(duck: Any, click: Any, path: str = "$") -> list[str]:
    """Where two JSON answers differ (numbers compared with a relative tolerance of 1e-9: sums
    of floats depend on the order they are added in)."""
    if isinstance(duck, dict) and isinstance(click, dict):
        out = []
        for key in sorted({*duck, *click}, key=str):
            if key not in click:
                out.append(f"{path}.{key}: only in DuckDB's answer")
            elif key not in duck:
                out.append(f"{path}.{key}: only in ClickHouse's answer")
            else:
                out += differences(duck[key], click[key], f"{path}.{key}")
        return out
    if isinstance(duck, list) and isinstance(click, list):
        out = []
        if len(duck) != len(click):
            out.append(
                f"{path}: {len(duck)} items in DuckDB's answer, {len(click)} in ClickHouse's"
            )
        for i, (a, b) in enumerate(zip(duck, click, strict=False)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    numbers = (int, float)
    if (
        isinstance(duck, numbers)
        and isinstance(click, numbers)
        and not isinstance(duck, bool)
        and not isinstance(click, bool)
    ):
        if math.isclose(duck, click, rel_tol=1e-9, abs_tol=1e-9):
            return []
    elif duck == click:
        return []
    return [f"{path}: {duck!r} (DuckDB) vs {click!r} (ClickHouse)"]


@dataclass
class Result:
    title: str
    median: float
    best: float
    size: int
    target: int | None
    ch_median: float | None = None
    ch_best: float | None = None
    ch_size: int | None = None
    ch_error: str | None = None
    diffs: list[str] = field(default_factory=list)


def timed(call: Any, runs: int) -> tuple[list[float], bytes]:
    times = []
    answer = b""
    for _ in range(runs):
        started = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - started)
    return times, answer


@dataclass
class ClickHouseInfo:
    version: str = ""
    events_compressed: int = 0
    events_uncompressed: int = 0
    database_compressed: int = 0
    parts: int = 0
    rss_mb: float = 0.0


def clickhouse_info(db: ClickHouseDB) -> ClickHouseInfo:
    [(ch_version,)] = db.conn.execute("SELECT version()")
    [(compressed, uncompressed, parts)] = db.conn.execute(
        "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes), count() "
        "FROM system.parts WHERE database = %(db)s AND table = 'events' AND active",
        {"db": db.layout.database},
    )
    [(everything,)] = db.conn.execute(
        "SELECT sum(data_compressed_bytes) FROM system.parts WHERE database = %(db)s AND active",
        {"db": db.layout.database},
    )
    return ClickHouseInfo(
        version=ch_version,
        events_compressed=int(compressed or 0),
        events_uncompressed=int(uncompressed or 0),
        database_compressed=int(everything or 0),
        parts=int(parts),
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Tally query benchmark")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1M events of 10k people, 1 run each")
    parser.add_argument("--no-clickhouse", action="store_true", help="skip the ClickHouse column")
    parser.add_argument(
        "--clickhouse-memory",
        type=float,
        default=10.0,
        help="GB one ClickHouse query may use (max_memory_usage; default 10, ClickHouse's own "
        "default; the tests' server allows 2)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.people, args.runs = 1_000_000, 10_000, 1
    code = code_version()
    server: ClickHouseServer | None = None
    db: ClickHouseDB | None = None
    try:
        if not args.no_clickhouse:
            print("starting ClickHouse...", flush=True)
            try:
                server = start_clickhouse(max_memory_usage=int(args.clickhouse_memory * 1e9))
            except RuntimeError as exc:
                raise SystemExit(
                    f"{exc}\n(bench/queries --no-clickhouse runs without it)"
                ) from None
            db = ClickHouseDB(server.url.rstrip("/") + "/tally_bench")
            db.migrate()
        with tempfile.TemporaryDirectory(prefix="tally-bench-q-") as tmp:
            results, loaded, store_bytes, rss_mb, info = run(args, Path(tmp), db, server)
    finally:
        if db is not None:
            db.close()
        if server is not None:
            server.stop()
    text = section(results, args, loaded, code, store_bytes, rss_mb, info)
    print(text)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, SECTION)


def run(
    args: argparse.Namespace,
    data_dir: Path,
    db: ClickHouseDB | None,
    server: ClickHouseServer | None,
) -> tuple[list[Result], Loaded, int, float, ClickHouseInfo | None]:
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
    app = catalog.get_app(new.app.id)
    assert app is not None
    # what the server's AppResolver builds for the app
    rules = AppRules(app, catalog.definitions.list(app.id), catalog.definitions.aliases(app.id))
    catalog.close()
    where = "DuckDB" + (" and ClickHouse" if db is not None else "")
    print(f"loading {args.events:,} events of {args.people:,} people into {where}...", flush=True)
    loaded = load(data_dir, new.app.id, args.events, args.people, args.days, db)
    store_bytes = (data_dir / "events.duckdb").stat().st_size
    print(
        f"generated in {loaded.generate:.1f} s; DuckDB loaded in {loaded.duckdb:.1f} s"
        + (f", ClickHouse in {loaded.clickhouse:.1f} s" if db is not None else ""),
        flush=True,
    )
    info = clickhouse_info(db) if db is not None else None
    on_clickhouse = OnClickHouse(db, rules) if db is not None else None
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
    results: list[Result] = []
    rss_mb = 0.0
    try:
        wait_ready(proc, base)
        url = f"{base}/api/v1/apps/{new.app.id}/query"
        feed = f"{base}/api/v1/apps/{new.app.id}/users/{{}}/activity?limit=50"
        runs: list[tuple[str, str, dict[str, Any] | None, int | None, str | None]] = [
            (t, url, {"tz": "UTC", **period, **q}, target, None)
            for t, (q, target) in QUERIES.items()
        ]
        runs += [
            (title, feed.format(user), None, ACTIVITY_TARGET_MS, user)
            for title, user in ACTIVITY_FEEDS.items()
        ]
        for title, target_url, body, target, user in runs:
            times, answer = timed(lambda u=target_url, b=body: post(u, b, auth)[1], args.runs)
            result = Result(title, statistics.median(times), min(times), len(answer), target)
            line = f"{title}: median {result.median * 1000:,.0f} ms"
            if on_clickhouse is not None:
                clickhouse_side(on_clickhouse, body, user, answer, args.runs, result)
                if result.ch_median is not None:
                    line += f", ClickHouse {result.ch_median * 1000:,.0f} ms"
                line += "; " + same_text(result)
            results.append(result)
            print(line, flush=True)
            for difference in result.diffs:
                print(f"  {difference}", flush=True)
            if result.ch_error:
                print(f"  ClickHouse failed: {result.ch_error}", flush=True)
        rss_mb = resident_mb(proc.pid)
        if info is not None and server is not None:
            info.rss_mb = resident_mb(server.process.pid)
    finally:
        stop(proc)
        if on_clickhouse is not None:
            on_clickhouse.close()
    return results, loaded, store_bytes, rss_mb, info


def clickhouse_side(
    on_clickhouse: OnClickHouse,
    body: dict[str, Any] | None,
    user: str | None,
    duck_answer: bytes,
    runs: int,
    result: Result,
) -> None:
    """Time the query (``body``, or ``user``'s feed) on ClickHouse and compare its answer with the
    server's (DuckDB's)."""

    def call() -> bytes:
        if user is not None:
            return on_clickhouse.activity(user, 50)
        assert body is not None
        return on_clickhouse.query(body)

    try:
        times, answer = timed(call, runs)
    except Exception as exc:  # reported in the table, not hidden
        result.ch_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        return
    result.ch_median, result.ch_best = statistics.median(times), min(times)
    result.ch_size = len(answer)
    result.diffs = differences(json.loads(duck_answer), json.loads(answer))


def same_text(result: Result) -> str:
    if result.ch_error is not None:
        return "**ClickHouse failed**"
    if result.ch_median is None:
        return "—"
    if not result.diffs:
        return "same"
    return f"**differs** ({len(result.diffs):,} values)"


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


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _command(args: argparse.Namespace) -> str:
    if args.quick:
        command = "bench/queries --quick"
    else:
        command = (
            f"bench/queries --events {args.events} --people {args.people} "
            f"--days {args.days} --runs {args.runs}"
        )
    if args.no_clickhouse:
        return command + " --no-clickhouse"
    if args.clickhouse_memory != 10.0:
        command += f" --clickhouse-memory {args.clickhouse_memory:g}"
    return command


def section(
    results: list[Result],
    args: argparse.Namespace,
    loaded: Loaded,
    code: str,
    store_bytes: int,
    rss_mb: float,
    info: ClickHouseInfo | None,
) -> str:
    mem = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    software = f"Python {platform.python_version()}, duckdb {version('duckdb')}"
    if info is not None:
        software += (
            f", ClickHouse {info.version} (Debian's clickhouse-server; a query may use "
            f"{args.clickhouse_memory:g} GB), clickhouse-driver {version('clickhouse-driver')}"
        )
    lines = [
        SECTION,
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} CPUs, {mem / 1024**2:.1f} GiB RAM, "
        f"Linux {platform.release()}",
        f"- Software: {software}",
        f"- Code: {code}",
        f"- Command: `{_command(args)}`",
        f"- Data: {args.events:,} events of {args.people:,} people over {args.days} days "
        "(page visits, purchases with plan and amount, signups, sessions; a third of the people "
        f"also have a customer id linked to their device; {loaded.links:,} identity links), "
        f"generated in {loaded.generate:.0f} s and loaded in million-row chunks in time order "
        "(as live ingest stores them) straight into "
        f"DuckDB in {loaded.duckdb:.0f} s"
        + (
            f" and into ClickHouse in {loaded.clickhouse:.0f} s (converting Arrow to the "
            "driver's Python columns included; of which merging to one part per partition with "
            f"`OPTIMIZE TABLE ... FINAL`: {loaded.clickhouse_merge:.0f} s)"
            if info is not None
            else ""
        )
        + f". Each query: {args.runs} runs; the whole period; UTC unless said.",
        "- What is timed: **DuckDB** (median, best): the wall-clock time of the whole HTTP "
        "request to one `tally serve` worker on the embedded store (authentication, compiling, "
        "running, shaping, JSON, HTTP). "
        + (
            "**ClickHouse** (median, best): the same query decoded, compiled with the ClickHouse "
            "dialect (`Runner` with the app's rules) and run in the benchmark's own process "
            "through clickhouse-driver (native protocol) on a local server, the rows shaped and "
            "encoded to the same JSON: no HTTP server, no authentication. The ClickHouse "
            "figures therefore leave out a few milliseconds the DuckDB ones include. "
            '"same answer" compares the two JSON answers value by value (numbers within a '
            "relative 1e-9)."
            if info is not None
            else "ClickHouse: not run (`--no-clickhouse`)."
        ),
        "",
        f"- Disk: the event store holds {store_bytes / args.events:.1f} bytes per event "
        f"({store_bytes / 1024**2:,.0f} MiB, the whole DuckDB file; target ≤ 40). "
        "Events committed by ingest in small group commits are compressed per row group the "
        "same way once DuckDB checkpoints.",
    ]
    if info is not None:
        per_event = info.events_compressed / args.events
        lines.append(
            f"- ClickHouse on disk: the events table holds {per_event:.1f} bytes per event "
            f"compressed ({info.events_compressed / 1024**2:,.0f} MiB "
            f"`data_compressed_bytes` in `system.parts`, {info.parts} active part(s); "
            f"{info.events_uncompressed / 1024**2:,.0f} MiB uncompressed; the whole database "
            f"{info.database_compressed / 1024**2:,.0f} MiB). The table also keeps the "
            "properties as key and value arrays next to the JSON."
        )
    lines.append(
        f"- Server memory after the queries: {rss_mb:,.0f} MiB resident (one worker; target "
        "≤ 500 MB)"
        + (
            f"; the ClickHouse server: {info.rss_mb:,.0f} MiB resident."
            if info is not None
            else "."
        )
    )
    lines += [
        "",
        "| query | DuckDB median | DuckDB best | ClickHouse median | ClickHouse best | target "
        "(DuckDB) | answer bytes | same answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ch_median = "failed" if r.ch_error else _ms(r.ch_median)
        lines.append(
            f"| {r.title} | {_ms(r.median)} | {_ms(r.best)} | {ch_median} | {_ms(r.ch_best)} | "
            f"{verdict(r.median, r.target)} | {r.size:,} | {same_text(r)} |"
        )
    problems = [r for r in results if r.ch_error or r.diffs]
    if info is not None:
        lines.append("")
        if not problems:
            lines.append("Every ClickHouse answer equals the server's (DuckDB's), value by value.")
        for r in problems:
            if r.ch_error:
                lines.append(f"- {r.title}: ClickHouse failed: `{r.ch_error}`")
                continue
            shown = "; ".join(f"`{d}`" for d in r.diffs[:5])
            more = f" (and {len(r.diffs) - 5:,} more)" if len(r.diffs) > 5 else ""
            lines.append(
                f"- {r.title}: the answers differ in {len(r.diffs):,} values: {shown}{more}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
