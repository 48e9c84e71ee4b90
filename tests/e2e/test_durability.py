"""Durability of acknowledged events and of client-id dedup, against the real server process tree.

The contract under test: a 200 from ``POST /api/v1/events`` is sent only after the events are
committed, and a client-supplied ``id`` is stored once however often it is sent. So after a SIGKILL
of the whole server (no chance to flush anything), every acknowledged id must be readable exactly
once, and resending everything must store each id once.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tally.store.duckdb_store import DuckDBStore

N_CLIENTS = 8
BATCH_SIZES = (1, 5, 1, 1, 20, 1, 50, 3)
"""Events per request, cycled: a mix of single-event and multi-event requests."""
USER_BUCKET = 200
"""Consecutive events of one client share a user; one read per user (limit 1000) gets them all."""
SEND_BEFORE_KILL = 1.5
"""Seconds the clients send at full speed before the SIGKILL."""
MAX_EVENTS_PER_CLIENT = 30_000
"""A bound on the volume to read back, far above what a client sends in the sending window."""
EVENT_NAME = "e2e.durability"
READ_LIMIT = 1000
GRACEFUL_EXITS = (0, -signal.SIGTERM)
"""After a graceful shutdown uvicorn re-raises the SIGTERM it caught, so a single-process server
ends "killed by SIGTERM"; the supervisor of several workers exits with 0."""


@dataclass
class Batch:
    events: list[dict[str, Any]]
    status: int | None = None
    """HTTP status of the reply, or None when no reply came (the request's fate is unknown)."""
    reply: dict[str, Any] | None = None
    error: str | None = None
    completed_at: float = 0.0

    @property
    def ids(self) -> list[str]:
        return [event["id"] for event in self.events]

    @property
    def acked(self) -> bool:
        """Acknowledged: a 200 whose ``accepted`` counts every event of the request."""
        return (
            self.status == 200
            and self.reply is not None
            and self.reply.get("accepted") == len(self.events)
        )


@dataclass
class Client:
    """One sender with its own connection pool and its own share of ids and users."""

    number: int
    run: str
    batches: list[Batch] = field(default_factory=list)
    sent_events: int = 0

    def next_batch(self, size: int) -> Batch:
        events = []
        for seq in range(self.sent_events, self.sent_events + size):
            events.append(
                {
                    "id": f"{self.run}-c{self.number}-{seq}",
                    "name": EVENT_NAME,
                    "user": self.user(seq),
                    "properties": {"client": self.number, "seq": seq},
                }
            )
        self.sent_events += size
        batch = Batch(events)
        # Recorded as sent before the request goes out: a request cut off by the kill may still
        # have been stored, so its ids must be known.
        self.batches.append(batch)
        return batch

    def user(self, seq: int) -> str:
        return f"{self.run}-c{self.number}-u{seq // USER_BUCKET}"


def _send(server, app, http: httpx.Client, batch: Batch) -> None:
    try:
        response = server.ingest(http, app, batch.events)
    except httpx.TransportError as exc:
        batch.error = f"{type(exc).__name__}: {exc}"
    else:
        batch.status = response.status_code
        try:
            batch.reply = response.json()
        except ValueError:
            batch.reply = {"body": response.text}
    batch.completed_at = time.monotonic()


def _run_threads(targets: list[Any], timeout: float) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} client threads did not finish within {timeout} s"


def read_all(server, app, users: set[str]) -> list[dict[str, Any]]:
    """Every stored event of these users, one complete read per user."""
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=30.0) as http:
        for user in sorted(users):
            events = server.read_events(http, app, user=user, limit=READ_LIMIT)
            assert len(events) < READ_LIMIT, f"user {user}: the read may be truncated"
            found.extend(events)
    return found


def check_exactly_once(
    found: list[dict[str, Any]], sent: dict[str, dict[str, Any]], must_have: set[str]
) -> Counter[str]:
    counts = Counter(event["id"] for event in found)
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} ids stored more than once, e.g. {twice[:10]}"
    never_sent = sorted(set(counts) - set(sent))
    assert not never_sent, f"{len(never_sent)} stored ids were never sent, e.g. {never_sent[:10]}"
    missing = sorted(must_have - set(counts))
    assert not missing, (
        f"{len(missing)} of {len(must_have)} acknowledged ids are missing, e.g. {missing[:10]}"
    )
    for event in found:
        original = sent[event["id"]]
        assert (event["name"], event["user"], event["properties"]) == (
            original["name"],
            original["user"],
            original["properties"],
        ), f"event {event['id']} came back different: {event} (sent {original})"
    return counts


def stored_in_duckdb(data_dir: Path, app_id: str) -> tuple[int, int, set[str]]:
    """(rows, distinct ids, ids) of the app, read from the DuckDB file; the server must be down."""
    conn = duckdb.connect(str(data_dir / DuckDBStore.FILE_NAME), read_only=True)
    try:
        rows = conn.execute("SELECT id FROM events WHERE app_id = ?", [app_id]).fetchall()
    finally:
        conn.close()
    ids = [row[0] for row in rows]
    return len(ids), len(set(ids)), set(ids)


@pytest.mark.parametrize("workers", [1, 2])
def test_acknowledged_events_survive_sigkill_and_retries_dedup(servers, app, data_dir, workers):
    server = servers.start(data_dir, workers=workers)
    if workers > 1:
        server.wait_children_started(workers + 1)
    run = uuid.uuid4().hex[:8]
    clients = [Client(n, run) for n in range(N_CLIENTS)]
    stop = threading.Event()
    acked_now = threading.Event()

    def send_until_stopped(client: Client) -> None:
        with httpx.Client(timeout=httpx.Timeout(15.0)) as http:
            i = 0
            while not stop.is_set() and client.sent_events < MAX_EVENTS_PER_CLIENT:
                batch = client.next_batch(BATCH_SIZES[i % len(BATCH_SIZES)])
                i += 1
                _send(server, app, http, batch)
                if batch.status == 200:
                    acked_now.set()

    threads = [threading.Thread(target=send_until_stopped, args=(c,), daemon=True) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(SEND_BEFORE_KILL)
        # Kill right after an acknowledgement, while every client still has requests in flight.
        acked_now.clear()
        assert acked_now.wait(10), f"no request was acknowledged\n{server.describe()}"
        killed_at = time.monotonic()
        server.signal_group(signal.SIGKILL)
    finally:
        stop.set()  # no new requests after the kill; those in flight end as they may
        server.kill()  # reaps the server (and kills it, if the test failed before the kill)
        for thread in threads:
            thread.join(30)
    assert not any(t.is_alive() for t in threads), "client threads did not stop"
    leftovers = server.live_members()
    assert not leftovers, f"processes survived SIGKILL of the group: {leftovers}"
    send_seconds = killed_at - started

    batches = [batch for client in clients for batch in client.batches]
    sent = {event["id"]: event for batch in batches for event in batch.events}
    assert len(sent) == sum(len(b.events) for b in batches), "the test sent an id twice"
    assert all(c.sent_events < MAX_EVENTS_PER_CLIENT for c in clients), (
        "a client hit MAX_EVENTS_PER_CLIENT before the kill; raise it"
    )
    # A request answered before the kill began came from a healthy server: it must be a full ack.
    for batch in batches:
        if batch.completed_at and batch.completed_at < killed_at:
            assert batch.status == 200 and batch.reply == {
                "accepted": len(batch.events),
                "duplicates": 0,
                "rejected": [],
            }, f"before the kill: {batch.status} {batch.reply} {batch.error}\n{server.output()}"
    acked = {i for batch in batches if batch.acked for i in batch.ids}
    unknown = set(sent) - acked
    assert acked, "nothing was acknowledged before the kill"

    # Restart on the same data (and port): every acknowledged id is there, once.
    server = servers.start(data_dir, workers=workers, port=server.port)
    users = {event["user"] for event in sent.values()}
    before_retry = check_exactly_once(read_all(server, app, users), sent, must_have=acked)
    stored_unknown = set(before_retry) & unknown

    # Every client resends everything it sent, acknowledged or not, in the same requests.
    retries: list[list[Batch]] = [[Batch(b.events) for b in c.batches] for c in clients]

    def resend(mine: list[Batch]) -> None:
        with httpx.Client(timeout=httpx.Timeout(30.0)) as http:
            for batch in mine:
                _send(server, app, http, batch)

    _run_threads([lambda mine=mine: resend(mine) for mine in retries], timeout=120)
    failures = [(b.status, b.reply, b.error) for mine in retries for b in mine if b.status != 200]
    assert not failures, f"{len(failures)} retries failed, e.g. {failures[:5]}\n{server.output()}"
    for original, retry in zip(batches, (b for mine in retries for b in mine), strict=True):
        assert retry.reply is not None
        n = len(retry.events)
        assert retry.reply["rejected"] == []
        assert retry.reply["accepted"] + retry.reply["duplicates"] == n, retry.reply
        if original.acked:
            assert retry.reply["duplicates"] == n, (
                f"a retry of an acknowledged request was not a duplicate: {retry.reply}"
            )
    retry_accepted = sum(b.reply["accepted"] for mine in retries for b in mine if b.reply)
    retry_duplicates = sum(b.reply["duplicates"] for mine in retries for b in mine if b.reply)
    assert retry_duplicates == len(before_retry), (
        f"{retry_duplicates} retries counted as duplicates, but {len(before_retry)} ids were stored"
    )
    assert retry_accepted == len(sent) - len(before_retry)

    after_retry = check_exactly_once(read_all(server, app, users), sent, must_have=set(sent))
    assert set(after_retry) == set(sent)

    # The whole app, straight from the file: nothing beyond what the per-user reads saw.
    assert server.terminate() in GRACEFUL_EXITS, server.describe()
    rows, distinct, ids = stored_in_duckdb(data_dir, app.id)
    assert (rows, distinct) == (len(sent), len(sent))
    assert ids == set(sent)

    print(
        f"\nworkers={workers}: sent {len(sent)} events in {len(batches)} requests over "
        f"{send_seconds:.1f} s; acknowledged {len(acked)}, unknown at kill {len(unknown)} "
        f"(of which stored {len(stored_unknown)})"
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_dedup_survives_graceful_restart(servers, app, data_dir, workers):
    server = servers.start(data_dir, workers=workers)
    run = uuid.uuid4().hex[:8]
    requests = [
        [
            {"id": f"{run}-r{r}-{k}", "name": EVENT_NAME, "user": f"{run}-u", "properties": {}}
            for k in range(size)
        ]
        for r, size in enumerate((1, 10, 100))
    ]
    count = sum(len(events) for events in requests)
    with httpx.Client(timeout=30.0) as http:
        for events in requests:
            response = server.ingest(http, app, events)
            assert response.status_code == 200, response.text
            assert response.json() == {"accepted": len(events), "duplicates": 0, "rejected": []}

    assert server.terminate() in GRACEFUL_EXITS, f"graceful stop failed\n{server.describe()}"
    leftovers = server.wait_gone(timeout=5)
    assert not leftovers, f"processes left after a graceful stop: {leftovers}"

    server = servers.start(data_dir, workers=workers, port=server.port)
    duplicates = 0
    with httpx.Client(timeout=30.0) as http:
        for events in requests:
            response = server.ingest(http, app, events)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body == {"accepted": 0, "duplicates": len(events), "rejected": []}
            duplicates += body["duplicates"]
        stored = server.read_events(http, app, user=f"{run}-u", limit=READ_LIMIT)
    assert duplicates == count
    ids = Counter(event["id"] for event in stored)
    assert ids == Counter({event["id"]: 1 for events in requests for event in events})


def test_sigkill_of_supervisor_leaves_no_orphans(servers, app, data_dir):
    """Children of a SIGKILLed supervisor must exit, freeing the port and the DuckDB file."""
    workers = 2
    server = servers.start(data_dir, workers=workers)
    children = server.wait_children_started(workers + 1)
    with httpx.Client(timeout=30.0) as http:
        response = server.ingest(http, app, [{"id": "before-kill", "name": EVENT_NAME}])
        assert response.status_code == 200, response.text

    server.kill_supervisor_only()
    orphans = server.wait_gone(timeout=5)
    assert not orphans, (
        f"5 s after SIGKILL of the supervisor (pid {server.pid}; its started children were "
        f"{children}), these processes of its group are still alive: {orphans}\n"
        f"{server.output()}"
    )

    # A new server on the same data folder and the same port starts and takes writes.
    server = servers.start(data_dir, workers=workers, port=server.port)
    with httpx.Client(timeout=30.0) as http:
        response = server.ingest(http, app, [{"id": "after-kill", "name": EVENT_NAME}])
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        response = server.ingest(http, app, [{"id": "before-kill", "name": EVENT_NAME}])
        assert response.json() == {"accepted": 0, "duplicates": 1, "rejected": []}


@pytest.mark.parametrize("children_seen", [1, 2], ids=["store-starting", "worker-starting"])
def test_supervisor_killed_while_children_start_leaves_no_orphans(
    servers, app, data_dir, children_seen
):
    """A child still importing when the supervisor dies must exit too, not linger under init."""
    server = servers.start(data_dir, workers=2, wait=False)
    deadline = time.monotonic() + 30
    while len(server.children()) < children_seen:
        assert server.alive(), server.output()
        assert time.monotonic() < deadline, f"children never appeared\n{server.output()}"
        time.sleep(0.005)
    time.sleep(0.05)  # inside the child's start-up: imports, before it serves
    server.kill_supervisor_only()
    orphans = server.wait_gone(timeout=5)
    assert not orphans, f"still alive after the supervisor died: {orphans}\n{server.output()}"

    server = servers.start(data_dir, workers=2, port=server.port)
    with httpx.Client(timeout=30.0) as http:
        response = server.ingest(http, app, [{"id": "after-race", "name": EVENT_NAME}])
        assert response.status_code == 200, response.text


def test_sigterm_to_the_whole_group_drains_cleanly(servers, app, data_dir):
    """A service manager stopping every process at once (systemd's default): in-flight requests
    are answered or refused, every acknowledged event is stored, and nothing crashes."""
    server = servers.start(data_dir, workers=2)
    run = uuid.uuid4().hex[:8]
    clients = [Client(number=n, run=run) for n in range(4)]
    stop = threading.Event()

    def sender(client: Client) -> None:
        with httpx.Client(timeout=30.0) as http:
            while not stop.is_set():
                _send(server, app, http, client.next_batch(5))

    threads = [threading.Thread(target=sender, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.signal_group(signal.SIGTERM)
    leftovers = server.wait_gone(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not leftovers, f"processes left after SIGTERM: {leftovers}"
    output = server.output()
    assert "Traceback" not in output, output

    batches = [b for c in clients for b in c.batches]
    acknowledged = {e["id"] for b in batches if b.acked for e in b.events}
    assert acknowledged, "no request was acknowledged before the stop"
    for batch in batches:  # a request either succeeded, was refused with 503, or was cut off
        assert batch.status in (None, 200, 503), (batch.status, batch.reply)
    _, distinct, stored = stored_in_duckdb(data_dir, app.id)
    assert acknowledged <= stored
    sent = {e["id"] for b in batches for e in b.events}
    assert stored <= sent and distinct == len(stored)
