"""The Python SDK (``tally.client``) without a server process: its retry policy, queue and batches
as functions; the sync client against a scripted HTTP transport (failures on demand); the async
client against the real app in-process. Real servers, restarts and the exit flush:
tests/e2e/test_client_server.py."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from tally.catalog import NewApp
from tally.client import (
    CLOSE_TIMEOUT,
    NETWORK_ERROR,
    AsyncTally,
    Failure,
    Tally,
    TallyError,
    backoff_delay,
    parse_retry_after,
)
from tally.client._core import (
    DEFAULT_MAX_BATCH_BYTES,
    MAX_RETRY_AFTER,
    SERVER_MAX_BODY_BYTES,
    SERVER_MAX_EVENT_BYTES,
    SERVER_MAX_EVENTS_PER_REQUEST,
    Buffer,
    encode_event,
    envelope,
)
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits

HOST = "http://tally.test"
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "flush_at_exit": False}
"""Quick retries, and no exit hook left behind by a test."""

Reply = Callable[[httpx.Request, list[dict[str, Any]]], httpx.Response]


def accept(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"accepted": len(events), "duplicates": 0, "rejected": []})


def status(code: int, error: str, headers: dict[str, str] | None = None) -> Reply:
    def reply(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
        body = {"error": {"code": error, "message": f"{error}!"}}
        return httpx.Response(code, json=body, headers=headers)

    return reply


def down(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


class FakeServer:
    """A scripted ``POST /api/v1/events``: each request takes the next reply of ``script`` (then
    ``default``), and is recorded with its time."""

    def __init__(self, *script: Reply, default: Reply = accept) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.times: list[float] = []
        self.gate = threading.Event()
        self.gate.set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/events"
        self.gate.wait(10)
        body = json.loads(request.content)
        self.requests.append(body)
        self.headers.append(request.headers)
        self.times.append(time.monotonic())
        reply = self.script.pop(0) if self.script else self.default
        return reply(request, body["events"])

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def ids(self) -> list[list[str]]:
        return [[event["id"] for event in body["events"]] for body in self.requests]

    def sizes(self) -> list[int]:
        return [len(body["events"]) for body in self.requests]


def client(server: FakeServer, **options: Any) -> Tally:
    options = {**FAST, "app_key": "k" * 40, **options}
    return Tally(HOST, transport=server.transport, **options)


# The retry policy


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    low = [backoff_delay(n, base=0.5, cap=30, jitter=0.0) for n in range(8)]
    high = [backoff_delay(n, base=0.5, cap=30, jitter=1.0) for n in range(8)]
    assert high == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert low == [h / 2 for h in high]
    bounds = enumerate(zip(low, high, strict=True))
    assert all(lo <= backoff_delay(n) <= hi for n, (lo, hi) in bounds)
    assert backoff_delay(10_000, base=0.5, cap=30, jitter=1.0) == 30


def test_backoff_honours_retry_after() -> None:
    # Never sooner than the server asks...
    assert backoff_delay(0, base=0.5, jitter=1.0, retry_after=5) == 5
    # ...nor sooner than the backoff: a server that keeps saying 1 s is asked less and less.
    assert backoff_delay(5, base=0.5, cap=30, jitter=1.0, retry_after=1) == 16
    assert backoff_delay(0, jitter=1.0, retry_after=10**9) == MAX_RETRY_AFTER


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 120 ", now) == 120.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_the_defaults_fit_the_servers_limits() -> None:
    limits = Limits()
    assert limits.max_body_bytes == SERVER_MAX_BODY_BYTES
    assert limits.max_events_per_request == SERVER_MAX_EVENTS_PER_REQUEST
    assert limits.max_event_bytes == SERVER_MAX_EVENT_BYTES
    assert limits.max_body_bytes > DEFAULT_MAX_BATCH_BYTES


# Events, the queue and batches


def test_an_event_gets_an_id_and_a_time_and_leaves_out_what_is_not_set() -> None:
    event_id, data = encode_event(
        "item purchase",
        user="c-42",
        sum=120.5,
        properties={"when": datetime(2026, 3, 1, tzinfo=UTC), "sku": uuid.UUID(int=1)},
    )
    event = json.loads(data)
    assert uuid.UUID(event_id).version == 7 and event["id"] == event_id
    assert event["time"].endswith("Z")
    assert abs(datetime.fromisoformat(event["time"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert {k: v for k, v in event.items() if k not in ("id", "time")} == {
        "name": "item purchase",
        "user": "c-42",
        "sum": 120.5,
        "properties": {"when": "2026-03-01T00:00:00+00:00", "sku": str(uuid.UUID(int=1))},
    }
    _, data = encode_event("x", event_id="order-1", time=datetime(2026, 3, 1, 10, tzinfo=UTC))
    assert json.loads(data) == {"id": "order-1", "name": "x", "time": "2026-03-01T10:00:00.000Z"}


def test_an_event_the_server_would_never_take_raises_at_the_call() -> None:
    with pytest.raises(ValueError, match="name"):
        encode_event("  ")
    with pytest.raises(ValueError, match="NaN"):
        encode_event("x", sum=float("nan"))
    with pytest.raises(TypeError, match="object"):
        encode_event("x", properties={"o": object()})
    with pytest.raises(ValueError, match="32768 bytes"):
        encode_event("x", properties={"p": "a" * 40_000})


def test_batches_are_cut_by_count_and_by_size() -> None:
    buffer = Buffer(max_queue=100, batch_size=3, max_batch_bytes=1000)
    items = [encode_event("e", properties={"i": i})[1] for i in range(7)]
    for item in items:
        assert buffer.put(item)
    assert buffer.batch_ready()
    assert [buffer.take(), buffer.take(), buffer.take(), buffer.take()] == [
        items[0:3],
        items[3:6],
        items[6:7],
        [],
    ]
    big = [encode_event("e", properties={"p": "x" * 300})[1] for _ in range(5)]
    buffer = Buffer(max_queue=100, batch_size=100, max_batch_bytes=1000)
    for item in big:
        buffer.put(item)
    batches = [buffer.take() for _ in range(3)]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(len(envelope(b)) <= 1000 for b in batches)


def test_a_full_queue_drops_the_newest_and_warns_once_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = Buffer(max_queue=2, batch_size=10, max_batch_bytes=10_000)
    with caplog.at_level(logging.WARNING, logger="tally.client"):
        assert [buffer.put(b"1"), buffer.put(b"2"), buffer.put(b"3"), buffer.put(b"4")] == [
            True,
            True,
            False,
            False,
        ]
        assert list(buffer.items) == [b"1", b"2"] and buffer.dropped == 2
        buffer.take()
        assert buffer.put(b"5")  # the burst ends
        buffer.put(b"6")
        assert not buffer.put(b"7")  # a new burst: a new warning
    full = [r for r in caplog.records if "queue is full" in r.message]
    assert len(full) == 2 and buffer.dropped == 3
    assert any("2 were dropped" in r.message for r in caplog.records)


# The sync client against a scripted server


def test_events_are_sent_in_batches_in_order_with_the_key() -> None:
    server = FakeServer()
    tally = client(server, batch_size=10, flush_interval=60)
    ids = [tally.track("e", user="u", properties={"i": i}) for i in range(25)]
    assert tally.flush(5)
    assert server.sizes() == [10, 10, 5]
    assert [i for batch in server.ids() for i in batch] == ids
    assert all(h["x-tally-key"] == "k" * 40 for h in server.headers)
    assert all(h["user-agent"].startswith("tally-python/") for h in server.headers)
    assert all("sent_at" in body for body in server.requests)
    assert (tally.sent, tally.failed, tally.dropped, tally.pending) == (25, 0, 0, 0)
    tally.close()


def test_server_credentials_use_http_basic() -> None:
    server = FakeServer()
    tally = client(server, app_key=None, api_key="ak", api_secret="secret")
    tally.track("e")
    assert tally.flush(5)
    assert server.headers[0]["authorization"] == httpx.BasicAuth("ak", "secret")._auth_header
    assert "x-tally-key" not in server.headers[0]
    tally.close()


def test_a_partial_batch_goes_after_the_flush_interval() -> None:
    server = FakeServer()
    tally = client(server, flush_interval=0.1)
    tally.track("e")
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.sizes() == [1]
    tally.close()


def test_network_errors_and_5xx_are_retried_with_the_same_ids() -> None:
    server = FakeServer(
        down,
        status(503, "store_unavailable", {"Retry-After": "0"}),
        status(500, "internal_error"),
    )
    failures: list[Failure] = []
    tally = client(server, on_error=failures.append)
    ids = [tally.track("e") for _ in range(3)]
    assert tally.flush(5)
    assert server.ids() == [ids, ids, ids, ids]  # one batch, the same ids each time
    assert failures == [] and tally.sent == 3
    tally.close()


def test_429_waits_for_retry_after() -> None:
    server = FakeServer(status(429, "slow_down", {"Retry-After": "1"}))
    tally = client(server)
    tally.track("e")
    assert tally.flush(5)
    assert len(server.times) == 2
    assert server.times[1] - server.times[0] >= 0.95
    tally.close()


def test_400_and_401_are_not_retried_and_go_to_on_error() -> None:
    def all_rejected(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
        rejected = [{"index": i, "code": "invalid_time", "message": "bad"} for i in range(2)]
        return httpx.Response(400, json={"accepted": 0, "duplicates": 0, "rejected": rejected})

    server = FakeServer(all_rejected, status(401, "unknown_app_key"))
    failures: list[Failure] = []
    tally = client(server, on_error=failures.append, batch_size=2, flush_interval=60)
    first = [tally.track("e", time="1999-01-01") for _ in range(2)]
    assert tally.flush(5)
    second = [tally.track("e") for _ in range(2)]
    assert tally.flush(5)
    assert server.ids() == [first, second]  # one request each: no retries
    assert [(f.code, f.status, [e["id"] for e in f.events]) for f in failures] == [
        ("invalid_time", 400, first[:1]),
        ("invalid_time", 400, first[1:]),
        ("unknown_app_key", 401, second),
    ]
    assert failures[2].message == "unknown_app_key!"
    assert (tally.sent, tally.failed) == (0, 4)
    tally.close()


def test_only_the_rejected_events_of_a_batch_fail() -> None:
    def one_rejected(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
        rejected = [{"index": 1, "code": "too_many_properties", "message": "301"}]
        return httpx.Response(200, json={"accepted": 2, "duplicates": 0, "rejected": rejected})

    server = FakeServer(one_rejected)
    failures: list[Failure] = []
    tally = client(server, on_error=failures.append)
    ids = [tally.track("e", properties={"i": i}) for i in range(3)]
    assert tally.flush(5)
    [failure] = failures
    assert failure.code == "too_many_properties" and failure.events[0]["id"] == ids[1]
    assert failure.events[0]["properties"] == {"i": 1}
    assert (tally.sent, tally.failed) == (2, 1)
    tally.close()


def test_413_splits_the_batch_and_later_batches_are_smaller() -> None:
    def at_most_3(request: httpx.Request, events: list[dict[str, Any]]) -> httpx.Response:
        if len(events) > 3:
            return status(413, "too_many_events")(request, events)
        return accept(request, events)

    server = FakeServer(default=at_most_3)
    tally = client(server, batch_size=8, flush_interval=60)
    ids = [tally.track("e") for _ in range(8)]
    assert tally.flush(5)
    assert server.sizes() == [8, 4, 2, 2, 4, 2, 2]
    answered = zip(server.ids(), server.sizes(), strict=True)
    stored = [i for batch, size in answered if size <= 3 for i in batch]
    assert stored == ids  # each once, in order
    more = [tally.track("e") for _ in range(4)]
    assert tally.flush(5)
    assert server.sizes()[7:] == [2, 2]  # learned: batches of 2 from now on
    assert server.ids()[7:] == [more[:2], more[2:]]
    assert (tally.sent, tally.failed) == (12, 0)
    tally.close()


def test_a_single_event_too_large_for_the_server_is_reported() -> None:
    server = FakeServer(default=status(413, "body_too_large"))
    failures: list[Failure] = []
    tally = client(server, on_error=failures.append)
    tally.track("e")
    assert tally.flush(5)
    assert [(f.code, f.status, len(f.events)) for f in failures] == [("body_too_large", 413, 1)]
    tally.close()


def test_retries_give_up_after_max_retries() -> None:
    server = FakeServer(default=status(502, "bad_gateway"))
    failures: list[Failure] = []
    tally = client(server, on_error=failures.append, max_retries=3)
    tally.track("e")
    assert tally.flush(5)
    assert len(server.requests) == 4
    [failure] = failures
    assert failure.code == "bad_gateway" and "gave up after 4 attempts" in failure.message
    tally.close()


def test_a_network_error_is_reported_as_network_error() -> None:
    failures: list[Failure] = []
    tally = client(FakeServer(default=down), on_error=failures.append, max_retries=1)
    tally.track("e")
    assert tally.flush(5)
    assert [(f.code, f.status) for f in failures] == [(NETWORK_ERROR, None)]
    assert "ConnectError" in failures[0].message
    tally.close()


def test_close_gives_up_at_its_deadline_when_the_server_stays_down() -> None:
    failures: list[Failure] = []
    tally = client(
        FakeServer(default=down), on_error=failures.append, max_retries=None, batch_size=2
    )
    for _ in range(5):
        tally.track("e")
    started = time.monotonic()
    tally.close(timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    assert {f.code for f in failures} == {CLOSE_TIMEOUT}
    assert sum(len(f.events) for f in failures) == 5 and tally.failed == 5
    assert tally.track("late") is None and tally.dropped == 1
    tally.close()  # again: nothing happens


def test_flush_with_a_timeout_returns_false_while_the_server_is_down() -> None:
    server = FakeServer(down, down, down, down, down, down)
    tally = client(server, backoff_base=0.2, backoff_cap=0.2)
    tally.track("e")
    assert not tally.flush(timeout=0.1)
    assert tally.pending == 1
    assert tally.flush(timeout=5)  # the script runs out: the server is back
    assert tally.sent == 1
    tally.close()


def test_overflow_drops_the_newest_events_without_blocking() -> None:
    server = FakeServer()
    server.gate.clear()  # the server hangs: the first batch stays in flight
    tally = client(server, max_queue=3, batch_size=1, flush_interval=0)
    first = tally.track("e", properties={"i": 0})
    deadline = time.monotonic() + 5
    while tally._buffer.taken < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the first event is in flight; three more fit in the queue
    started = time.monotonic()
    results = [tally.track("e", properties={"i": i}) for i in range(1, 7)]
    assert time.monotonic() - started < 0.5  # never blocks
    assert [r is not None for r in results] == [True, True, True, False, False, False]
    assert tally.dropped == 3
    server.gate.set()
    assert tally.flush(5)
    sent = [e["properties"]["i"] for body in server.requests for e in body["events"]]
    assert sent == [0, 1, 2, 3] and first is not None
    tally.close()


def test_on_error_exceptions_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(failure: Failure) -> None:
        raise RuntimeError("oops")

    tally = client(FakeServer(status(401, "unknown_app_key")), on_error=broken)
    tally.track("e")
    assert tally.flush(5)
    assert any("on_error callback raised" in r.message for r in caplog.records)
    tally.track("e")
    assert tally.flush(5) and tally.sent == 1  # the thread lives on
    tally.close()


def test_the_context_manager_closes() -> None:
    server = FakeServer()
    with client(server, flush_interval=60) as tally:
        tally.track("e")
    assert server.sizes() == [1]
    assert tally.track("e") is None


def test_identify_and_alias_are_events_that_link_ids() -> None:
    server = FakeServer()
    tally = client(server)
    tally.identify("c-1", {"plan": "pro"}, device_id="d-1")
    tally.identify(42, {"plan": "free"})
    tally.alias("anon-9", "c-1")
    assert tally.flush(5)
    events = [
        {k: v for k, v in e.items() if k not in ("id", "time")}
        for e in server.requests[0]["events"]
    ]
    assert events == [
        {
            "name": "identity.identify",
            "user": "c-1",
            "device": "d-1",
            "properties": {"plan": "pro"},
        },
        {"name": "identity.identify", "user": 42, "properties": {"plan": "free"}},
        {
            "name": "identity.link",
            "user": "c-1",
            "device": "anon-9",
            "properties": {"previous_id": "anon-9"},
        },
    ]
    tally.close()


def test_the_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="app_key"):
        Tally(HOST, flush_at_exit=False)
    with pytest.raises(ValueError, match="not both"):
        Tally(HOST, app_key="k", api_key="a", api_secret="s", flush_at_exit=False)
    with pytest.raises(ValueError, match="api_key and api_secret"):
        Tally(HOST, api_key="a", flush_at_exit=False)
    with pytest.raises(ValueError, match="URL"):
        Tally("127.0.0.1:8000", app_key="k", flush_at_exit=False)
    public = Tally(HOST, app_key="k", flush_at_exit=False)
    with pytest.raises(ValueError, match="api_key and api_secret"):
        public.events()
    public.close()
    no_app = Tally(HOST, api_key="a", api_secret="s", flush_at_exit=False)
    with pytest.raises(ValueError, match="app_id"):
        no_app.query({"kind": "users"})
    no_app.close()


def test_reads_raise_tally_error_with_the_servers_code() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            assert request.url.params["user"] == "c-1" and request.url.params["limit"] == "5"
            return httpx.Response(200, json={"events": [{"id": "1"}]})
        return httpx.Response(400, json={"error": {"code": "invalid_query", "message": "no"}})

    tally = Tally(
        HOST,
        api_key="a",
        api_secret="s",
        app_id="app1",
        transport=httpx.MockTransport(answer),
        flush_at_exit=False,
    )
    assert tally.events(user="c-1", limit=5) == [{"id": "1"}]
    with pytest.raises(TallyError) as caught:
        tally.query({"kind": "nope"})
    assert (caught.value.status, caught.value.code) == (400, "invalid_query")
    tally.close()


# The async client against the app in-process


def asgi(services: Services) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.7", 51000))


def server_client(services: Services, new_app: NewApp, **options: Any) -> AsyncTally:
    return AsyncTally(
        HOST,
        api_key=new_app.app.api_key,
        api_secret=new_app.api_secret,
        app_id=new_app.app.id,
        transport=asgi(services),
        **{**FAST, **options},
    )


async def test_async_track_flush_and_read_back(services: Services, new_app: NewApp) -> None:
    async with server_client(services, new_app, batch_size=20, flush_interval=60) as tally:
        ids = [tally.track("async.event", user="c-1", properties={"i": i}) for i in range(50)]
        assert await tally.flush(5)
        assert (tally.sent, tally.failed) == (50, 0)
        stored = await tally.events(name="async.event", limit=1000)
        assert sorted(e["id"] for e in stored) == sorted(ids)
        # Sending the same ids again (as a retry would) stores nothing new.
        for event in stored[:5]:
            tally.track("async.event", user="c-1", id=event["id"])
        assert await tally.flush(5)
        assert len(await tally.events(name="async.event", limit=1000)) == 50
        answer = await tally.query(
            {
                "kind": "trends",
                "events": [{"event": "async.event", "measure": "count"}],
                "from": (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
                "to": (datetime.now(UTC) + timedelta(days=2)).date().isoformat(),
            }
        )
        assert answer["series"][0]["total"] == 50


async def test_async_identify_and_alias_link_ids(services: Services, new_app: NewApp) -> None:
    async with server_client(services, new_app) as tally:
        tally.track("page.view", device="dev-1")
        tally.identify("cust-1", {"plan": "pro"}, device_id="dev-1")
        tally.track("purchase", user="cust-1")
        tally.track("page.view", device="anon-7")
        tally.alias("anon-7", "cust-1")
        assert await tally.flush(5)
        by_device = await tally.events(user="dev-1")
        assert {e["name"] for e in by_device} == {
            "page.view",
            "identity.identify",
            "purchase",
            "identity.link",
        }
        assert {e["device"] for e in by_device if e["name"] == "page.view"} == {"dev-1", "anon-7"}
        [identify] = await tally.events(name="identity.identify")
        assert identify["properties"] == {"plan": "pro"} and identify["user"] == "cust-1"


async def test_async_413_is_split_against_the_servers_limit(
    services: Services, new_app: NewApp
) -> None:
    services.limits = Limits(max_events_per_request=4)
    async with server_client(services, new_app, batch_size=10, flush_interval=60) as tally:
        ids = [tally.track("split") for _ in range(10)]
        assert await tally.flush(5)
        assert (tally.sent, tally.failed) == (10, 0)
        assert tally._buffer.batch_size <= 4
        assert sorted(e["id"] for e in await tally.events(name="split")) == sorted(ids)


async def test_async_public_key_and_a_wrong_key(services: Services, new_app: NewApp) -> None:
    failures: list[Failure] = []
    async with AsyncTally(
        HOST, app_key=new_app.app.app_key, transport=asgi(services), **FAST
    ) as tally:
        tally.track("public")
        assert await tally.flush(5) and tally.sent == 1
    async with AsyncTally(
        HOST, app_key="0" * 40, transport=asgi(services), on_error=failures.append, **FAST
    ) as wrong:
        wrong.track("public")
        assert await wrong.flush(5)
    assert [(f.code, f.status) for f in failures] == [("unknown_app_key", 401)]


async def test_async_retries_with_the_same_ids_and_gives_up_at_close() -> None:
    server = FakeServer(down, status(503, "store_unavailable", {"Retry-After": "0"}))
    tally = AsyncTally(HOST, app_key="k", transport=server.transport, **FAST)
    ids = [tally.track("e") for _ in range(3)]
    assert await tally.flush(5)
    assert server.ids() == [ids, ids, ids]

    failures: list[Failure] = []
    stuck = AsyncTally(
        HOST,
        app_key="k",
        transport=FakeServer(default=down).transport,
        on_error=failures.append,
        max_retries=None,
        **FAST,
    )
    stuck.track("e")
    started = time.monotonic()
    await stuck.close(timeout=0.3)
    assert time.monotonic() - started < 3
    assert [(f.code, len(f.events)) for f in failures] == [(CLOSE_TIMEOUT, 1)]
    await tally.close()


async def test_async_overflow_drops_the_newest() -> None:
    tally = AsyncTally(
        HOST, app_key="k", transport=FakeServer().transport, max_queue=2, flush_interval=60, **FAST
    )
    results = [tally.track("e") for _ in range(4)]  # the task has not run yet: nothing sent
    assert [r is not None for r in results] == [True, True, False, False]
    assert tally.dropped == 2
    assert await tally.flush(5) and tally.sent == 2
    await tally.close()


class HangingServer(FakeServer):
    """Answers nothing (the request stays in flight) while ``hang`` is set; in a sync client too
    once it is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = True

    def handle(self, request: httpx.Request) -> Any:
        if not self.hang:
            return super().handle(request)
        self.requests.append(json.loads(request.content))

        async def forever() -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        return forever()


def test_async_batch_cut_off_when_its_loop_ends_is_sent_again() -> None:
    server = HangingServer()
    tally = AsyncTally(HOST, app_key="k", transport=server.transport, flush_interval=0, **FAST)

    async def track() -> list[str | None]:
        ids = [tally.track("e") for _ in range(3)]
        await asyncio.sleep(0.1)  # the batch is sent; asyncio.run then cancels the task
        return ids

    ids = asyncio.run(track())
    assert server.ids() == [ids] and tally.pending == 3
    server.hang = False
    assert asyncio.run(tally.flush(5))  # a new loop: the batch goes again, with the same ids
    assert server.ids() == [ids, ids] and tally.sent == 3
    asyncio.run(tally.close())


def test_async_events_left_when_the_program_ends_are_sent_at_exit() -> None:
    server = HangingServer()
    tally = AsyncTally(HOST, app_key="k", transport=server.transport, flush_interval=0, **FAST)

    async def track() -> list[str | None]:
        ids = [tally.track("e") for _ in range(3)]
        await asyncio.sleep(0.1)
        return ids

    ids = asyncio.run(track())
    later = tally.track("e")  # no loop runs: queued only
    server.hang = False
    tally._at_exit()  # what atexit runs: a synchronous last attempt
    assert server.ids() == [ids, [*ids, later]]
