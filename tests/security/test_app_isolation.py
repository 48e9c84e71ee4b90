"""App isolation on every endpoint of the ASGI app.

Every route (the Starlette routes and the raw ingest paths of ``TallyApp``) is classified below, so
a new endpoint fails ``test_every_endpoint_is_classified`` until someone decides how it is
guarded. App A holds a canary (an event, a failed event, a definition, an alias, a setting); app
B's credentials of every kind (API key and secret, app key, workspace JWT, customer JWT) on A's
endpoints are refused and leak nothing of A; nothing works without credentials; a session needs
its CSRF token for every unsafe method; ingest with B's credentials stores only into B. Dashboard
sessions may manage every app by design (docs/dashboard-auth.md), so they are not an isolation
boundary.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from security_support import HS_SECRET, customer_jwt, events_of, failed_of, log_in
from starlette.routing import Route

from tally.catalog import NewApp
from tally.http.app import TallyApp
from tally.http.ingest import IngestEndpoint
from tally.http.services import Services

CANARY = f"canary-{uuid.uuid4().hex[:12]}"
CANARY_EVENT = f"{CANARY}.seen"
CANARY_USER = f"{CANARY}-user"
CANARY_ALIAS = f"{CANARY}-alias"

APP_ROUTES = {
    ("GET", "/api/v1/apps/{app_id}/events"),
    ("GET", "/api/v1/apps/{app_id}/settings"),
    ("PATCH", "/api/v1/apps/{app_id}/settings"),
    ("GET", "/api/v1/apps/{app_id}/definitions"),
    ("GET", "/api/v1/apps/{app_id}/definitions/{name:path}"),
    ("PUT", "/api/v1/apps/{app_id}/definitions/{name:path}"),
    ("DELETE", "/api/v1/apps/{app_id}/definitions/{name:path}"),
    ("GET", "/api/v1/apps/{app_id}/aliases"),
    ("PUT", "/api/v1/apps/{app_id}/aliases/{alias:path}"),
    ("DELETE", "/api/v1/apps/{app_id}/aliases/{alias:path}"),
    ("GET", "/api/v1/apps/{app_id}/failed-events"),
    ("POST", "/api/v1/apps/{app_id}/failed-events/replay"),
    ("GET", "/api/v1/apps/{app_id}/failed-events/{failed_id}"),
    ("GET", "/api/v1/apps/{app_id}/discarded"),
    ("POST", "/api/v1/apps/{app_id}/query"),
    ("GET", "/api/v1/apps/{app_id}/live"),
    ("GET", "/api/v1/apps/{app_id}/users/{user:path}/activity"),
    ("GET", "/api/v1/apps/{app_id}/customers"),
    ("GET", "/api/v1/apps/{app_id}/customers/{customer:path}"),
    ("GET", "/api/v1/apps/{app_id}/export"),
    ("GET", "/api/v1/apps/{app_id}/users/{user:path}/events"),
    ("DELETE", "/api/v1/apps/{app_id}/users/{user:path}"),
}
"""An app's data: its API key and secret (HTTP Basic) or a dashboard session."""

SESSION_ROUTES = {
    ("GET", "/api/v1/apps"),
    ("POST", "/api/v1/apps"),
    ("POST", "/api/v1/apps/{app_id}/rotate"),
}
"""Every app: a dashboard session only."""

PUBLIC_ROUTES = {
    ("POST", "/api/v1/session"),  # logging in
    ("GET", "/api/v1/session"),  # 401 without a session
    ("DELETE", "/api/v1/session"),  # logging out: harmless without a session
    ("POST", "/v4/auth/login/profile"),  # API key and secret in the body
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),  # per protocol, never per app
    ("GET", "/openapi.json"),
    ("GET", "/sdk/tally.js"),
    ("GET", "/"),
    ("GET", "/login"),
    ("GET", "/apps"),
    ("GET", "/apps/{rest:path}"),
    ("GET", "/dashboard/vendor/plotly.min.js"),
    ("GET", "/dashboard/{path:path}"),
}
"""No app's data: the dashboard's pages and assets, documents, health."""

COUNTLY_READ = {"/o", "/o/analytics/events"}
"""Countly's read API: ``app_id`` and the app's API key and secret as parameters or Basic."""
COUNTLY_SDK = {"/o/sdk"}
"""What Countly SDKs read: a constant configuration for any known app key."""


@dataclass
class Deployment:
    client: httpx.AsyncClient
    services: Services
    a: NewApp
    b: NewApp
    failed_id: str
    csrf: str
    """A dashboard session's CSRF token (the client's cookie jar holds the session only while a
    test logs in: ``client.cookies`` is cleared otherwise)."""


def routes(app: TallyApp) -> set[tuple[str, str]]:
    found = set()
    for route in app.api.routes:
        assert isinstance(route, Route), f"unclassified kind of route {route!r}"
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_endpoint_is_classified(services: Services) -> None:
    app = TallyApp(services, close_services=False)
    classified = APP_ROUTES | SESSION_ROUTES | PUBLIC_ROUTES
    found = routes(app)
    assert found - classified == set(), "new endpoints: classify them here and test them"
    assert classified - found == set(), "endpoints gone: drop them from the classification"
    # The raw paths: ingest endpoints (test_ingest_with_bs_credentials_stores_only_into_b sends
    # to each) and Countly's reads.
    assert set(app.ingest) - set(ingest_paths(app)) == COUNTLY_READ | COUNTLY_SDK


def ingest_paths(app: TallyApp) -> list[str]:
    return sorted(p for p, e in app.ingest.items() if isinstance(e, IngestEndpoint))


@pytest.fixture
async def tally(
    client: httpx.AsyncClient, services: Services, app_a: NewApp, app_b: NewApp
) -> AsyncIterator[Deployment]:
    a_auth = (app_a.app.api_key, app_a.api_secret)
    base = f"/api/v1/apps/{app_a.app.id}"
    canary_event = {"name": CANARY_EVENT, "user": CANARY_USER, "properties": {"note": CANARY}}
    sent = await client.post(
        "/api/v1/events",
        json={"events": [canary_event, {**canary_event, "count": -1}]},
        headers={"x-tally-key": app_a.app.app_key},
    )
    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text
    for method, path, body in (
        ("PUT", f"{base}/definitions/{CANARY_EVENT}", {"description": CANARY}),
        ("PUT", f"{base}/aliases/{CANARY_ALIAS}", {"name": CANARY_EVENT}),
        ("PATCH", f"{base}/settings", {"denylist": [f"{CANARY}.debug.*"]}),
    ):
        response = await client.request(method, path, json=body, auth=a_auth)
        assert response.status_code < 300, response.text
    listed = await client.get(f"{base}/failed-events", auth=a_auth)
    [failed] = listed.json()["failed_events"]
    assert CANARY in listed.text
    services.catalog.update_settings(app_b.app.id, customer_jwt_secret=HS_SECRET)
    csrf = await log_in(client, services)
    client.cookies.clear()
    yield Deployment(client, services, app_a, app_b, failed["id"], csrf)


def fill(path: str, tally: Deployment) -> str:
    values = {
        "app_id": tally.a.app.id,
        "name": CANARY_EVENT,
        "alias": CANARY_ALIAS,
        "failed_id": tally.failed_id,
        "user": CANARY_USER,
        "customer": CANARY_USER,
        "rest": tally.a.app.id,
        "path": "app.js",
    }
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)


BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/apps/{app_id}/settings"): {"denylist": []},
    ("PUT", "/api/v1/apps/{app_id}/definitions/{name:path}"): {"description": "changed"},
    ("PUT", "/api/v1/apps/{app_id}/aliases/{alias:path}"): {"name": "other.event"},
    ("POST", "/api/v1/apps/{app_id}/failed-events/replay"): {},
    ("POST", "/api/v1/apps/{app_id}/query"): {
        "kind": "trends",
        "from": "2020-01-01",
        "to": "2030-01-01",
        "events": [{"event": CANARY_EVENT}],
    },
    ("POST", "/api/v1/apps"): {"name": "Made by someone else"},
    ("POST", "/api/v1/apps/{app_id}/rotate"): {"overlap_seconds": 0},
}


async def call(
    tally: Deployment, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    body = BODIES.get((method, path))
    response = await tally.client.request(
        method,
        fill(path, tally),
        json=body if body is not None else None,
        headers=headers,
        **kwargs,
    )
    assert CANARY not in response.text, (method, path, response.text[:300])
    return response


def basic(key: str, secret: str) -> dict[str, str]:
    import base64

    return {"authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


async def a_is_intact(tally: Deployment) -> None:
    """A's canary survived whatever was tried: its events, definition, alias, setting, secret."""
    a_auth = (tally.a.app.api_key, tally.a.api_secret)
    base = f"/api/v1/apps/{tally.a.app.id}"
    client = tally.client
    names = [e["name"] for e in await events_of(tally.services, tally.a.app.id)]
    assert names == [CANARY_EVENT]
    assert len(failed_of(tally.services, tally.a.app.id)) == 1
    definition = await client.get(f"{base}/definitions/{CANARY_EVENT}", auth=a_auth)
    assert definition.status_code == 200 and definition.json()["description"] == CANARY
    aliases = (await client.get(f"{base}/aliases", auth=a_auth)).json()["aliases"]
    assert aliases == [{"alias": CANARY_ALIAS, "name": CANARY_EVENT}]
    settings = (await client.get(f"{base}/settings", auth=a_auth)).json()["settings"]
    assert settings["denylist"] == [f"{CANARY}.debug.*"]
    assert [a.name for a in tally.services.catalog.list_apps()] == ["App A", "App B"]


async def test_another_apps_credentials_are_refused_everywhere(tally: Deployment) -> None:
    b = tally.b
    workspace = tally.services.catalog.issue_workspace_token(b.app.api_key, b.api_secret)
    assert workspace is not None
    credentials = {
        "B's API key and secret": basic(b.app.api_key, b.api_secret),
        "B's app key as Basic": basic(b.app.app_key, ""),
        "B's app key": {"x-tally-key": b.app.app_key},
        "B's workspace JWT": {"authorization": f"Bearer {workspace}"},
        "B's customer JWT": {"authorization": f"Bearer {customer_jwt(HS_SECRET, 'HS256')}"},
        "nothing": {},
    }
    for method, path in sorted(APP_ROUTES | SESSION_ROUTES):
        for what, headers in credentials.items():
            response = await call(tally, method, path, headers)
            expected = {401, 403} if (method, path) in APP_ROUTES else {401}
            assert response.status_code in expected, (method, path, what, response.text)
            assert response.json()["error"]["code"] in (
                "unauthorized",
                "invalid_credentials",
                "forbidden",
            )
    for path in COUNTLY_READ:
        for params in (
            {"api_key": f"{b.app.api_key}:{b.api_secret}"},
            {"api_key": b.app.api_key, "api_secret": b.api_secret},
            {"api_key": b.app.app_key},
            {},
        ):
            query = {"app_id": tally.a.app.id, "method": "events", "event": CANARY_EVENT, **params}
            response = await tally.client.get(path, params=query)
            assert response.status_code in (400, 401), (path, params, response.text)
            assert CANARY not in response.text
    for path in COUNTLY_SDK:  # B's key reads B's (empty) configuration, nothing of A
        params = {"app_key": b.app.app_key, "device_id": "d1", "method": "sc"}
        response = await tally.client.get(path, params=params)
        assert response.status_code == 200 and CANARY not in response.text
    # Public endpoints show no app's data.
    for method, path in sorted(PUBLIC_ROUTES):
        if method != "GET":
            continue
        response = await call(tally, method, path, {})
        assert response.status_code in (200, 303, 401), (path, response.status_code)
    # The login endpoints answer for the credentials given, and only those.
    response = await tally.client.post(
        "/v4/auth/login/profile", json={"apiKey": f"{tally.a.app.api_key}:{b.api_secret}"}
    )
    assert response.status_code == 401
    response = await tally.client.post(
        "/api/v1/session", json={"email": "nobody@example.com", "password": "x" * 12}
    )
    assert response.status_code == 401 and CANARY not in response.text
    await a_is_intact(tally)


async def test_a_session_needs_its_csrf_token_for_every_unsafe_method(tally: Deployment) -> None:
    csrf = await log_in(tally.client, tally.services)
    unsafe = sorted(r for r in APP_ROUTES | SESSION_ROUTES if r[0] not in ("GET", "HEAD"))
    assert len(unsafe) == 10
    for method, path in unsafe:
        for headers in ({}, {"x-csrf-token": "0" * 64}, {"x-csrf-token": tally.csrf + "x"}):
            response = await call(tally, method, path, headers)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "csrf_failed"
    # The session itself works, for reading, and with the token.
    for method, path in sorted(r for r in APP_ROUTES if r[0] == "GET" and "live" not in r[1]):
        response = await tally.client.request(method, fill(path, tally))
        assert response.status_code in (200, 404), (path, response.text)
    response = await tally.client.patch(
        f"/api/v1/apps/{tally.a.app.id}/settings",
        json={"filter_bots": True},
        headers={"x-csrf-token": csrf},
    )
    assert response.status_code == 200
    tally.client.cookies.clear()
    await a_is_intact(tally)


# Ingest: B's credentials store only into B, whatever the path.

SYNERISE_EVENT = {"action": "iso.check", "label": "Isolation", "client": {"customId": "u1"}}
TRANSACTION = {
    "client": {"customId": "u1"},
    "orderId": "ORD-1",
    "value": {"amount": 10.0, "currency": "PLN"},
    "products": [{"sku": "S1", "finalUnitPrice": {"amount": 10.0, "currency": "PLN"}}],
}


def segment(call: str) -> dict[str, Any]:
    return {
        "type": call,
        "userId": "u1",
        "event": "Iso Check",
        "name": "Home",
        "groupId": "g1",
        "previousId": "u0",
    }


INGEST_BODIES: dict[str, tuple[str, Any]] = {
    "/api/v1/events": ("app key", {"events": [{"name": "iso.check", "user": "u1"}]}),
    "/sdk/v1/events": ("app key", {"events": [{"name": "page.visit", "device": "d1"}]}),
    "/i": ("countly", {"events": '[{"key": "iso_check"}]'}),
    "/i/bulk": ("countly bulk", None),
    "/v1/event/report": (
        "api",
        {"data": [{"euid": 1, "event_name": "iso_check", "itime": 1654076420772}]},
    ),
    "/v1/user/register": ("api", {"data": [{"user_id": "u1"}]}),
    "/v1/user/property": ("api", {"data": [{"euid": 1, "properties": {"plan": "pro"}}]}),
    "/v1/batch": ("write key", {"batch": [segment("track")]}),
    "/v1/b": ("write key", {"batch": [segment("track")]}),
    "/v4/events/custom": ("api", SYNERISE_EVENT),
    "/v4/events/batch": ("api", [SYNERISE_EVENT]),
    "/v4/transactions": ("api", TRANSACTION),
    "/v4/transactions/batch": ("api", [TRANSACTION]),
}
"""The ingest paths with their own body; the other Segment paths take one call, the other
Synerise paths one predefined event."""


def ingest_request(path: str, b: NewApp) -> dict[str, Any]:
    """httpx arguments that send an event to ``path`` with app B's credentials."""
    kind, body = INGEST_BODIES.get(path, (None, None))
    if kind is None and path.startswith("/v4/events/"):
        kind, body = "api", SYNERISE_EVENT
    if kind is None:
        from tally.adapters.segment import SHORT_PATHS

        call = path.removeprefix("/v1/")
        kind, body = "write key", segment(SHORT_PATHS.get(call, call))
    api = (b.app.api_key, b.api_secret)
    if kind == "app key":
        return {"json": body, "headers": {"x-tally-key": b.app.app_key}}
    if kind == "api":
        return {"json": body, "auth": api}
    if kind == "write key":
        return {"json": {**body, "writeKey": b.app.app_key}}
    if kind == "countly":
        return {"params": {"app_key": b.app.app_key, "device_id": "d1", **body}}
    item = {"app_key": b.app.app_key, "device_id": "d1", "events": [{"key": "iso_check"}]}
    return {"json": {"requests": [item]}}


async def test_ingest_with_bs_credentials_stores_only_into_b(tally: Deployment) -> None:
    paths = ingest_paths(TallyApp(tally.services, close_services=False))
    b_id = tally.b.app.id
    kept = 0
    for path in paths:
        response = await tally.client.post(path, **ingest_request(path, tally.b))
        assert response.status_code < 500 and CANARY not in response.text, (path, response.text)
        stored = await events_of(tally.services, b_id, internal=True)  # Segment alias: a link
        now = len(stored) + len(failed_of(tally.services, b_id))
        assert now > kept, (path, response.status_code, response.text)  # B got it
        kept = now
    await a_is_intact(tally)
