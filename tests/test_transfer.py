"""Data in and out: exports in every format (embedded, through the store process, over HTTP, from
the CLI), imports through the pipeline (re-import is a no-op, bad rows become failed events), a
person's events and erasure across linked ids, and retention."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tally.catalog import App, Catalog, NewApp
from tally.cli import main
from tally.http.services import Services
from tally.ids import uuid7
from tally.model import Event
from tally.sink import AppendBatch
from tally.store.base import EXPORT_COLUMNS, ExportQuery
from tally.store.embedded import EmbeddedStore
from tally.store.query import EventQuery, FailedQuery
from tally.store.remote import RemoteStore
from tally.store.rows import event_rows
from tally.store.server import StoreServer
from tally.transfer.export import export_bytes, export_chunks
from tally.transfer.formats import LIST_COLUMNS
from tally.transfer.importer import Importer, open_rows
from tally.transfer.retention import RetentionTask, apply_retention

NOW = datetime.now(UTC).replace(microsecond=0)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


SEED: list[dict[str, Any]] = [
    {
        "id": "order-1",
        "name": "item purchase",
        "time": iso(NOW - timedelta(hours=3)),
        "user": "cust-1",
        "device": "d-1",
        "session": "s-1",
        "label": "Bought a watch",
        "sum": 120.5,
        "properties": {"item": "rolex", "qty": 2, "tags": ["a", "b"], "nested": {"x": 1}},
    },
    {  # no id: the server makes one
        "name": "page view",
        "time": iso(NOW - timedelta(hours=2)),
        "device": "d-1",
        "dur": 3.5,
        "label": 'two\nlines, "quoted"',
        "properties": {"path": "/a,b"},
    },
    {"id": "e-3", "name": "signup", "time": iso(NOW - timedelta(hours=1)), "user": 42, "count": 3},
    {
        "id": "e-4",
        "name": "other person",
        "time": iso(NOW - timedelta(minutes=30)),
        "device": "d-9",
        "properties": {"ünïcode": "✓"},
    },
]


async def send(client: httpx.AsyncClient, app: App, events: list[dict[str, Any]]) -> dict:
    reply = await client.post(
        "/api/v1/events",
        json={"events": events},
        headers={"x-tally-key": app.app_key, "user-agent": UA},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def auth(new_app: NewApp) -> tuple[str, str]:
    return new_app.app.api_key, new_app.api_secret


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def canonical(row: dict[str, Any]) -> dict[str, Any]:
    """An event as comparable values, from a stored row or any export format's row."""
    out: dict[str, Any] = {}
    for name in EXPORT_COLUMNS:
        value = row.get(name)
        if value == "":
            value = None
        if name in ("time", "received_at"):
            value = _time(value)
        elif name == "properties":
            value = json.loads(value) if isinstance(value, str) else (value or {})
        elif name in LIST_COLUMNS:
            value = json.loads(value) if isinstance(value, str) else (value or [])
        elif name == "count":
            value = int(value)
        elif name in ("sum", "dur") and value is not None:
            value = float(value)
        elif name == "internal":
            value = value in (True, "true")
        out[name] = value
    return out


def parse(data: bytes, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines() if line]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    return pq.read_table(io.BytesIO(data)).to_pylist()


async def stored(store: Any, app_id: str) -> list[dict[str, Any]]:
    """The app's stored events, oldest first, as comparable values."""
    rows = await store.fetch_events(EventQuery(app_id=app_id, limit=1000))
    rows.sort(key=lambda r: (r["time"], r["received_at"], r["id"]))
    return [canonical(r) for r in rows]


async def export(store: Any, query: ExportQuery, fmt: str, batch_rows: int = 2) -> bytes:
    return b"".join([chunk async for chunk in export_bytes(store, query, fmt, batch_rows)])


def ev(name: str, time: datetime, **fields: Any) -> Event:
    """An event as the pipeline leaves it (appended straight to the store)."""
    return Event(
        index=0,
        protocol="native",
        name=name,
        id=fields.pop("id", None) or uuid7(),
        time=time,
        received_at=NOW,
        count=1,
        **fields,
    )


# exports


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_export_in_each_format_matches_the_stored_events(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, fmt: str
) -> None:
    app = new_app.app
    assert (await send(client, app, SEED))["accepted"] == 4
    data = await export(services.store, ExportQuery(app_id=app.id), fmt)
    rows = parse(data, fmt)
    if fmt != "parquet":  # Parquet's columns are typed; the text formats name every column
        assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [canonical(r) for r in rows] == await stored(services.store, app.id)
    first = canonical(rows[0])
    assert first["id"] == "order-1" and first["user_id"] == "cust-1"
    assert first["properties"] == SEED[0]["properties"]
    assert first["browser"] == "Chrome" and first["ip"] == "198.51.100.7"


async def test_export_time_range_and_chunks(services: Services, new_app: NewApp) -> None:
    app = new_app.app
    times = [NOW - timedelta(days=d) for d in (3, 2, 1, 0)]
    await services.store.append(
        AppendBatch(events=event_rows(app.id, [ev(f"e{i}", t) for i, t in enumerate(times)]))
    )
    query = ExportQuery(app_id=app.id, since=times[1], until=times[3])
    chunks = [c async for c in export_chunks(services.store, query, "jsonl", batch_rows=1)]
    assert [rows for _, rows in chunks] == [1, 1]  # one chunk a batch
    assert [r["name"] for r in parse(b"".join(c for c, _ in chunks), "jsonl")] == ["e1", "e2"]
    assert await services.store.count_events(query) == 2
    # Nothing to export: an empty JSON lines file, a CSV header, a Parquet file with its schema.
    empty = ExportQuery(app_id="f" * 24)
    assert await export(services.store, empty, "jsonl") == b""
    assert (await export(services.store, empty, "csv")).decode().startswith('"id","name"')
    table = pq.read_table(io.BytesIO(await export(services.store, empty, "parquet")))
    assert table.num_rows == 0 and table.column_names == list(EXPORT_COLUMNS)


async def test_http_export_streams_a_download(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    app = new_app.app
    await send(client, app, SEED)
    url = f"/api/v1/apps/{app.id}/export"
    everything = await stored(services.store, app.id)
    for fmt, media in (
        ("csv", "text/csv"),
        ("jsonl", "application/x-ndjson"),
        ("parquet", "application/vnd.apache.parquet"),
    ):
        async with client.stream("GET", url, params={"format": fmt}, auth=auth(new_app)) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith(media)
            assert f'filename="tally-{app.id}-events.{fmt}"' in reply.headers["content-disposition"]
            body = b"".join([chunk async for chunk in reply.aiter_bytes()])
        assert [canonical(r) for r in parse(body, fmt)] == everything

    since = iso(NOW - timedelta(minutes=90))
    reply = await client.get(url, params={"from": since}, auth=auth(new_app))
    assert [r["id"] for r in parse(reply.content, "jsonl")] == ["e-3", "e-4"]
    until = (NOW - timedelta(minutes=90)).date().isoformat()  # a date: its midnight, UTC
    reply = await client.get(url, params={"to": until}, auth=auth(new_app))
    assert all(_time(r["time"]) < NOW for r in parse(reply.content, "jsonl"))

    for params in ({"format": "xml"}, {"from": "yesterday"}, {"from": iso(NOW), "to": since}):
        reply = await client.get(url, params=params, auth=auth(new_app))
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_parameter"
    assert (await client.get(url)).status_code == 401
    other = services.catalog.create_app("Other")
    reply = await client.get(url, auth=(other.app.api_key, other.api_secret))
    assert reply.status_code == 403


@contextlib.asynccontextmanager
async def store_process(data_dir: Path) -> AsyncIterator[tuple[EmbeddedStore, RemoteStore]]:
    """A store process's server in this event loop, and a worker's client of it."""
    folder = Path(tempfile.mkdtemp(prefix="tally"))  # Unix socket paths are short
    store = EmbeddedStore(data_dir)
    server = StoreServer(store, folder / "store.sock")
    await server.start()
    remote = RemoteStore(folder / "store.sock")
    try:
        yield store, remote
    finally:
        await remote.close()
        await server.close(drain_timeout=2)
        shutil.rmtree(folder, ignore_errors=True)


async def test_the_store_process_pages_exports_and_deletes(data_dir: Path) -> None:
    app_id = "b" * 24
    async with store_process(data_dir) as (store, remote):
        # Ties on time page correctly: the cursor is (time, received_at, id).
        events = [ev(f"e{i}", NOW - timedelta(days=i // 2), device_id="d-1") for i in range(7)]
        events.append(ev("linked", NOW, device_id="d-1", user_id="cust-1"))
        await remote.append(AppendBatch(events=event_rows(app_id, events)))
        query = ExportQuery(app_id=app_id)
        remote.export_page_rows = 3
        for fmt in ("jsonl", "csv", "parquet"):
            here = await export(store, query, fmt, batch_rows=3)
            there = await export(remote, query, fmt, batch_rows=3)
            assert parse(there, fmt) == parse(here, fmt)
        assert len(parse(there, "parquet")) == 8
        assert await remote.count_events(ExportQuery(app_id=app_id, user="cust-1")) == 8
        found = await remote.stored_ids(
            app_id, ["e0", events[1].id or "", "nope"], NOW - timedelta(days=9), NOW
        )
        assert found == {events[1].id}

        expired = await remote.delete_expired(app_id, NOW - timedelta(days=2))
        assert (expired.kind, expired.events_deleted) == ("retention", 1)
        assert expired.cutoff == NOW - timedelta(days=2)
        forgotten = await remote.delete_person(app_id, "cust-1")
        assert forgotten.ids == ["cust-1", "d-1"] and forgotten.events_deleted == 7
        assert forgotten.links_deleted == 1
        assert await remote.count_events(query) == 0
        assert [d.id for d in store.loaded().deletions(app_id)] == [forgotten.id, expired.id]


# imports


async def import_bytes(services: Services, app: App, data: bytes, fmt: str) -> Any:
    folder = Path(tempfile.mkdtemp(prefix="tally"))
    path = folder / f"events.{fmt}"
    path.write_bytes(data)
    try:
        with open(path, "rb") as handle:
            rows = open_rows(str(path), fmt, handle, lambda _: None)
            return await Importer(services, app).run(rows, text=fmt == "csv")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_an_export_imported_into_a_fresh_app_gives_the_same_events(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, fmt: str
) -> None:
    source = new_app.app
    await send(client, source, SEED)
    data = await export(services.store, ExportQuery(app_id=source.id), fmt)
    fresh = services.catalog.create_app("Fresh").app

    summary = await import_bytes(services, fresh, data, fmt)
    assert (summary.rows, summary.imported, summary.duplicates, summary.rejected) == (4, 4, 0, 0)
    assert await stored(services.store, fresh.id) == await stored(services.store, source.id)
    # The person's links came along: the device's events are the customer's.
    person = await services.store.fetch_events(EventQuery(app_id=fresh.id, user="cust-1"))
    assert sorted(r["name"] for r in person) == ["item purchase", "page view"]
    # The names were defined on first sight, as by the ingest API.
    assert services.catalog.definitions.get(fresh.id, "item purchase") is not None

    again = await import_bytes(services, fresh, data, fmt)
    assert (again.imported, again.duplicates, again.rejected) == (0, 4, 0)
    # Beyond the dedup window (the index forgot the ids), the stored ids still say duplicate.
    services.store.loaded().conn.execute("DELETE FROM event_ids")  # type: ignore[attr-defined]
    later = await import_bytes(services, fresh, data, fmt)
    assert (later.imported, later.duplicates) == (0, 4)
    assert len(await stored(services.store, fresh.id)) == 4


async def test_native_events_and_invalid_rows(services: Services, new_app: NewApp) -> None:
    app = new_app.app
    lines = [
        json.dumps({"id": "n1", "name": "login", "time": iso(NOW), "user": "u1", "device": "d1"}),
        json.dumps({"name": "view", "device": "d1", "properties": {"page": "/"}}),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({"id": "n2", "time": iso(NOW)}),
        json.dumps({"id": "n3", "name": "old", "time": "1999-12-31T00:00:00Z"}),
        json.dumps({"id": "n4", "name": "bad count", "count": 0}),
        json.dumps({"id": "n5", "name": "bad props", "properties": [1]}),
    ]
    summary = await import_bytes(services, app, "\n".join(lines).encode(), "jsonl")
    assert (summary.rows, summary.imported, summary.rejected) == (8, 2, 6)
    assert summary.reasons == {
        "invalid_event": 3,
        "invalid_measure": 1,
        "invalid_time": 1,
        "missing_name": 1,
    }
    assert [(e.row, e.code) for e in summary.examples] == [
        (4, "invalid_event"),
        (5, "invalid_event"),
        (6, "missing_name"),
        (7, "invalid_time"),
        (8, "invalid_measure"),
        (9, "invalid_event"),
    ]
    assert "not valid JSON" in summary.examples[0].message
    assert "$.properties" in summary.examples[-1].message

    failed = await services.store.fetch_failed(FailedQuery(app_id=app.id, with_payload=True))
    assert len(failed) == 6 and {f.protocol for f in failed} == {"import"}
    by_reason = {f.reason: f for f in failed}
    assert json.loads(by_reason["invalid_time"].payload or b"")["id"] == "n3"
    assert by_reason["invalid_time"].replayable and by_reason["invalid_time"].event_index == 6
    rows = await services.store.fetch_events(EventQuery(app_id=app.id, user="u1"))
    assert sorted(r["name"] for r in rows) == ["login", "view"]  # linked by d1
    assert {r["protocol"] for r in rows} == {"import"}

    table = "name,count,time\nok,2,2026-01-01T00:00:00Z\nbad,many,\n"
    summary = await import_bytes(services, app, table.encode(), "csv")
    assert (summary.imported, summary.rejected) == (1, 1)
    assert summary.examples[0].row == 2 and "$.count" in summary.examples[0].message


async def test_import_follows_the_apps_rules(services: Services, new_app: NewApp) -> None:
    app = services.catalog.update_settings(new_app.app.id, denylist=["debug.*"], strict=True)
    lines = [{"id": "a", "name": "debug.trace"}, {"id": "b", "name": "undefined.event"}]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    summary = await import_bytes(services, app, data, "jsonl")
    assert (summary.imported, summary.discarded, summary.reasons) == (
        0,
        1,
        {"undefined_event": 1},
    )


# a person's events and erasure


async def test_a_persons_events_and_erasure_across_linked_ids(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    app = new_app.app
    await send(client, app, SEED)
    future = ev("scheduled", NOW + timedelta(days=30), user_id="cust-1")
    await services.store.append(AppendBatch(events=event_rows(app.id, [future])))
    base = f"/api/v1/apps/{app.id}/users"
    mine = {"order-1", future.id}

    for who in ("cust-1", "d-1"):
        reply = await client.get(f"{base}/{who}/events", auth=auth(new_app))
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        rows = parse(reply.content, "jsonl")
        assert {r["id"] for r in rows if r["name"] != "page view"} == mine
        assert [r["name"] for r in rows] == ["item purchase", "page view", "scheduled"]
    reply = await client.get(f"{base}/cust-1/events?format=csv", auth=auth(new_app))
    assert len(parse(reply.content, "csv")) == 3

    assert (await client.delete(f"{base}/d-1")).status_code == 401
    reply = await client.delete(f"{base}/d-1", auth=auth(new_app))
    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert record["kind"] == "person" and record["person"] == "d-1"
    assert record["ids"] == ["cust-1", "d-1"]
    assert (record["events_deleted"], record["links_deleted"]) == (3, 1)
    assert await services.store.fetch_events(EventQuery(app_id=app.id, user="cust-1")) == []
    left = await services.store.fetch_events(EventQuery(app_id=app.id))
    assert sorted(r["id"] for r in left) == ["e-3", "e-4"]  # user 42 and d-9
    db = services.store.loaded()  # type: ignore[attr-defined]
    assert db.conn.execute("SELECT count(*) FROM identity_links").fetchone() == (0,)
    (kept,) = db.deletions(app.id)
    assert kept.id == record["id"] and kept.events_deleted == 3
    assert _time(record["requested_at"]) == kept.requested_at

    reply = await client.get(f"{base}/cust-1/events", auth=auth(new_app))
    assert reply.status_code == 200 and reply.content == b""


# retention


async def test_retention_deletes_only_old_events(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    app, catalog = new_app.app, services.catalog
    other = catalog.create_app("Keeps everything").app
    times = {"old": 10, "recent": 2, "now": 0, "future": -3}
    for target in (app, other):
        events = [ev(name, NOW - timedelta(days=days)) for name, days in times.items()]
        await services.store.append(AppendBatch(events=event_rows(target.id, events)))

    with pytest.raises(ValueError, match="retention_days"):
        catalog.update_settings(app.id, retention_days=0)
    url = f"/api/v1/apps/{app.id}/settings"
    reply = await client.patch(url, json={"retention_days": 0}, auth=auth(new_app))
    assert reply.status_code == 400
    reply = await client.patch(url, json={"retention_days": 5}, auth=auth(new_app))
    assert reply.status_code == 200 and reply.json()["settings"]["retention_days"] == 5

    (done,) = await apply_retention(catalog, services.store, now=NOW)
    assert (done.app_id, done.events_deleted) == (app.id, 1)
    assert done.cutoff == NOW - timedelta(days=5)
    names = {r["name"] for r in await services.store.fetch_events(EventQuery(app_id=app.id))}
    assert names == {"recent", "now", "future"}
    kept = await services.store.fetch_events(EventQuery(app_id=other.id))
    assert len(kept) == 4

    (again,) = await apply_retention(catalog, services.store, now=NOW)
    assert again.events_deleted == 0
    db = services.store.loaded()  # type: ignore[attr-defined]
    assert [d.kind for d in db.deletions(app.id)] == ["retention"]  # a run that found nothing

    catalog.update_settings(app.id, retention_days=1)
    task = RetentionTask(catalog, services.store, interval=3600, first_delay=0)
    task.start()
    for _ in range(100):
        if len(db.deletions(app.id)) == 2:
            break
        await asyncio.sleep(0.02)
    await task.stop()
    names = {r["name"] for r in await services.store.fetch_events(EventQuery(app_id=app.id))}
    assert names == {"now", "future"}


# the command line


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def create_app(data: str, name: str) -> dict[str, Any]:
    result = cli("apps", "create", name, "--data", data, "--json")
    assert result.exit_code == 0
    return json.loads(result.stdout)


def native_lines() -> str:
    return "\n".join(json.dumps(e) for e in SEED) + "\n"


@contextlib.contextmanager
def running_store_process(data: Path) -> Iterator[None]:
    """What a server with several workers looks like to the CLI: a store process on
    DATA/run/store.sock (here a thread with its own event loop)."""
    (data / "run").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[StoreServer] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            server = StoreServer(EmbeddedStore(data), data / "run" / "store.sock")
            await server.start()
            servers.append(server)

        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(servers[0].close(drain_timeout=2), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("through_server", [False, True])
def test_cli_import_export_round_trip(through_server: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tally"))  # short, for the store socket
    try:
        data = str(folder / "d")
        source, fresh = create_app(data, "Shop"), create_app(data, "Fresh")
        (folder / "native.jsonl").write_text(native_lines())
        context = running_store_process(Path(data)) if through_server else contextlib.nullcontext()
        with context:
            result = cli(
                "import", "--app", source["id"], str(folder / "native.jsonl"), "--data", data
            )
            assert result.exit_code == 0, result.output
            assert "imported 4 events into 'Shop' from 4 rows: 0 duplicates" in result.stdout

            exported: dict[str, list[dict[str, Any]]] = {}
            for fmt in ("jsonl", "csv", "parquet"):
                out = folder / f"export.{fmt}"
                result = cli("export", "--app", source["app_key"], "-o", str(out), "--data", data)
                assert result.exit_code == 0, result.output
                assert f"exported 4 events of 'Shop' as {fmt}" in result.stderr
                exported[fmt] = [canonical(r) for r in parse(out.read_bytes(), fmt)]
            assert exported["jsonl"] == exported["csv"] == exported["parquet"]
            assert [r["id"] for r in exported["jsonl"]][:1] == ["order-1"]

            result = cli("export", "--app", source["id"], "--format", "csv", "--data", data)
            assert [canonical(r) for r in parse(result.stdout_bytes, "csv")] == exported["csv"]
            result = cli(
                "export", "--app", source["id"], "--user", "d-1", "--to", iso(NOW), "--data", data
            )
            assert [r["id"] for r in parse(result.stdout_bytes, "jsonl")][:1] == ["order-1"]
            assert len(parse(result.stdout_bytes, "jsonl")) == 2

            for fmt in ("csv", "parquet"):
                path = str(folder / f"export.{fmt}")
                result = cli("import", "--app", fresh["id"], path, "--json", "--data", data)
                summary = json.loads(result.stdout)
                assert (summary["imported"], summary["duplicates"]) == (
                    (4, 0) if fmt == "csv" else (0, 4)
                )
            result = cli("export", "--app", fresh["id"], "--format", "jsonl", "--data", data)
            assert [canonical(r) for r in parse(result.stdout_bytes, "jsonl")] == exported["jsonl"]

            (folder / "bad.jsonl").write_text('{"id": "x"}\n{"name": "fine"}\n')
            result = cli("import", "--app", fresh["id"], str(folder / "bad.jsonl"), "--data", data)
            assert "imported 1 events" in result.stdout and "1 rejected" in result.stdout
            assert "row 1: missing_name" in result.stdout

            result = cli("forget", "--app", source["id"], "cust-1", "--data", data, input="n\n")
            assert result.exit_code == 1  # not confirmed
            result = cli(
                "forget",
                "--app",
                source["id"],
                "cust-1",
                "--yes",
                "--json",
                "--data",
                data,
            )
            record = json.loads(result.stdout)
            assert (record["ids"], record["events_deleted"]) == (["cust-1", "d-1"], 2)

            result = cli("retention", "--app", source["id"], "--data", data)
            assert "keeps its events forever" in result.stdout
            catalog = Catalog(f"sqlite:///{Path(data) / 'catalog.sqlite'}")
            catalog.update_settings(source["id"], retention_days=1)
            catalog.close()
            old = {"id": "ancient", "name": "old", "time": iso(NOW - timedelta(days=3))}
            (folder / "old.jsonl").write_text(json.dumps(old) + "\n")
            result = cli("import", "--app", source["id"], str(folder / "old.jsonl"), "--data", data)
            assert "imported 1 events" in result.stdout
            result = cli("retention", "--data", data)
            assert "'Shop': deleted 1 events before" in result.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_cli_refuses_bad_arguments(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    app = create_app(data, "Shop")
    result = CliRunner().invoke(
        main, ["export", "--app", app["id"], "--from", "soon", "--data", data]
    )
    assert result.exit_code == 2 and "soon" in result.output
    (tmp_path / "events.txt").write_text("{}\n")
    result = CliRunner().invoke(
        main, ["import", "--app", app["id"], str(tmp_path / "events.txt"), "--data", data]
    )
    assert result.exit_code == 2 and "--format" in result.output
    result = CliRunner().invoke(main, ["export", "--app", "missing", "--data", data])
    assert result.exit_code == 1 and "no app" in result.output
