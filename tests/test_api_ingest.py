"""``POST /api/v1/events``: Tally's own ingest API, in-process against real DuckDB and SQLite."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tally.catalog import NewApp
from tally.http.app import TallyApp
from tally.http.services import Services
from tally.limits import Limits
from tally.store.query import EventQuery

URL = "/api/v1/events"


async def stored(services: Services, app_id: str) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=app_id, limit=1000))


async def failed_rows(services: Services) -> list[tuple]:
    db = services.store.loaded()  # type: ignore[attr-defined]
    return db.conn.execute(
        "SELECT app_id, protocol, reason, message, payload, event_index FROM failed_events "
        "ORDER BY event_index NULLS FIRST"
    ).fetchall()


async def test_accepts_events_and_reports_rejected_items(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "app_key": new_app.app.app_key,
        "events": [
            {
                "name": "item purchase",
                "id": "p1",
                "user": "u1",
                "device": "d1",
                "session": 7,
                "label": "Bought a watch",
                "count": 2,
                "sum": 120.5,
                "dur": 3,
                "time": "2026-03-01T10:00:00Z",
                "properties": {"item_name": "rolex"},
            },
            {"name": ""},
            {"name": 12},
            "not an object",
            {"name": "ok"},
        ],
    }
    response = await client.post(URL, json=body, headers={"user-agent": "curl/8.0"})
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "code": "missing_name", "message": "event name is missing or empty"},
            {
                "index": 2,
                "code": "invalid_event",
                "message": "Expected `str | null`, got `int` - at `$.name`",
            },
            {"index": 3, "code": "invalid_event", "message": "Expected `object`, got `str`"},
        ],
    }
    events = {e["name"]: e for e in await stored(services, new_app.app.id)}
    purchase = events["item purchase"]
    assert purchase["id"] == "p1" and purchase["user_id"] == "u1" and purchase["session_id"] == "7"
    assert (purchase["count"], purchase["sum"], purchase["dur"]) == (2, 120.5, 3.0)
    assert purchase["time"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert purchase["properties"] == {"item_name": "rolex"}
    assert purchase["label"] == "Bought a watch"
    assert purchase["ip"] == "198.51.100.7" and purchase["browser"] == "curl"
    assert events["ok"]["count"] == 1
    failed = await failed_rows(services)
    assert [(f[2], f[5]) for f in failed] == [
        ("missing_name", 1),
        ("invalid_event", 2),
        ("invalid_event", 3),
    ]
    assert failed[2][4] == b'"not an object"' and failed[0][0] == new_app.app.id


async def test_a_retried_id_is_stored_once_and_counted_as_duplicate(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = {"x-tally-key": new_app.app.app_key}
    events = [{"name": "signup", "id": "s-1"}, {"name": "signup", "id": "s-2"}]
    first = await client.post(URL, json={"events": events}, headers=key)
    assert first.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    retry = await client.post(
        URL, json={"events": [*events, {"name": "signup", "id": "s-3"}]}, headers=key
    )
    assert retry.status_code == 200
    assert retry.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    same_request = await client.post(
        URL, json={"events": [{"name": "x", "id": "dup"}, {"name": "x", "id": "dup"}]}, headers=key
    )
    assert same_request.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    ids = sorted(e["id"] for e in await stored(services, new_app.app.id))
    assert ids == ["dup", "s-1", "s-2", "s-3"]


async def test_the_header_key_wins_and_the_body_key_works_alone(
    client: httpx.AsyncClient,
    catalog,
    services: Services,
    new_app: NewApp,  # type: ignore[no-untyped-def]
) -> None:
    other = catalog.create_app("Other")
    response = await client.post(
        URL,
        json={"app_key": other.app.app_key, "events": [{"name": "a"}]},
        headers={"x-tally-key": new_app.app.app_key},
    )
    assert response.status_code == 200
    assert len(await stored(services, new_app.app.id)) == 1
    assert await stored(services, other.app.id) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"events": [', {}, 400, "invalid_json"),
        (b"", {}, 400, "invalid_json"),
        (b'{"events": {"name": "a"}}', {}, 400, "invalid_body"),
        (b'{"app_key": 5, "events": []}', {}, 400, "invalid_body"),
        (b'["a"]', {}, 400, "invalid_body"),
        (b'{"events": [], "sent_at": "soon"}', {}, 400, "invalid_body"),
        (b'{"events": []}', {}, 401, "missing_app_key"),
        (b'{"app_key": "nope", "events": []}', {}, 401, "unknown_app_key"),
        (b'{"events": []}', {"x-tally-key": "nope"}, 401, "unknown_app_key"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    client: httpx.AsyncClient,
    services: Services,
    body: bytes,
    headers: dict,
    status: int,
    code: str,
) -> None:
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text
    assert await failed_rows(services) == []  # no app named: nothing is stored


async def test_an_unreadable_body_is_kept_as_failed_when_the_header_names_the_app(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await client.post(
        URL, content=b"{oops", headers={"x-tally-key": new_app.app.app_key}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    [(app_id, protocol, reason, message, payload, index)] = await failed_rows(services)
    assert (app_id, protocol, reason, payload, index) == (
        new_app.app.id,
        "native",
        "invalid_body",
        b"{oops",
        None,
    )
    assert "not valid JSON" in message
    assert await stored(services, new_app.app.id) == []


async def test_when_every_event_is_rejected_the_status_is_400(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    response = await client.post(
        URL, json={"app_key": new_app.app.app_key, "events": [{"name": ""}, {"count": 2}]}
    )
    assert response.status_code == 400
    assert response.json()["accepted"] == 0
    assert [r["code"] for r in response.json()["rejected"]] == ["missing_name", "missing_name"]


async def test_an_empty_batch_is_fine(client: httpx.AsyncClient, new_app: NewApp) -> None:
    response = await client.post(URL, json={"app_key": new_app.app.app_key, "events": []})
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


async def test_size_limits(client: httpx.AsyncClient, services: Services, new_app: NewApp) -> None:
    key = {"x-tally-key": new_app.app.app_key}
    big_body = json.dumps({"events": [{"name": "x", "properties": {"p": "y" * 1_100_000}}]})
    response = await client.post(URL, content=big_body, headers=key)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"

    big_event = {"name": "big", "properties": {"p": "y" * 40_000}}
    response = await client.post(URL, json={"events": [big_event, {"name": "small"}]}, headers=key)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["code"] == "event_too_large"
    failed = await failed_rows(services)
    assert failed[0][2] == "event_too_large" and len(failed[0][4]) > 40_000


async def test_too_many_events_in_one_request(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    services.limits = Limits(max_events_per_request=3)
    events = [{"name": "e"}] * 4
    response = await client.post(
        URL, json={"events": events}, headers={"x-tally-key": new_app.app.app_key}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_events"
    assert [row[2] for row in await failed_rows(services)] == ["too_many_events"]
    assert await stored(services, new_app.app.id) == []


async def test_sent_at_corrects_clock_skew(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    fast_clock = datetime.now(UTC) + timedelta(hours=2)
    event_time = fast_clock - timedelta(minutes=5)
    await client.post(
        URL,
        json={
            "app_key": new_app.app.app_key,
            "sent_at": fast_clock.isoformat(),
            "events": [{"name": "skewed", "time": event_time.isoformat()}],
        },
    )
    [event] = await stored(services, new_app.app.id)
    lag = event["received_at"] - event["time"]
    assert timedelta(minutes=4, seconds=59) < lag <= timedelta(minutes=5, seconds=1)


async def test_methods_and_cors(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]
    preflight = await client.options(
        URL, headers={"origin": "https://shop.example", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "x-tally-key" in preflight.headers["access-control-allow-headers"]


async def test_the_ip_is_the_peers_and_a_forwarded_for_header_is_not_trusted_by_itself(
    services: Services, new_app: NewApp
) -> None:
    """uvicorn replaces the peer with X-Forwarded-For's address only for a trusted proxy
    (tests/test_rate_limit.py runs a real server behind one); the app never reads the header."""
    transport = httpx.ASGITransport(app=TallyApp(services), client=("198.51.100.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            URL,
            json={"app_key": new_app.app.app_key, "events": [{"name": "a"}]},
            headers={"x-forwarded-for": "192.0.2.44", "x-real-ip": "192.0.2.45"},
        )
    assert response.status_code == 200
    [event] = await stored(services, new_app.app.id)
    assert event["ip"] == "198.51.100.9"


async def test_a_store_failure_answers_503_and_acknowledges_nothing(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, data_dir: Path
) -> None:
    # Make the real store refuse writes: its journal folder is gone (a file in its place), and
    # the next append must start a new journal file there.
    journal = services.store.journal  # type: ignore[attr-defined]
    shutil.move(journal.dir, data_dir / "journal-moved")
    journal.dir.write_text("not a folder")
    journal.segment_bytes = 0
    response = await client.post(
        URL, json={"app_key": new_app.app.app_key, "events": [{"name": "a", "id": "keep-me"}]}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "1"
    journal.dir.unlink()
    shutil.move(data_dir / "journal-moved", journal.dir)
    retry = await client.post(
        URL, json={"app_key": new_app.app.app_key, "events": [{"name": "a", "id": "keep-me"}]}
    )
    assert retry.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
