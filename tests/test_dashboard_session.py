"""Dashboard log-in through the in-process app: the session cookie, CSRF, throttling, and a
session as an alternative to an app's Basic credentials on the management API."""

from __future__ import annotations

import httpx
import pytest

from tally.catalog import NewApp
from tally.http.app import TallyApp
from tally.http.dashboard_auth import COOKIE
from tally.http.services import Services
from tally.http.throttle import LoginThrottle

EMAIL = "ann@example.com"
PASSWORD = "correct horse"


@pytest.fixture
def user(services: Services) -> str:
    services.catalog.users.create(EMAIL, PASSWORD)
    return EMAIL


async def log_in(client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD) -> str:
    """Logs the client in (its cookie jar keeps the session); returns the CSRF token."""
    response = await client.post("/api/v1/session", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in header.split(";")]
    assert name_value.startswith(f"{COOKIE}=")
    found = {"value": name_value.split("=", 1)[1]}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        found[key.lower()] = value
    return found


async def test_log_in_sets_a_session_cookie_and_answers_a_csrf_token(
    client: httpx.AsyncClient, user: str, services: Services
) -> None:
    response = await client.post(
        "/api/v1/session", json={"email": "  ANN@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == EMAIL and len(body["csrf_token"]) == 64
    cookie = cookie_attributes(response)
    assert "httponly" in cookie and cookie["samesite"].lower() == "lax" and cookie["path"] == "/"
    assert "secure" not in cookie  # plain http
    assert int(cookie["max-age"]) == 14 * 24 * 3600

    current = await client.get("/api/v1/session")
    assert current.status_code == 200
    assert current.json()["email"] == EMAIL
    assert current.json()["csrf_token"] == body["csrf_token"]
    assert "expires_at" in current.json()
    assert cookie_attributes(current)["value"] == cookie["value"]  # refreshed, same session
    found = services.catalog.users.get(EMAIL)
    assert found is not None and found.last_login_at is not None


@pytest.mark.parametrize(
    ("base_url", "headers"),
    [("https://tally.test", {}), ("http://tally.test", {"x-forwarded-proto": "https"})],
)
async def test_the_cookie_is_secure_over_https(
    services: Services, user: str, base_url: str, headers: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=TallyApp(services, close_services=False))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        response = await http.post(
            "/api/v1/session", json={"email": EMAIL, "password": PASSWORD}, headers=headers
        )
    assert response.status_code == 200
    assert "secure" in cookie_attributes(response)


async def test_wrong_credentials_do_not_say_which_part_was_wrong(
    client: httpx.AsyncClient, user: str
) -> None:
    replies = [
        await client.post("/api/v1/session", json={"email": EMAIL, "password": "wrong horse"}),
        await client.post(
            "/api/v1/session", json={"email": "bob@example.com", "password": PASSWORD}
        ),
    ]
    for reply in replies:
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_login"
        assert "set-cookie" not in reply.headers
    assert replies[0].json() == replies[1].json()
    bad = await client.post("/api/v1/session", json={"email": EMAIL})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_body"
    bad = await client.post("/api/v1/session", content=b"{")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


async def test_without_a_session(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get("/api/v1/session")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    client.cookies.set(COOKIE, "made-up")
    response = await client.get("/api/v1/session")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_session"
    assert "www-authenticate" not in response.headers  # no browser Basic prompt for the dashboard


async def test_log_out_needs_csrf_and_ends_the_session_on_the_server(
    client: httpx.AsyncClient, user: str
) -> None:
    csrf = await log_in(client)
    token = client.cookies[COOKIE]
    refused = await client.delete("/api/v1/session")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    refused = await client.delete("/api/v1/session", headers={"x-csrf-token": "nope"})
    assert refused.status_code == 403
    assert (await client.get("/api/v1/session")).status_code == 200  # still logged in
    done = await client.delete("/api/v1/session", headers={"x-csrf-token": csrf})
    assert done.status_code == 204
    cleared = cookie_attributes(done)
    assert cleared["value"] in ("", '""') and cleared["max-age"] == "0"
    # The old cookie, kept by someone who copied it, no longer works.
    client.cookies.set(COOKIE, token)
    response = await client.get("/api/v1/session")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_session"
    # Logging out again is harmless.
    assert (await client.delete("/api/v1/session")).status_code == 204


async def test_logging_in_again_replaces_the_session(client: httpx.AsyncClient, user: str) -> None:
    await log_in(client)
    first = client.cookies[COOKIE]
    await log_in(client)
    second = client.cookies[COOKIE]
    assert first != second
    client.cookies.set(COOKIE, first)
    assert (await client.get("/api/v1/session")).status_code == 401


async def test_five_failures_within_15_minutes_are_throttled(
    client: httpx.AsyncClient, user: str
) -> None:
    for _ in range(5):
        response = await client.post(
            "/api/v1/session", json={"email": EMAIL, "password": "wrong horse"}
        )
        assert response.status_code == 401
    # Now even the right password waits, and the answer says how long.
    for password in ("wrong horse", PASSWORD):
        response = await client.post(
            "/api/v1/session", json={"email": EMAIL.upper(), "password": password}
        )
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_attempts"
        assert 0 < int(response.headers["retry-after"]) <= 15 * 60
    # Other emails are not affected.
    response = await client.post(
        "/api/v1/session", json={"email": "bob@example.com", "password": "wrong horse"}
    )
    assert response.status_code == 401


def test_the_throttle_forgets_old_failures_and_successes_reset_it() -> None:
    now = [1000.0]
    throttle = LoginThrottle(attempts=5, window=900, clock=lambda: now[0])
    for _ in range(4):
        throttle.failed("ann")
        now[0] += 60
    assert throttle.retry_after("ann") is None
    throttle.failed("ann")
    assert throttle.retry_after("ann") == 900 - 4 * 60  # until the first failure is 15 min old
    now[0] += 900 - 4 * 60
    assert throttle.retry_after("ann") is None
    throttle.failed("ann")
    assert throttle.retry_after("ann") == 60
    throttle.succeeded("ann")
    assert throttle.retry_after("ann") is None


# The management API with a session.


async def test_a_session_reaches_every_apps_management_api(
    client: httpx.AsyncClient, user: str, new_app: NewApp
) -> None:
    app_id = new_app.app.id
    csrf = await log_in(client)
    response = await client.get(f"/api/v1/apps/{app_id}/definitions")
    assert response.status_code == 200, response.text
    assert response.json()["events"]
    definition = {"name": "order.paid", "properties": [{"name": "amount", "type": "number"}]}
    url = f"/api/v1/apps/{app_id}/definitions/order.paid"
    refused = await client.put(url, json=definition)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert (await client.get(url)).status_code == 404  # nothing was written
    created = await client.put(url, json=definition, headers={"x-csrf-token": csrf})
    assert created.status_code == 201, created.text
    query = {"kind": "trends", "from": "2026-03-01", "to": "2026-03-02", "series": []}
    assert (await client.post(f"/api/v1/apps/{app_id}/query", json=query)).status_code == 403
    assert (await client.get(f"/api/v1/apps/{app_id}/events")).status_code == 200
    missing = await client.get(f"/api/v1/apps/{'0' * 24}/definitions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # Basic credentials need no CSRF token, and win over a cookie sent with them.
    basic = (new_app.app.api_key, new_app.api_secret)
    response = await client.delete(url, auth=basic)
    assert response.status_code == 204
    response = await client.get(url, auth=("wrong", "credentials"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"


async def test_an_ended_session_is_refused_by_the_management_api(
    client: httpx.AsyncClient, user: str, new_app: NewApp, services: Services
) -> None:
    await log_in(client)
    url = f"/api/v1/apps/{new_app.app.id}/settings"
    assert (await client.get(url)).status_code == 200
    services.catalog.users.set_password(EMAIL, "a new password")  # ends the user's sessions
    response = await client.get(url)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_session"
    client.cookies.clear()
    response = await client.get(url)
    assert response.status_code == 401 and "log in" in response.json()["error"]["message"]


async def test_list_and_create_apps_with_a_session_only(
    client: httpx.AsyncClient, user: str, new_app: NewApp
) -> None:
    basic = (new_app.app.api_key, new_app.api_secret)
    assert (await client.get("/api/v1/apps")).status_code == 401
    assert (await client.get("/api/v1/apps", auth=basic)).status_code == 401
    refused = await client.post("/api/v1/apps", json={"name": "Blog"}, auth=basic)
    assert refused.status_code == 401
    csrf = await log_in(client)
    listed = await client.get("/api/v1/apps")
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["apps"]] == [new_app.app.id]
    assert "api_secret" not in listed.json()["apps"][0]

    refused = await client.post("/api/v1/apps", json={"name": "Blog"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    created = await client.post(
        "/api/v1/apps", json={"name": "Blog"}, headers={"x-csrf-token": csrf}
    )
    assert created.status_code == 201, created.text
    blog = created.json()
    assert blog["name"] == "Blog" and blog["api_secret"] and blog["app_key"]
    listed = await client.get("/api/v1/apps")
    assert sorted(a["name"] for a in listed.json()["apps"]) == ["Blog", "Test app"]
    assert "api_secret" not in str(listed.json())
    # The new app's credentials work on its own API.
    response = await client.get(
        f"/api/v1/apps/{blog['id']}/settings", auth=(blog["api_key"], blog["api_secret"])
    )
    assert response.status_code == 200
    empty = await client.post("/api/v1/apps", json={"name": "  "}, headers={"x-csrf-token": csrf})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_name"


async def test_rotating_keys_without_overlap_refuses_the_old_secret_at_once(
    client: httpx.AsyncClient, user: str, new_app: NewApp
) -> None:
    """``overlap_seconds: 0``; the default overlap is tested in tests/security/."""
    app = new_app.app
    old = (app.api_key, new_app.api_secret)
    settings_url = f"/api/v1/apps/{app.id}/settings"
    assert (await client.get(settings_url, auth=old)).status_code == 200  # remembered as verified
    csrf = await log_in(client)
    rotate = f"/api/v1/apps/{app.id}/rotate"
    assert (await client.post(rotate)).status_code == 403
    no_overlap = {"overlap_seconds": 0}
    rotated = await client.post(rotate, json=no_overlap, headers={"x-csrf-token": csrf})
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["previous_valid_until"] is None
    assert body["api_secret"] != new_app.api_secret
    assert (body["api_key"], body["app_key"]) == (app.api_key, app.app_key)
    response = await client.get(settings_url, auth=old)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"
    assert (
        await client.get(settings_url, auth=(app.api_key, body["api_secret"]))
    ).status_code == 200

    # A new app key too: the old one stops taking events.
    ingest = {"events": [{"name": "view"}]}
    sent = await client.post("/api/v1/events", json=ingest, headers={"x-tally-key": app.app_key})
    assert sent.status_code == 200
    rotated = await client.post(
        rotate, json={"app_key": True, **no_overlap}, headers={"x-csrf-token": csrf}
    )
    assert rotated.status_code == 200
    new_key = rotated.json()["app_key"]
    assert new_key != app.app_key
    sent = await client.post("/api/v1/events", json=ingest, headers={"x-tally-key": app.app_key})
    assert sent.status_code == 401 and sent.json()["error"]["code"] == "unknown_app_key"
    sent = await client.post("/api/v1/events", json=ingest, headers={"x-tally-key": new_key})
    assert sent.status_code == 200

    missing = await client.post(f"/api/v1/apps/{'0' * 24}/rotate", headers={"x-csrf-token": csrf})
    assert missing.status_code == 404
    bad = await client.post(rotate, json={"app_key": "yes"}, headers={"x-csrf-token": csrf})
    assert bad.status_code == 400
