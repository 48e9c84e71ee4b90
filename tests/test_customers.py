"""Customers: search by id, and one customer's profile across linked ids (devices, top events,
properties from identify / user_details / EngageLab user properties)."""

from __future__ import annotations

import httpx

from tally.catalog import NewApp

CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


async def send(client: httpx.AsyncClient, app: NewApp, events: list[dict], **headers: str) -> None:
    reply = await client.post(
        "/api/v1/events",
        json={"events": events},
        headers={"x-tally-key": app.app.app_key, **headers},
    )
    assert reply.json()["accepted"] == len(events), reply.text


async def test_search_and_profile(client: httpx.AsyncClient, new_app: NewApp) -> None:
    await send(
        client,
        new_app,
        [
            {"name": "page.visit", "time": "2026-03-01T10:00:00Z", "device": "phone-1"},
            {"name": "signup", "time": "2026-03-01T10:05:00Z", "device": "phone-1", "user": "Ann"},
            {
                "name": "identity.identify",
                "time": "2026-03-01T10:06:00Z",
                "user": "Ann",
                "properties": {"plan": "free", "visits": 1},
            },
        ],
        **{"user-agent": CHROME_ON_MAC},
    )
    await send(
        client,
        new_app,
        [
            {
                "name": "purchase",
                "time": "2026-03-02T09:00:00Z",
                "device": "laptop-2",
                "user": "Ann",
            },
            {
                "name": "purchase",
                "time": "2026-03-03T09:00:00Z",
                "device": "laptop-2",
                "user": "Ann",
            },
            {
                "name": "identity.identify",
                "time": "2026-03-03T09:01:00Z",
                "user": "Ann",
                "properties": {"plan": "pro"},
            },
            {
                "name": "user.increase",
                "time": "2026-03-03T09:02:00Z",
                "user": "Ann",
                "properties": {"visits": 2},
            },
            {"name": "page.visit", "time": "2026-03-04T09:00:00Z", "device": "tablet-annie"},
            {"name": "page.visit", "time": "2026-03-05T09:00:00Z", "user": "bob"},
        ],
    )
    auth = (new_app.app.api_key, new_app.api_secret)
    base = f"/api/v1/apps/{new_app.app.id}/customers"

    everyone = (await client.get(base, auth=auth)).json()["customers"]
    assert [(c["id"], c["kind"], c["events"]) for c in everyone] == [
        ("bob", "user", 1),
        ("tablet-annie", "device", 1),
        ("Ann", "user", 6),
        ("phone-1", "device", 1),
    ]
    assert everyone[0]["last_seen"] == "2026-03-05T09:00:00Z"
    found = (await client.get(base, params={"search": "ANN"}, auth=auth)).json()["customers"]
    assert [c["id"] for c in found] == ["tablet-annie", "Ann"]
    limited = (await client.get(base, params={"limit": 1}, auth=auth)).json()["customers"]
    assert [c["id"] for c in limited] == ["bob"]

    # the device that became Ann (linked when she signed up on it) is part of her profile
    profile = (await client.get(f"{base}/phone-1", auth=auth)).json()
    assert profile["linked_ids"] == ["Ann", "laptop-2"]
    assert profile["events"] == 7
    assert profile["first_seen"] == "2026-03-01T10:00:00Z"
    assert profile["last_seen"] == "2026-03-03T09:02:00Z"
    assert profile["properties"] == {"plan": "pro", "visits": 3}
    devices = {d["device"]: d for d in profile["devices"]}
    assert list(devices) == ["laptop-2", "phone-1"]
    assert devices["phone-1"]["events"] == 2
    assert devices["phone-1"]["os"] == "Mac OS X" and devices["phone-1"]["browser"] == "Chrome"
    assert devices["laptop-2"]["browser"] is None
    assert profile["top_events"][0] == {
        "name": "identity.identify",
        "events": 2,
        "last_seen": "2026-03-03T09:01:00Z",
    }
    assert {t["name"]: t["events"] for t in profile["top_events"]} == {
        "identity.identify": 2,
        "page.visit": 1,
        "purchase": 2,
        "signup": 1,
        "user.increase": 1,
    }


async def test_errors(client: httpx.AsyncClient, new_app: NewApp) -> None:
    auth = (new_app.app.api_key, new_app.api_secret)
    base = f"/api/v1/apps/{new_app.app.id}/customers"
    missing = await client.get(f"{base}/nobody", auth=auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    for params in ({"limit": "0"}, {"limit": "x"}, {"search": "x" * 201}):
        bad = await client.get(base, params=params, auth=auth)
        assert bad.status_code == 400, params
        assert bad.json()["error"]["code"] == "invalid_parameter"
    assert (await client.get(base)).status_code == 401
