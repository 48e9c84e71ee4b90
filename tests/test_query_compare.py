"""Comparing with the previous period under a breakdown: ``previous`` has exactly the series of
the main period (its values, and ``other`` if and only if the main period has one)."""

from __future__ import annotations

from typing import Any

import httpx

from tally.catalog import NewApp


async def trends(client: httpx.AsyncClient, app: NewApp, limit: int) -> dict[str, Any]:
    reply = await client.post(
        f"/api/v1/apps/{app.app.id}/query",
        auth=(app.app.api_key, app.api_secret),
        json={
            "kind": "trends",
            "events": [{"event": "buy"}],
            "from": "2026-03-08",
            "to": "2026-03-15",
            "breakdown": {"field": "properties.plan", "limit": limit},
            "compare": True,
        },
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def view(series: list[dict[str, Any]]) -> list[tuple[Any, bool, Any]]:
    return [(s["breakdown"], s["other"], s["total"]) for s in series]


async def test_previous_has_the_series_of_the_main_period(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    def buy(day: int, plan: str) -> dict[str, Any]:
        return {"name": "buy", "time": f"2026-03-{day:02}T12:00:00Z", "properties": {"plan": plan}}

    # main period (8th-14th): pro x3, team x2, free x1; previous (1st-7th): pro x1, solo x2
    events = [buy(9, "pro"), buy(9, "pro"), buy(10, "pro"), buy(11, "team"), buy(12, "team")]
    events += [buy(13, "free"), buy(2, "pro"), buy(3, "solo"), buy(4, "solo")]
    sent = await client.post(
        "/api/v1/events", json={"events": events}, headers={"x-tally-key": new_app.app.app_key}
    )
    assert sent.json()["accepted"] == len(events)

    # top 2 in the main period: pro, team, and other (free); the previous period's solo is not
    # one of the kept values, so it counts in the previous other
    answer = await trends(client, new_app, limit=2)
    assert view(answer["series"]) == [("pro", False, 3), ("team", False, 2), (None, True, 1)]
    assert view(answer["previous"]) == [("pro", False, 1), ("team", False, 0), (None, True, 2)]

    # every main-period value kept, no other: the previous period has no other either
    answer = await trends(client, new_app, limit=3)
    assert view(answer["series"]) == [("pro", False, 3), ("team", False, 2), ("free", False, 1)]
    assert view(answer["previous"]) == [("pro", False, 1), ("team", False, 0), ("free", False, 0)]
