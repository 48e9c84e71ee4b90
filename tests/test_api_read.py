"""``GET /api/v1/apps/{app_id}/events`` and the operations endpoints."""

from __future__ import annotations

import re

import httpx
import pytest

from tally.catalog import Catalog, NewApp
from tally.http.app import TallyApp
from tally.http.services import Services


def basic(new_app: NewApp) -> tuple[str, str]:
    return (new_app.app.api_key, new_app.api_secret)


async def send(client: httpx.AsyncClient, new_app: NewApp, events: list[dict]) -> None:
    response = await client.post(
        "/api/v1/events", json={"events": events}, headers={"x-tally-key": new_app.app.app_key}
    )
    assert response.status_code == 200, response.text


async def test_read_back_newest_first_with_filters(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    await send(
        client,
        new_app,
        [
            {"id": "1", "name": "view", "user": "u1", "time": "2026-03-01T10:00:00Z"},
            {
                "id": "2",
                "name": "buy",
                "user": "u2",
                "time": "2026-03-01T11:00:00Z",
                "properties": {"sku": "A-1"},
            },
            {"id": "3", "name": "view", "device": "u1", "time": "2026-03-01T12:00:00Z"},
        ],
    )
    url = f"/api/v1/apps/{new_app.app.id}/events"
    response = await client.get(url, auth=basic(new_app))
    assert response.status_code == 200
    events = response.json()["events"]
    assert [e["id"] for e in events] == ["3", "2", "1"]
    buy = events[1]
    assert buy["time"] == "2026-03-01T11:00:00Z"
    assert buy["user"] == "u2" and buy["properties"] == {"sku": "A-1"}
    assert buy["protocol"] == "native" and buy["count"] == 1
    assert set(buy["context"]) >= {"ip", "user_agent", "browser", "os", "url"}

    async def ids(**params: str) -> list[str]:
        reply = await client.get(url, params=params, auth=basic(new_app))
        assert reply.status_code == 200, reply.text
        return [e["id"] for e in reply.json()["events"]]

    assert await ids(name="view") == ["3", "1"]
    assert await ids(user="u1") == ["3", "1"]
    assert await ids(since="2026-03-01T11:00:00Z") == ["3", "2"]
    assert await ids(since="1772362800") == ["3", "2"]  # epoch seconds
    assert await ids(limit="2") == ["3", "2"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "between"),
        ({"limit": "5000"}, "between"),
        ({"limit": "x"}, "whole"),
        ({"since": "tuesday"}, "since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"since": "9999-12-31T23:59:59-01:00"}, "out of range"),
    ],
)
async def test_invalid_parameters(
    client: httpx.AsyncClient, new_app: NewApp, params: dict, message: str
) -> None:
    response = await client.get(
        f"/api/v1/apps/{new_app.app.id}/events", params=params, auth=basic(new_app)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert message in response.json()["error"]["message"]


async def test_reads_need_the_apps_own_api_credentials(
    client: httpx.AsyncClient, catalog: Catalog, new_app: NewApp
) -> None:
    url = f"/api/v1/apps/{new_app.app.id}/events"
    anonymous = await client.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong = await client.get(url, auth=(new_app.app.api_key, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    public_key = await client.get(url, auth=(new_app.app.app_key, ""))
    assert public_key.status_code == 401
    garbage = await client.get(url, headers={"authorization": "Basic !!!"})
    assert garbage.status_code == 401
    other = catalog.create_app("Other")
    cross = await client.get(url, auth=(other.app.api_key, other.api_secret))
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "forbidden"


async def test_health_readiness_and_unknown_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    missing = await client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_readiness_fails_when_the_store_cannot_write(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.store.db.conn.execute("ALTER TABLE tally_schema RENAME TO moved")  # type: ignore[attr-defined]
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "store_unavailable"
    services.store.db.conn.execute("ALTER TABLE moved RENAME TO tally_schema")  # type: ignore[attr-defined]
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_count_accepted_and_dropped_events(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    def value(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    accepted = 'tally_events_accepted_total{protocol="native"}'
    dropped = 'tally_events_dropped_total{protocol="native",reason="missing_name"}'
    before = (await client.get("/metrics")).text
    await send(client, new_app, [{"name": "a"}, {"name": "b"}, {"name": ""}])
    after = (await client.get("/metrics")).text
    assert value(after, accepted) - value(before, accepted) == 2
    assert value(after, dropped) - value(before, dropped) == 1
    assert "tally_store_commit_seconds_bucket" in after
    assert "tally_store_commit_rows_bucket" in after
    assert 'tally_ingest_request_events_bucket{le="5.0",protocol="native"}' in after


async def test_openapi_describes_every_endpoint(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Every path the app serves, with every method, is in /openapi.json, and nothing else."""
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    app = TallyApp(services, close_services=False)
    served: dict[str, set[str]] = {}
    for path, endpoint in app.ingest.items():
        methods = getattr(getattr(endpoint, "adapter", None), "methods", ("GET",))
        served[path] = {m.lower() for m in methods}
    for route in app.api.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        served.setdefault(path, set()).update(m.lower() for m in route.methods - {"HEAD"})
    documented = {
        path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in document["paths"].items()
    }
    assert set(documented) == set(served)
    for path, methods in served.items():
        assert methods <= documented[path], path
