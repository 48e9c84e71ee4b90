"""The native API's other ways in: server-side writes with the API key and secret, the browser
tracker's endpoint (only defined events), context fields and customer JWTs in the body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tally.catalog import NewApp


def auth(new_app: NewApp) -> tuple[str, str]:
    return (new_app.app.api_key, new_app.api_secret)


async def stored(client: httpx.AsyncClient, new_app: NewApp) -> list[dict]:
    reply = await client.get(f"/api/v1/apps/{new_app.app.id}/events", auth=auth(new_app))
    return reply.json()["events"]


async def test_server_side_writes_with_the_api_key_and_secret(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = {"events": [{"name": "invoice.paid", "user": "c-1", "sum": 99.5}]}
    reply = await client.post("/api/v1/events", json=body, auth=auth(new_app))
    assert reply.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    wrong = await client.post("/api/v1/events", json=body, auth=(new_app.app.api_key, "nope"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unknown_app_key"
    [event] = await stored(client, new_app)
    assert event["name"] == "invoice.paid" and event["user"] == "c-1"


async def test_context_fields_are_stored(client: httpx.AsyncClient, new_app: NewApp) -> None:
    context = {
        "url": "https://shop.example/p/1",
        "referrer": "https://www.google.com/",
        "locale": "pl-PL",
        "timezone": "Europe/Warsaw",
    }
    body = {"events": [{"name": "page.visit", "device": "d1", "context": context}]}
    reply = await client.post(
        "/api/v1/events", json=body, headers={"x-tally-key": new_app.app.app_key}
    )
    assert reply.json()["accepted"] == 1
    [event] = await stored(client, new_app)
    assert {k: event["context"][k] for k in context} == context


async def test_the_browser_endpoint_takes_only_defined_events(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    headers = {"x-tally-key": new_app.app.app_key, "content-type": "text/plain"}
    body = (
        b'{"events": [{"name": "page.visit", "device": "d1", "properties": {"title": "Home"}},'
        b' {"name": "entries.count", "device": "d1"}]}'
    )
    reply = await client.post("/sdk/v1/events", content=body, headers=headers)
    assert reply.status_code == 200
    assert reply.json()["accepted"] == 1
    assert [r["code"] for r in reply.json()["rejected"]] == ["undefined_event"]
    # The same event through the ordinary endpoint is defined on first sight.
    plain = await client.post(
        "/api/v1/events",
        json={"events": [{"name": "entries.count", "device": "d1"}]},
        headers={"x-tally-key": new_app.app.app_key},
    )
    assert plain.json()["accepted"] == 1
    again = await client.post("/sdk/v1/events", content=body, headers=headers)
    assert again.json()["accepted"] == 2
    labels = {e["name"]: e["label"] for e in await stored(client, new_app)}
    assert labels["page.visit"] == "Visited page Home"


async def test_a_customer_jwt_in_the_body_binds_events_to_the_customer(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = {"customer_jwt_key": public.decode()}
    base = f"/api/v1/apps/{new_app.app.id}"
    assert (await client.patch(f"{base}/settings", json=settings, auth=auth(new_app))).is_success
    token = jwt.encode(
        {"sub": "cust-9", "exp": datetime.now(UTC) + timedelta(minutes=5)}, key, algorithm="RS256"
    )
    body = {"access_token": token, "events": [{"name": "page.visit", "device": "d5"}]}
    reply = await client.post(
        "/sdk/v1/events", json=body, headers={"x-tally-key": new_app.app.app_key}
    )
    assert reply.json()["accepted"] == 1
    [event] = await stored(client, new_app)
    assert event["user"] == "cust-9" and event["device"] == "d5"
    bad = await client.post(
        "/sdk/v1/events",
        json={**body, "access_token": "x.y.z"},
        headers={"x-tally-key": new_app.app.app_key},
    )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_token"
