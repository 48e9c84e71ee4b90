"""Rate limiting per client address and per app: 429 with Retry-After in each protocol's shape,
nothing of a refused request kept, counted in a metric; token buckets with bounded memory."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from support import ServerFactory, create_app
from tally import metrics
from tally.catalog import Catalog, NewApp
from tally.http import rate_limit
from tally.http.rate_limit import RateLimiter, TokenBuckets
from tally.http.services import Services
from tally.limits import Limits
from tally.store.query import EventQuery, FailedQuery


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == 1  # empty: one token comes in 0.5 s
    assert buckets.take("b") is None  # keys are independent
    clock.now += 0.5
    assert buckets.take("a") is None
    assert buckets.take("a") == 1
    clock.now += 100  # refills up to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)] == [None, None, None, 1]


def test_retry_after_says_when_a_token_is_back() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.1, burst=1, clock=clock)
    assert buckets.take("a") is None
    assert buckets.take("a") == 10
    clock.now += 4
    assert buckets.take("a") == 6


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "MAX_TRACKED", 100)
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    for i in range(100):
        buckets.take(f"idle-{i}")
    clock.now += 5  # all of them full again: forgetting them changes nothing
    assert buckets.take("busy") is None
    assert len(buckets) == 1
    for i in range(500):  # all busy at once: never more than the bound
        buckets.take(f"k-{i}")
        assert len(buckets) <= 100


def test_the_limiter_is_off_by_default_and_exempts_loopback() -> None:
    off = RateLimiter(Limits())
    assert all(off.ip("203.0.113.1") is None for _ in range(1000))
    assert all(off.app("app") is None for _ in range(1000))
    on = RateLimiter(Limits(rate_limit_ip=1, rate_limit_ip_burst=1))
    assert all(on.ip(ip) is None for ip in ["127.0.0.1", "::1", "127.8.9.1"] * 10)
    assert on.ip("203.0.113.1") is None and on.ip("203.0.113.1") == 1
    assert on.ip("not an address") is None and on.ip("not an address") == 1


def rejected_count(protocol: str, by: str) -> float:
    value = metrics.REQUESTS_RATE_LIMITED.labels(protocol, by)._value.get()
    return float(value)


async def test_per_address_429_in_tallys_shape_and_nothing_kept(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    """The in-process client's address is 198.51.100.7."""
    services.rate_limiter = RateLimiter(
        Limits(rate_limit_ip=0.001, rate_limit_ip_burst=2), clock=Clock()
    )
    key = {"x-tally-key": new_app.app.app_key}
    before = rejected_count("native", "ip")
    for i in range(2):
        ok = await client.post("/api/v1/events", json={"events": [{"name": f"e{i}"}]}, headers=key)
        assert ok.status_code == 200, ok.text
    refused = await client.post(
        "/api/v1/events", json={"events": [{"name": "e2"}, "not an event"]}, headers=key
    )
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1000"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert rejected_count("native", "ip") == before + 1
    # nothing of the refused request is stored, not even as a failed event
    app_id = new_app.app.id
    names = [e["name"] for e in await services.store.fetch_events(EventQuery(app_id=app_id))]
    assert sorted(names) == ["e0", "e1"]
    assert await services.store.fetch_failed(FailedQuery(app_id=app_id)) == []
    # preflights and the read API are not ingest: not limited
    assert (await client.options("/api/v1/events")).status_code != 429
    assert (await client.get("/healthz")).status_code == 200


async def test_per_app_limit_applies_whatever_the_address_and_before_keeping_failures(
    services: Services, catalog: Catalog, new_app: NewApp
) -> None:
    from tally.http.app import TallyApp

    services.rate_limiter = RateLimiter(
        Limits(rate_limit_app=0.001, rate_limit_app_burst=1), clock=Clock()
    )
    other = catalog.create_app("Other")
    app = TallyApp(services)

    async def post(address: str, key: str, body: bytes) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
            return await http.post(
                "/api/v1/events",
                content=body,
                headers={"x-tally-key": key, "content-type": "application/json"},
            )

    good = json.dumps({"events": [{"name": "a"}]}).encode()
    assert (await post("203.0.113.1", new_app.app.app_key, good)).status_code == 200
    second = await post("203.0.113.2", new_app.app.app_key, good)
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    # an unreadable body naming a limited app is refused before it could be kept as failed
    garbage = await post("203.0.113.3", new_app.app.app_key, b"{not json")
    assert garbage.status_code == 429
    assert await services.store.fetch_failed(FailedQuery(app_id=new_app.app.id)) == []
    # another app has its own bucket
    assert (await post("203.0.113.2", other.app.app_key, good)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "check"),
    [
        (
            "/i?app_key={key}&device_id=d1&events=%5B%7B%22key%22%3A%22a%22%7D%5D",
            None,
            lambda r: "result" in r.json(),
        ),
        ("/v1/track", {"event": "a", "userId": "u1"}, lambda r: r.json()["code"] == "rate_limited"),
    ],
    ids=["countly", "segment"],
)
async def test_429_in_other_protocols_shapes(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, path: str, body, check
) -> None:
    services.rate_limiter = RateLimiter(
        Limits(rate_limit_ip=0.001, rate_limit_ip_burst=1), clock=Clock()
    )
    url = path.format(key=new_app.app.app_key)
    auth = (new_app.app.app_key, "")
    send = (lambda: client.get(url)) if body is None else (
        lambda: client.post(url, json=body, auth=auth)
    )  # fmt: skip
    assert (await send()).status_code == 200
    refused = await send()
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1000"
    assert check(refused), refused.text


def test_a_real_server_limits_forwarded_addresses_and_not_loopback(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """Behind a proxy on 127.0.0.1 (trusted by uvicorn), the limit applies to the address in
    X-Forwarded-For; the loopback address itself is exempt by default."""
    data = tmp_path / "data"
    app = create_app(data)
    server = servers.start(
        data, workers=1, options=["--rate-limit-ip", "0.001", "--rate-limit-ip-burst", "2"]
    )
    events = {"events": [{"name": "a"}]}
    key = {"X-Tally-Key": app.app_key}
    with httpx.Client(base_url=server.url, timeout=10) as http:

        def send(forwarded: str | None) -> httpx.Response:
            headers = {**key, **({"X-Forwarded-For": forwarded} if forwarded else {})}
            return http.post("/api/v1/events", json=events, headers=headers)

        assert [send("203.0.113.9").status_code for _ in range(3)] == [200, 200, 429]
        refused = send("203.0.113.9")
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 1
        assert send("203.0.113.10").status_code == 200
        assert all(send(None).status_code == 200 for _ in range(5))
        scraped = http.get("/metrics").text
    assert 'tally_requests_rate_limited_total{by="ip",protocol="native"} 2.0' in scraped
