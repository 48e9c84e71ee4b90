"""EngageLab: ``/v1/event/report``, ``/v1/user/register``, ``/v1/user/property``; the seed's own
request (seeds/004) verbatim, the documented replies, and the stored records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from tally.adapters.engagelab import euid_for
from tally.catalog import NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

# The request body of seeds/004_11022a372295d4f0.txt, as published (its JSON rendering).
SEED_BODY = """{
    "app_key": "96441e4d73207a6517abfbbc",
    "data": [
        {
            "euid": 10000091198,
            "event_name": "sign_up",
            "itime": 1654076420772,
            "random_id": "5b102148-0d28-4a6a-8658-483f7d1c735e",
            "properties": {
                "propertyA": "a",
                "propertyB": 2
            }
        },
        {
            "euid": 10000091199,
            "event_name": "login",
            "itime": 1654076420235,
            "properties": {
                "propertyC": "a",
                "propertyD": 3,
                "propertyJ": "true",
                "propertyK": 169,
                "propertyL": [
                    "test1",
                    "20231025"
                 ]
            }
        }
    ]
}"""
SUCCESS = {"code": 0, "message": "success"}


def auth(new_app: NewApp) -> tuple[str, str]:
    return (new_app.app.api_key, new_app.api_secret)


async def events_of(services: Services, new_app: NewApp, **filters: str) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=new_app.app.id, **filters))


async def test_the_seed_request_verbatim(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await client.post(
        "/v1/event/report",
        content=SEED_BODY,
        headers={"content-type": "application/json"},
        auth=auth(new_app),
    )
    assert response.status_code == 200
    assert response.json() == SUCCESS
    stored = {e["name"]: e for e in await events_of(services, new_app)}
    sign_up, login = stored["sign_up"], stored["login"]
    assert sign_up["id"] == "5b102148-0d28-4a6a-8658-483f7d1c735e"
    assert sign_up["user_id"] == "10000091198" and sign_up["protocol"] == "engagelab"
    assert sign_up["time"] == datetime(2022, 6, 1, 9, 40, 20, 772000, tzinfo=UTC)
    assert sign_up["properties"] == {"propertyA": "a", "propertyB": 2}
    assert login["user_id"] == "10000091199"
    assert login["properties"]["propertyL"] == ["test1", "20231025"]
    assert login["properties"]["propertyJ"] == "true"
    assert login["id"] != sign_up["id"]


async def test_random_id_makes_a_resend_a_duplicate(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    for _ in range(2):
        response = await client.post("/v1/event/report", content=SEED_BODY, auth=auth(new_app))
        assert response.json() == SUCCESS
    names = sorted(e["name"] for e in await events_of(services, new_app))
    # sign_up has a random_id and is stored once; login has none, so each report is a new event.
    assert names == ["login", "login", "sign_up"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Basic bm9wZTpub3Bl"}, {"authorization": "Bearer x"}],
    ids=["none", "unknown", "not-basic"],
)
async def test_authentication_failure_is_40050(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, headers: dict
) -> None:
    response = await client.post("/v1/event/report", content=SEED_BODY, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"code": 40050, "message": "Interface authentication failed"}
    assert await events_of(services, new_app) == []


async def test_the_public_app_key_is_not_an_api_credential(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    response = await client.post(
        "/v1/event/report", content=SEED_BODY, auth=(new_app.app.app_key, "")
    )
    assert response.json()["code"] == 40050


async def test_partial_success_is_code_0_and_rejects_are_kept(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {
        "data": [
            {"euid": 1, "event_name": "open_app", "itime": 1654076420772},
            {"euid": 1, "event_name": "Open App", "itime": 1654076420772},
            {"euid": 1, "event_name": "9lives", "itime": 1654076420772},
            {"event_name": "no_user", "itime": 1654076420772},
            {"euid": 1, "event_name": "no_time"},
            {"euid": {"x": 1}, "event_name": "bad_euid", "itime": 1},
        ]
    }
    response = await client.post("/v1/event/report", json=body, auth=auth(new_app))
    assert response.status_code == 200 and response.json() == SUCCESS
    assert [e["name"] for e in await events_of(services, new_app)] == ["open_app"]
    failed = (
        services.store.loaded()
        .conn.execute(  # type: ignore[attr-defined]
            "SELECT event_index, reason, message FROM failed_events ORDER BY event_index"
        )
        .fetchall()
    )
    assert [(i, r) for i, r, _ in failed] == [
        (1, "invalid_name"),
        (2, "invalid_name"),
        (3, "missing_identity"),
        (4, "invalid_event"),
        (5, "invalid_event"),
    ]
    assert "lowercase letters" in failed[0][2]
    assert failed[2][2] == "euid is required" and failed[3][2] == "itime is required"


async def test_when_every_event_is_rejected_the_reply_says_so(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = {"data": [{"euid": 1, "event_name": "Bad Name", "itime": 1654076420772}]}
    response = await client.post("/v1/event/report", json=body, auth=auth(new_app))
    assert response.status_code == 400
    assert response.json()["code"] == 40003
    assert "invalid_name" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(b"{", 400, 40001), (b'{"data": 5}', 400, 40002), (b"{}", 400, 40002)],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, new_app: NewApp, body: bytes, status: int, code: int
) -> None:
    response = await client.post("/v1/event/report", content=body, auth=auth(new_app))
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["message"]


async def test_register_returns_stable_euids_and_links_them(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"identity_name": "user_id", "identity_values": ["alice", "bob"]}
    first = await client.post("/v1/user/register", json=body, auth=auth(new_app))
    again = await client.post("/v1/user/register", json=body, auth=auth(new_app))
    assert first.status_code == 200 and first.json() == again.json()
    reply = first.json()
    assert reply["code"] == 0 and reply["message"] == "success"
    assert [d["identity_value"] for d in reply["data"]] == ["alice", "bob"]
    alice = reply["data"][0]["euid"]
    assert alice == euid_for("user_id", "alice") and 0 < alice < 2**53
    assert reply["data"][1]["euid"] != alice

    report = {"data": [{"euid": alice, "event_name": "purchase", "itime": 1654076420772}]}
    assert (await client.post("/v1/event/report", json=report, auth=auth(new_app))).json() == (
        SUCCESS
    )
    # The identity and its EUID are one person: reading by the user id finds the EUID's events.
    names = [e["name"] for e in await events_of(services, new_app, user="alice")]
    assert "purchase" in names


@pytest.mark.parametrize(
    "body",
    [
        {"identity_name": "email", "identity_values": ["a"]},
        {"identity_name": "user_id", "identity_values": []},
        {"identity_name": "user_id", "identity_values": ["x" * 257]},
        {"identity_name": "user_id", "identity_values": [str(i) for i in range(101)]},
    ],
    ids=["unknown-identity", "no-values", "too-long", "too-many"],
)
async def test_register_limits(client: httpx.AsyncClient, new_app: NewApp, body: dict) -> None:
    response = await client.post("/v1/user/register", json=body, auth=auth(new_app))
    assert response.status_code == 400 and response.json()["code"] == 40002


async def test_user_properties(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = {"euid": 10000091198, "type": "set", "properties": {"plan": "pro", "age": 31}}
    response = await client.post("/v1/user/property", json=body, auth=auth(new_app))
    assert response.json() == SUCCESS
    [event] = await events_of(services, new_app, user="10000091198")
    assert event["name"] == "user.set" and event["internal"] is True
    assert event["properties"] == {"plan": "pro", "age": 31}

    bad = {"euid": 1, "type": "increase", "properties": {"visits": "many"}}
    response = await client.post("/v1/user/property", json=bad, auth=auth(new_app))
    assert response.status_code == 400
    assert response.json() == {"code": 55102, "message": "Invalid user attributes exist"}
    unknown = {"euid": 1, "type": "explode", "properties": {}}
    response = await client.post("/v1/user/property", json=unknown, auth=auth(new_app))
    assert response.json()["code"] == 40002


async def test_only_post(client: httpx.AsyncClient, new_app: NewApp) -> None:
    response = await client.get("/v1/event/report", auth=auth(new_app))
    assert response.status_code == 405 and response.json()["code"] == 40500
    assert json.loads(response.text)["message"]
