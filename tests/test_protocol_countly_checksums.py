"""Countly checksums with an app salt (ported from Countly's test/3.api.write/8.checksums.js)."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import httpx
import pytest

from tally.catalog import Catalog, NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

SALT = "sodiumchloride"


@pytest.fixture
async def salted(catalog: Catalog, new_app: NewApp, services: Services) -> NewApp:
    catalog.update_settings(new_app.app.id, countly_salt=SALT)
    return new_app


def query_string(app_key: str, device: str) -> str:
    # As the web SDK builds it: keys sorted, values URL-encoded.
    params = {
        "app_key": app_key,
        "device_id": device,
        "events": '[{"key":"checked","count":1}]',
        "timestamp": "1763890000",
    }
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))


def sign(payload: str, algorithm: str) -> str:
    return hashlib.new(algorithm, (payload + SALT).encode()).hexdigest().upper()


async def stored(services: Services, new_app: NewApp) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=new_app.app.id))


async def failed_reasons(services: Services) -> list[tuple[str, str]]:
    db = services.store.loaded()  # type: ignore[attr-defined]
    return db.conn.execute("SELECT reason, message FROM failed_events").fetchall()


async def test_a_request_without_checksum_is_dropped_with_200(
    client: httpx.AsyncClient, services: Services, salted: NewApp
) -> None:
    response = await client.get(f"/i?{query_string(salted.app.app_key, 'd1')}")
    assert response.status_code == 200
    assert response.json() == {"result": "Request does not have checksum"}
    assert await stored(services, salted) == []
    assert await failed_reasons(services) == [
        ("invalid_checksum", "Request does not have checksum")
    ]


@pytest.mark.parametrize("param", ["checksum", "checksum256"])
async def test_a_wrong_checksum_is_dropped_with_200(
    client: httpx.AsyncClient, services: Services, salted: NewApp, param: str
) -> None:
    payload = query_string(salted.app.app_key, "d1")
    response = await client.get(f"/i?{payload}&{param}={'0' * 40}")
    assert response.status_code == 200
    assert response.json() == {"result": "Request does not match checksum"}
    assert await stored(services, salted) == []


@pytest.mark.parametrize(("param", "algorithm"), [("checksum", "sha1"), ("checksum256", "sha256")])
async def test_a_correct_checksum_by_get(
    client: httpx.AsyncClient, services: Services, salted: NewApp, param: str, algorithm: str
) -> None:
    payload = query_string(salted.app.app_key, "d1")
    response = await client.get(f"/i?{payload}&{param}={sign(payload, algorithm)}")
    assert response.json() == {"result": "Success"}
    assert [e["name"] for e in await stored(services, salted)] == ["checked"]


@pytest.mark.parametrize(("param", "algorithm"), [("checksum", "sha1"), ("checksum256", "sha256")])
async def test_a_correct_checksum_by_form_post(
    client: httpx.AsyncClient, services: Services, salted: NewApp, param: str, algorithm: str
) -> None:
    payload = query_string(salted.app.app_key, "d2")
    response = await client.post(
        "/i",
        content=f"{payload}&{param}={sign(payload, algorithm)}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.json() == {"result": "Success"}
    assert [e["device_id"] for e in await stored(services, salted)] == ["d2"]


async def test_lower_case_hex_is_accepted_and_apps_without_salt_need_none(
    client: httpx.AsyncClient, services: Services, catalog: Catalog, salted: NewApp
) -> None:
    payload = query_string(salted.app.app_key, "d3")
    lower = sign(payload, "sha256").lower()
    response = await client.get(f"/i?{payload}&checksum256={lower}")
    assert response.json() == {"result": "Success"}
    other = catalog.create_app("No salt")
    response = await client.get(f"/i?{query_string(other.app.app_key, 'd4')}")
    assert response.json() == {"result": "Success"}
