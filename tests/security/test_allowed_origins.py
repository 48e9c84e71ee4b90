"""Allowed origins per app (``allowed_origins``): real requests on every browser protocol, with
the public app key from an allowed origin, another origin, and none; the server credentials are not
checked; the setting is validated; the matching rule on its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from security_support import events_of, failed_of

from tally.catalog import NewApp
from tally.http.origins import origin_allowed
from tally.http.services import Services

ALLOWED = ["https://shop.example.com", "https://*.example.org", "http://localhost:3000"]
EVIL = "https://evil.example.net"

Send = Callable[[httpx.AsyncClient, NewApp, dict[str, str]], Awaitable[httpx.Response]]


async def native(client: httpx.AsyncClient, app: NewApp, headers: dict[str, str]) -> Any:
    body = {"events": [{"name": "page.visit", "device": "dev-1"}]}
    return await client.post(
        "/sdk/v1/events", json=body, headers={"x-tally-key": app.app.app_key, **headers}
    )


async def countly(client: httpx.AsyncClient, app: NewApp, headers: dict[str, str]) -> Any:
    params = {
        "app_key": app.app.app_key,
        "device_id": "dev-1",
        # a new segment value each time: Countly's identical requests are stored once
        "events": json.dumps([{"key": "page_view", "segmentation": {"n": uuid.uuid4().hex}}]),
    }
    return await client.get("/i", params=params, headers=headers)


async def synerise(client: httpx.AsyncClient, app: NewApp, headers: dict[str, str]) -> Any:
    body = {"action": "page.visit", "label": "Home", "client": {"uuid": "dev-1"}}
    return await client.post(
        "/v4/events/custom", params={"token": app.app.app_key}, json=body, headers=headers
    )


async def segment(client: httpx.AsyncClient, app: NewApp, headers: dict[str, str]) -> Any:
    body = {"writeKey": app.app.app_key, "anonymousId": "dev-1", "event": "Viewed"}
    return await client.post("/v1/t", json=body, headers=headers)


def refused_in_the_protocols_shape(protocol: str, response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    if protocol == "native":
        assert body["error"]["code"] == "origin_not_allowed"
        assert EVIL in body["error"]["message"]
    elif protocol == "countly":
        assert list(body) == ["result"] and EVIL in body["result"]
    elif protocol == "synerise":
        assert body["status"] == 403 and body["error"] == "Forbidden"
        assert body["path"] == "/v4/events/custom" and EVIL in body["message"]
    else:
        assert body["success"] is False and body["code"] == "origin_not_allowed"


PROTOCOLS: dict[str, Send] = {
    "native": native,
    "countly": countly,
    "synerise": synerise,
    "segment": segment,
}


async def allow(client: httpx.AsyncClient, app: NewApp, origins: list[str]) -> httpx.Response:
    return await client.patch(
        f"/api/v1/apps/{app.app.id}/settings",
        json={"allowed_origins": origins},
        auth=(app.app.api_key, app.api_secret),
    )


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_browser_requests_from_other_origins_are_refused(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, protocol: str
) -> None:
    send = PROTOCOLS[protocol]
    # No list: any origin, as before.
    assert (await send(client, new_app, {"origin": EVIL})).status_code < 300
    response = await allow(client, new_app, ALLOWED)
    assert response.status_code == 200 and response.json()["settings"]["allowed_origins"] == ALLOWED
    app_id = new_app.app.id
    before = len(await events_of(services, app_id))

    refusals = [
        await send(client, new_app, {"origin": EVIL}),
        await send(client, new_app, {"referer": f"{EVIL}/shop/cart?x=1"}),  # no Origin
        await send(client, new_app, {"origin": EVIL, "referer": "https://shop.example.com/"}),
    ]
    for response in refusals:
        refused_in_the_protocols_shape(protocol, response)
    for headers in (
        {"origin": "https://shop.example.com"},
        {"origin": "https://blog.example.org"},
        {"origin": "http://localhost:3000"},
        {"referer": "https://a.b.example.org/page?q=1"},
        {},  # a server or an app: no origin to check
    ):
        response = await send(client, new_app, headers)
        assert response.status_code < 300, (headers, response.text)
    assert len(await events_of(services, app_id)) == before + 5
    kept = failed_of(services, app_id)
    assert len(kept) == 3 and all(EVIL in message for _, message in kept)
    assert {r for r, _ in kept} == {"origin_not_allowed"}


async def test_the_server_credentials_are_not_checked(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    assert (await allow(client, new_app, ["https://shop.example.com"])).status_code == 200
    auth = (new_app.app.api_key, new_app.api_secret)
    response = await client.post(
        "/api/v1/events",
        json={"events": [{"name": "order.paid", "user": "u1"}]},
        headers={"origin": EVIL},
        auth=auth,
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        "/v4/events/custom",
        json={"action": "order.paid", "label": "Paid", "client": {"customId": "u1"}},
        headers={"origin": EVIL},
        auth=auth,
    )
    assert response.status_code == 202, response.text
    assert len(await events_of(services, new_app.app.id)) == 2
    # the same endpoint with the public key from that origin is refused
    response = await client.post(
        "/api/v1/events",
        json={"events": [{"name": "order.paid", "user": "u1"}]},
        headers={"origin": EVIL, "x-tally-key": new_app.app.app_key},
    )
    assert response.status_code == 403


async def test_the_setting_is_checked(client: httpx.AsyncClient, new_app: NewApp) -> None:
    for origins, message in (
        (["shop.example.com"], "'shop.example.com' is not an origin"),
        (["https://shop.example.com/path"], "no path"),
        (["ftp://shop.example.com"], "is not an origin"),
        (["https://*"], "is not an origin"),
        (["https://a.*.example.com"], "is not an origin"),
        (["https://user@example.com"], "is not an origin"),
        (["https://zażółć.pl"], "xn--"),
        (["*"], "is not an origin"),
        ([f"https://s{i}.example.com" for i in range(101)], "at most 100"),
    ):
        response = await allow(client, new_app, origins)
        assert response.status_code == 400, origins
        error = response.json()["error"]
        assert error["code"] == "invalid_settings" and "allowed_origins" in error["message"]
        assert message in error["message"], origins


def test_matching() -> None:
    allowed = [
        "https://Shop.Example.com/",
        "https://*.example.org",
        "http://localhost:3000",
        "http://[::1]:8080",
    ]
    for origin in (
        "https://shop.example.com",
        "https://shop.example.com:443",
        "HTTPS://SHOP.EXAMPLE.COM",
        "https://a.example.org",
        "https://a.b.example.org",
        "http://localhost:3000",
        "http://[0:0::1]:8080",
    ):
        assert origin_allowed(allowed, origin), origin
    for origin in (
        "http://shop.example.com",  # another scheme
        "https://shop.example.com:8443",  # another port
        "https://example.org",  # the wildcard is for subdomains only
        "https://evilexample.org",
        "https://example.org.evil.net",
        "https://shop.example.com.evil.net",
        "http://localhost",
        "null",  # sandboxed frames, file: pages
        "https://*.example.org",
        "",
        "garbage",
    ):
        assert not origin_allowed(allowed, origin), origin
    assert origin_allowed([], EVIL)  # no list: any origin
