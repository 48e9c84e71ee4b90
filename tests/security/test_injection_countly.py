"""Countly's injection cases (its ``test/3.api.write/9.nosql.injection.js``, and more): parameters
sent as objects (``{"$ne": null}``) or arrays, in JSON bodies, in form bodies and query strings
(``app_key[$ne]=x``, ``app_key[]=a``, a repeated name), on the write API (``/i``, ``/i/bulk``),
``/o/sdk`` and the read API (``/o``, ``/o/analytics/events``).

Each is refused in Countly's shape (``{"result": ...}``) with Countly's status, no event is stored
in any app, and a valid key or id as an array's element authenticates nothing. A refused request
that names a known app with a plain key is kept as one failed event of that app (as every refused
request is, docs/protocols.md); a request naming no app leaves every table as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from injection_support import AppAccess, Deployment, deployment, table_counts

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEVICE = "injection-probe-device"
NO_APP = {"result": "App does not exist"}
MISSING = {"result": 'Missing parameter "app_key" or "device_id"'}
SUCCESS = {"result": "Success"}


def invalid(name: str) -> dict[str, str]:
    return {"result": f'Invalid parameter "{name}"'}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tally(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    """The target app and a second one (the canary): nothing may land in either."""
    async with deployment("duckdb", request, tmp_path_factory.mktemp("countly")) as found:
        yield found


@pytest.fixture
def client(tally: Deployment) -> httpx.AsyncClient:
    return tally.client


@pytest.fixture
def app(tally: Deployment) -> AppAccess:
    return tally.app


def operators(valid: str) -> dict[str, Any]:
    """Objects and arrays standing for a value; ``valid`` is a real key or id."""
    return {
        "regex-prefix": {"$regex": "^" + valid[0]},
        "ne-null": {"$ne": None},
        "gt-empty": {"$gt": ""},
        "array-valid-first": [valid, "x"],
        "array-of-valid": [valid],
        "empty-array": [],
        "nested": {"$in": [valid]},
    }


OPERATORS = list(operators("k"))


class Counts:
    """Rows of every table, before and after; what changed."""

    def __init__(self, tally: Deployment) -> None:
        self.tally = tally
        self.before: dict[str, int] = {}

    async def start(self) -> Counts:
        self.before = await table_counts(self.tally.services.store, self.tally.catalog)
        return self

    async def changed(self) -> dict[str, int]:
        after = await table_counts(self.tally.services.store, self.tally.catalog)
        changed = {name: after[name] - self.before.get(name, 0) for name in after}
        return {name: delta for name, delta in changed.items() if delta}

    async def stored(self) -> tuple[int, int]:
        """(events, failed events) added, over every app."""
        changed = await self.changed()
        return changed.get("store.events", 0), changed.get("store.failed_events", 0)

    async def assert_nothing_written(self) -> None:
        assert await self.changed() == {}

    async def assert_kept_as_failed(self, app_id: str) -> None:
        """No event; the refused request as one failed event of ``app_id`` only."""
        assert await self.changed() == {"store.failed_events": 1}
        [(owner,)] = await self.tally.services.store.run_sql(
            "SELECT app_id FROM failed_events ORDER BY received_at DESC LIMIT 1", []
        )
        assert owner == app_id


@pytest_asyncio.fixture(loop_scope="module")
async def counts(tally: Deployment) -> Counts:
    return await Counts(tally).start()


def countly_json(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


# --- app_key as an object or array: no app, nothing written anywhere --------------------------


@pytest.mark.parametrize("path", ["/i", "/o/sdk"])
@pytest.mark.parametrize("operator", OPERATORS)
async def test_an_app_key_object_or_array_in_a_json_body_names_no_app(
    client: httpx.AsyncClient, app: AppAccess, counts: Counts, path: str, operator: str
) -> None:
    key = operators(app.app_key)[operator]
    body = {"app_key": key, "device_id": DEVICE, "begin_session": 1, "method": "sc"}
    body["events"] = [{"key": "injected"}]
    response = await client.post(path, json=body)
    assert (response.status_code, countly_json(response)) == (400, NO_APP)
    await counts.assert_nothing_written()


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("where", ["item", "top-level"])
async def test_an_app_key_object_or_array_in_a_bulk_writes_nothing(
    client: httpx.AsyncClient, app: AppAccess, counts: Counts, operator: str, where: str
) -> None:
    key = operators(app.app_key)[operator]
    item: dict[str, Any] = {"device_id": DEVICE, "begin_session": 1, "events": [{"key": "x"}]}
    body: dict[str, Any] = {"requests": [item]}
    if where == "item":
        item["app_key"] = key
    else:
        body["app_key"] = key
    response = await client.post("/i/bulk", json=body)
    assert (response.status_code, countly_json(response)) == (200, SUCCESS)
    await counts.assert_nothing_written()


def query_forms(valid: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Query strings (also sent as form bodies) that shape ``app_key`` as PHP or qs would, and
    the reply: a bracketed name is another parameter (Countly's parser does not nest them), so
    the app key is missing; a repeated name is an array, which names no app."""
    return {
        "ne-bracket": (f"app_key[$ne]=x&device_id={DEVICE}", MISSING),
        "array-brackets": (f"app_key[]={valid}&app_key[]=x&device_id={DEVICE}", MISSING),
        "index-bracket": (f"app_key[0]={valid}&device_id={DEVICE}", MISSING),
        "regex-bracket": (f"app_key[$regex]=.*&device_id={DEVICE}", MISSING),
        "repeated-valid-first": (f"app_key={valid}&app_key=x&device_id={DEVICE}", NO_APP),
        "repeated-valid-last": (f"app_key=x&app_key={valid}&device_id={DEVICE}", NO_APP),
        "repeated-valid-twice": (f"app_key={valid}&app_key={valid}&device_id={DEVICE}", NO_APP),
    }


@pytest.mark.parametrize("transport", ["GET", "form", "POST-query"])
@pytest.mark.parametrize("form", list(query_forms("k")))
async def test_an_app_key_shaped_in_a_query_string_names_no_app(
    client: httpx.AsyncClient, app: AppAccess, counts: Counts, transport: str, form: str
) -> None:
    query, expected = query_forms(app.app_key)[form]
    query += "&begin_session=1&events=" + json.dumps([{"key": "injected"}])
    if transport == "GET":
        response = await client.get(f"/i?{query}")
    elif transport == "POST-query":
        response = await client.post(f"/i?{query}")
    else:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        response = await client.post("/i", content=query.encode(), headers=headers)
    assert (response.status_code, countly_json(response)) == (400, expected)
    await counts.assert_nothing_written()


# --- other one-value parameters as objects or arrays, with a valid app key -------------------

SCALARS = ["device_id", "begin_session", "session_duration", "timestamp", "checksum"]


@pytest.mark.parametrize("name", SCALARS)
@pytest.mark.parametrize("operator", ["ne-null", "array-valid-first", "nested"])
async def test_a_one_value_parameter_as_an_object_or_array_is_refused(
    client: httpx.AsyncClient,
    app: AppAccess,
    counts: Counts,
    name: str,
    operator: str,
) -> None:
    body: dict[str, Any] = {"app_key": app.app_key, "device_id": DEVICE}
    body.update(begin_session=1, events=[{"key": "injected"}])
    body[name] = operators(DEVICE)[operator]
    response = await client.post("/i", json=body)
    assert (response.status_code, countly_json(response)) == (400, invalid(name))
    await counts.assert_kept_as_failed(app.id)


@pytest.mark.parametrize("name", SCALARS)
async def test_a_repeated_one_value_parameter_is_refused(
    client: httpx.AsyncClient, app: AppAccess, counts: Counts, name: str
) -> None:
    params = [("app_key", app.app_key), ("device_id", DEVICE), ("begin_session", "1")]
    params = [(k, v) for k, v in params if k != name] + [(name, "1"), (name, "2")]
    response = await client.get("/i?" + urlencode(params))
    assert (response.status_code, countly_json(response)) == (400, invalid(name))
    await counts.assert_kept_as_failed(app.id)


async def test_a_device_id_object_in_a_bulk_item_is_skipped(
    tally: Deployment, client: httpx.AsyncClient, app: AppAccess, counts: Counts
) -> None:
    key = app.app_key
    items = [
        {"app_key": key, "device_id": {"$ne": None}, "begin_session": 1},
        {"app_key": key, "device_id": DEVICE, "events": [{"key": "kept"}]},
    ]
    response = await client.post("/i/bulk", json={"requests": items})
    assert (response.status_code, countly_json(response)) == (200, SUCCESS)
    assert await counts.stored() == (1, 0)  # only the valid item's event
    [(name, device)] = await tally.services.store.run_sql(
        "SELECT name, device_id FROM events WHERE app_id = ? ORDER BY received_at DESC LIMIT 1",
        [app.id],
    )
    assert (name, device) == ("kept", DEVICE)


@pytest.mark.parametrize("name", ["events", "metrics", "user_details"])
@pytest.mark.parametrize("operator", ["ne-null", "array-valid-first"])
async def test_a_json_parameter_of_the_wrong_shape_stores_nothing_of_it(
    client: httpx.AsyncClient, app: AppAccess, counts: Counts, name: str, operator: str
) -> None:
    """Countly ignores ``events`` that is not an array and ``metrics``/``user_details`` that are
    not objects; an object of operators is a plain object (its keys are stored as names)."""
    value = operators(DEVICE)[operator]
    shaped = {"events": list, "metrics": dict, "user_details": dict}[name]
    body = {"app_key": app.app_key, "device_id": DEVICE, name: value}
    response = await client.post("/i", json=body)
    assert (response.status_code, countly_json(response)) == (200, SUCCESS)
    if not isinstance(value, shaped) or name == "metrics":  # metrics alone make no event
        assert await counts.stored() == (0, 0)
    elif name == "events":  # an array of strings: each item is kept as a failed event
        assert await counts.stored() == (0, len(value))
    else:  # user.details with the property "$ne" (null), as sent
        assert await counts.stored() == (1, 0)


# --- the read API: app_id, api_key and api_secret as objects or arrays -----------------------


def read_auth(app: AppAccess) -> dict[str, str]:
    key, secret = app.auth
    return {"app_id": app.id, "api_key": key, "api_secret": secret}


@pytest.mark.parametrize("path", ["/o", "/o/analytics/events"])
@pytest.mark.parametrize("name", ["app_id", "api_key", "api_secret"])
@pytest.mark.parametrize("operator", OPERATORS)
async def test_read_credentials_as_objects_or_arrays_authenticate_nothing(
    client: httpx.AsyncClient,
    app: AppAccess,
    counts: Counts,
    path: str,
    name: str,
    operator: str,
) -> None:
    body: dict[str, Any] = {**read_auth(app), "method": "get_events", "event": "x"}
    body[name] = operators(body[name])[operator]
    response = await client.post(path, json=body)
    if name == "app_id":
        assert (response.status_code, countly_json(response)) == (400, invalid("app_id"))
    else:
        expected = {"result": "User does not exist"}
        assert (response.status_code, countly_json(response)) == (401, expected)
    await counts.assert_nothing_written()


@pytest.mark.parametrize("name", ["app_id", "api_key", "api_secret"])
async def test_repeated_read_credentials_authenticate_nothing(
    client: httpx.AsyncClient, app: AppAccess, name: str
) -> None:
    auth = read_auth(app)
    params = [(k, v) for k, v in auth.items() if k != name] + [(name, auth[name]), (name, "x")]
    response = await client.get("/o?" + urlencode([*params, ("method", "get_events")]))
    assert response.status_code in (400, 401), response.text
    assert set(countly_json(response)) == {"result"}


async def test_the_controls_authenticate(client: httpx.AsyncClient, app: AppAccess) -> None:
    """The same requests with plain values work: the refusals above are about the shapes."""
    body = {"app_key": app.app_key, "device_id": DEVICE, "events": [{"key": "ok"}]}
    response = await client.post("/i", json=body)
    assert (response.status_code, response.json()) == (200, SUCCESS)
    response = await client.post("/o", json={**read_auth(app), "method": "get_events"})
    assert response.status_code == 200, response.text
    assert "ok" in response.json()["list"]
    response = await client.post("/o/sdk", json={**body, "method": "sc"})
    assert response.status_code == 200, response.text
