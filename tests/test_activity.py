"""The activity feed: one customer's events across linked devices, newest first, labelled from
the definitions' label templates, a page at a time."""

from __future__ import annotations

import httpx

from tally.catalog import NewApp


async def test_activity_pages_through_a_customers_devices_with_labels(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    events = [
        {
            "id": "e1",
            "name": "page.visit",
            "time": "2026-03-01T10:00:00Z",
            "device": "d1",
            "properties": {"title": "Home"},
        },
        {
            "id": "e2",
            "name": "signup",
            "time": "2026-03-01T10:05:00Z",
            "device": "d1",
            "user": "cust-1",
        },
        {
            "id": "e3",
            "name": "purchase",
            "time": "2026-03-02T09:00:00Z",
            "device": "d2",
            "user": "cust-1",
            "label": "Bought shoes",
        },
        {
            "id": "e4",
            "name": "page.visit",
            "time": "2026-03-03T09:00:00Z",
            "device": "d2",
            "properties": {"title": "Cart"},
        },
        {"id": "other", "name": "page.visit", "time": "2026-03-03T09:00:00Z", "device": "d9"},
    ]
    sent = await client.post(
        "/api/v1/events", json={"events": events}, headers={"x-tally-key": new_app.app.app_key}
    )
    assert sent.json()["accepted"] == 5
    auth = (new_app.app.api_key, new_app.api_secret)
    url = f"/api/v1/apps/{new_app.app.id}/users/cust-1/activity"

    pages, cursor = [], None
    while True:
        reply = await client.get(
            url, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, auth=auth
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pages.append([(e["id"], e["label"]) for e in body["events"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        [("e4", "Visited page Cart"), ("e3", "Bought shoes")],
        [("e2", None), ("e1", "Visited page Home")],
    ]
    # Any linked id finds the same person.
    by_device = await client.get(
        f"/api/v1/apps/{new_app.app.id}/users/d1/activity", params={"limit": 10}, auth=auth
    )
    assert [e["id"] for e in by_device.json()["events"]] == ["e4", "e3", "e2", "e1"]


async def test_activity_refuses_a_bad_cursor_and_limit(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    auth = (new_app.app.api_key, new_app.api_secret)
    url = f"/api/v1/apps/{new_app.app.id}/users/x/activity"
    bad = await client.get(url, params={"cursor": "not-a-cursor"}, auth=auth)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"
    assert (await client.get(url, params={"limit": 0}, auth=auth)).status_code == 400
    assert (await client.get(url)).status_code == 401
