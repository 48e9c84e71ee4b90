"""Key rotation with an overlap window: the replaced API secret, app key and the workspace JWTs of
the old secret keep working until the overlap ends, then are refused; on both catalog engines,
through the HTTP API (`POST /api/v1/apps/{id}/rotate`) and the CLI (`tally apps rotate`)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from security_support import events_of, log_in, tally_cli

from tally import tokens
from tally.catalog import Catalog, NewApp, sqlite_url
from tally.catalog.schema import apps
from tally.cli import main
from tally.http.apps import AppResolver
from tally.http.services import Services
from tally.tokens import WORKSPACE_LIFETIME

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


def end_overlap(catalog: Catalog, app_id: str) -> None:
    """Move the app's overlap ends to a second ago, as if the overlap had run its course."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with catalog.engine.begin() as conn:
        conn.execute(
            apps.update()
            .where(apps.c.id == app_id)
            .values(previous_secret_until=past, previous_app_key_until=past)
        )


def test_the_old_credentials_work_until_the_overlap_ends(any_catalog: Catalog) -> None:
    catalog = any_catalog
    old = catalog.create_app("Shop")
    app = old.app
    old_token = catalog.issue_workspace_token(app.api_key, old.api_secret)
    assert old_token is not None
    before = datetime.now(UTC)
    new = catalog.rotate_secret(app.id, app_key=True, overlap=HOUR)
    assert new.api_secret != old.api_secret and new.app.app_key != app.app_key
    assert new.app.previous_app_key == app.app_key
    until = new.app.previous_secret_until
    assert until is not None and before + HOUR <= until <= datetime.now(UTC) + HOUR
    assert new.app.previous_app_key_until == until

    for secret in (old.api_secret, new.api_secret):
        found = catalog.authenticate(app.api_key, secret)
        assert found is not None and found.id == app.id
    assert catalog.authenticate(app.api_key, "wrong") is None
    for key in (app.app_key, new.app.app_key):
        found = catalog.app_by_key(key)
        assert found is not None and found.id == app.id and found.app_key == new.app.app_key
    for token in (old_token, catalog.issue_workspace_token(app.api_key, old.api_secret)):
        assert token is not None and catalog.app_by_workspace_token(token) is not None

    end_overlap(catalog, app.id)
    assert catalog.authenticate(app.api_key, old.api_secret) is None
    assert catalog.app_by_key(app.app_key) is None
    assert catalog.app_by_workspace_token(old_token) is None
    assert catalog.issue_workspace_token(app.api_key, old.api_secret) is None
    current = catalog.authenticate(app.api_key, new.api_secret)
    assert current is not None and current.previous_app_key is None
    assert current.previous_secret_until is None
    assert catalog.app_by_key(new.app.app_key) is not None


def test_a_short_overlap_ends_on_the_clock(catalog: Catalog) -> None:
    old = catalog.create_app("Shop")
    rotated = catalog.rotate_secret(old.app.id, app_key=True, overlap=timedelta(seconds=1))
    until = rotated.app.previous_secret_until
    assert until is not None
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert catalog.authenticate(old.app.api_key, old.api_secret) is None
    assert catalog.app_by_key(old.app.app_key) is None
    assert catalog.authenticate(old.app.api_key, rotated.api_secret) is not None


def test_no_overlap_and_rotations_within_an_overlap(catalog: Catalog) -> None:
    first = catalog.create_app("Shop")
    app = first.app
    second = catalog.rotate_secret(app.id, app_key=True, overlap=HOUR)
    # A secret-only rotation within the overlap: the first secret stops (one previous secret is
    # kept), the first app key keeps its own overlap.
    third = catalog.rotate_secret(app.id, overlap=HOUR)
    assert catalog.authenticate(app.api_key, first.api_secret) is None
    assert catalog.authenticate(app.api_key, second.api_secret) is not None
    assert catalog.app_by_key(app.app_key) is not None
    assert third.app.previous_app_key_until == second.app.previous_app_key_until

    fourth = catalog.rotate_secret(app.id, app_key=True, overlap=timedelta(0))
    assert fourth.app.previous_secret_until is None and fourth.app.previous_app_key is None
    assert catalog.authenticate(app.api_key, third.api_secret) is None
    for key in (app.app_key, second.app.app_key):
        assert catalog.app_by_key(key) is None

    with pytest.raises(ValueError, match="overlap"):
        catalog.rotate_secret(app.id, overlap=timedelta(days=31))
    with pytest.raises(ValueError, match="overlap"):
        catalog.rotate_secret(app.id, overlap=timedelta(seconds=-1))
    with pytest.raises(KeyError):
        catalog.rotate_secret("0" * 24)


# Through the HTTP API.


async def ingest(client: httpx.AsyncClient, key: str, name: str) -> httpx.Response:
    return await client.post(
        "/api/v1/events", json={"events": [{"name": name}]}, headers={"x-tally-key": key}
    )


async def test_rotating_through_the_api_keeps_the_old_ones_for_the_overlap(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    app = new_app.app
    old_auth = (app.api_key, new_app.api_secret)
    settings = f"/api/v1/apps/{app.id}/settings"
    csrf = await log_in(client, services)
    rotate = f"/api/v1/apps/{app.id}/rotate"
    before = datetime.now(UTC)
    rotated = await client.post(rotate, json={"app_key": True}, headers={"x-csrf-token": csrf})
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    until = datetime.fromisoformat(body["previous_valid_until"])
    assert before + timedelta(hours=24) <= until <= datetime.now(UTC) + timedelta(hours=24)
    assert body["previous_app_key"] == app.app_key
    assert body["previous_app_key_until"] == body["previous_secret_until"]
    assert body["app_key"] != app.app_key and body["api_secret"] != new_app.api_secret
    new_auth = (app.api_key, body["api_secret"])
    client.cookies.clear()  # from here on, only the app's own credentials

    for auth in (old_auth, new_auth):
        assert (await client.get(settings, auth=auth)).status_code == 200
    for key, name in ((app.app_key, "old.key"), (body["app_key"], "new.key")):
        assert (await ingest(client, key, name)).status_code == 200
    stored = {e["name"] for e in await events_of(services, app.id)}
    assert stored == {"old.key", "new.key"}

    end_overlap(services.catalog, app.id)
    # The resolver remembers app keys and right API credentials for services.resolver.ttl (1 s),
    # and an edit made straight in the database is not announced: wait it out. (An overlap that
    # runs its course is known to the cache: the tests at the end of this file.)
    await asyncio.sleep(services.resolver.ttl + 0.1)
    response = await client.get(settings, auth=old_auth)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"
    refused = await ingest(client, app.app_key, "late")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unknown_app_key"
    assert (await client.get(settings, auth=new_auth)).status_code == 200
    assert (await ingest(client, body["app_key"], "new.key")).status_code == 200


async def test_the_overlap_is_checked(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    csrf = await log_in(client, services)
    rotate = f"/api/v1/apps/{new_app.app.id}/rotate"
    for bad in (-1, 30 * 24 * 3600 + 1, "3600", None):
        response = await client.post(
            rotate, json={"overlap_seconds": bad}, headers={"x-csrf-token": csrf}
        )
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_body"
    response = await client.post(
        rotate, json={"overlap_seconds": 3600}, headers={"x-csrf-token": csrf}
    )
    assert response.status_code == 200
    until = datetime.fromisoformat(response.json()["previous_valid_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= HOUR
    assert response.json()["previous_app_key"] is None  # the app key was not rotated
    # Nothing was rotated by the refused requests: the original secret is the previous one.
    assert services.catalog.authenticate(new_app.app.api_key, new_app.api_secret) is not None


def test_tally_apps_rotate(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run = tally_cli(data)

    created = json.loads(run("apps", "create", "Shop", "--json"))
    out = run("apps", "rotate", created["id"], "--app-key", "--overlap", "600")
    assert "API secret" in out and "keep working until" in out
    new_secret = out.split("API secret", 1)[1].split()[0]
    rotated = json.loads(run("apps", "rotate", created["app_key"], "--overlap", "0", "--json"))
    assert rotated["previous_valid_until"] is None
    assert rotated["previous_app_key"] == created["app_key"]  # rotated by the first call
    shown = run("apps", "show", created["id"])
    assert "old app key" in shown and created["app_key"] in shown

    catalog = Catalog(sqlite_url(Path(data)))
    try:
        assert catalog.authenticate(created["api_key"], new_secret) is None
        assert catalog.authenticate(created["api_key"], rotated["api_secret"]) is not None
        assert catalog.app_by_key(created["app_key"]) is not None  # the first rotation's overlap
    finally:
        catalog.close()
    result = CliRunner().invoke(main, ["apps", "rotate", "nope", "--data", data])
    assert result.exit_code == 1 and "no app" in result.output


async def test_a_cached_app_record_does_not_outlive_the_overlap(catalog: Catalog) -> None:
    """A worker that trusts its app records for a long time (a minute on PostgreSQL, where
    rotations are announced but the end of an overlap is not) still refuses the old app key the
    moment its overlap ends."""
    app = catalog.create_app("Shop").app
    resolver = AppResolver(catalog, ttl=3600, listen=False)
    rotated = catalog.rotate_secret(app.id, app_key=True, overlap=timedelta(seconds=1)).app
    assert (await resolver.by_app_key(app.app_key)) is not None  # cached for an hour
    until = rotated.previous_app_key_until
    assert until is not None
    await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await resolver.by_app_key(app.app_key) is None
    assert (await resolver.by_app_key(rotated.app_key)) is not None


async def test_api_credentials_are_remembered_once_right(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right credentials are verified against the catalog once a ttl, wrong ones every time."""
    new = catalog.create_app("Shop")
    app = new.app
    resolver = AppResolver(catalog, ttl=3600, listen=False)
    assert (await resolver.by_api_credentials(app.api_key, new.api_secret)) == app
    asked: list[str] = []
    real = catalog.authenticate_until

    def counted(key: str, secret: str):  # type: ignore[no-untyped-def]
        asked.append(secret)
        return real(key, secret)

    monkeypatch.setattr(catalog, "authenticate_until", counted)
    assert (await resolver.by_api_credentials(app.api_key, new.api_secret)) == app
    assert asked == []  # remembered
    assert await resolver.by_api_credentials(app.api_key, "wrong") is None
    assert await resolver.by_api_credentials(app.api_key, "wrong") is None
    assert asked == ["wrong", "wrong"]  # never remembered
    resolver.forget(app.id)  # this process changed the app
    assert (await resolver.by_api_credentials(app.api_key, new.api_secret)) == app
    assert asked[-1] == new.api_secret


async def test_a_remembered_previous_secret_stops_with_its_overlap(catalog: Catalog) -> None:
    new = catalog.create_app("Shop")
    app = new.app
    resolver = AppResolver(catalog, ttl=3600, listen=False)
    rotated = catalog.rotate_secret(app.id, overlap=timedelta(seconds=1))
    assert (await resolver.by_api_credentials(app.api_key, new.api_secret)) is not None
    until = rotated.app.previous_secret_until
    assert until is not None
    await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await resolver.by_api_credentials(app.api_key, new.api_secret) is None
    assert (await resolver.by_api_credentials(app.api_key, rotated.api_secret)) is not None


async def test_workspace_tokens_are_remembered_until_they_expire(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Synerise workspace JWT is checked against the catalog once a ttl, a wrong one every
    time, and a remembered one no longer than it is valid."""
    new = catalog.create_app("Shop")
    app = new.app
    resolver = AppResolver(catalog, ttl=3600, listen=False)
    token = catalog.issue_workspace_token(app.api_key, new.api_secret)
    assert token is not None
    assert (await resolver.by_workspace_token(token)) == app
    asked: list[str] = []
    real = catalog.workspace_token_until

    def counted(text: str):  # type: ignore[no-untyped-def]
        asked.append(text)
        return real(text)

    monkeypatch.setattr(catalog, "workspace_token_until", counted)
    assert (await resolver.by_workspace_token(token)) == app
    assert asked == []  # remembered
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert await resolver.by_workspace_token(forged) is None
    assert await resolver.by_workspace_token(forged) is None
    assert asked == [forged, forged]  # never remembered

    expiring = tokens.issue_workspace_token(
        app, _secret_hash(catalog, app.id), now=datetime.now(UTC) - WORKSPACE_LIFETIME + SECOND
    )
    assert (await resolver.by_workspace_token(expiring)) == app
    await asyncio.sleep(1.05)
    assert await resolver.by_workspace_token(expiring) is None  # expired while remembered


async def test_a_remembered_token_of_the_previous_secret_stops_with_its_overlap(
    catalog: Catalog,
) -> None:
    new = catalog.create_app("Shop")
    app = new.app
    resolver = AppResolver(catalog, ttl=3600, listen=False)
    token = catalog.issue_workspace_token(app.api_key, new.api_secret)
    assert token is not None
    rotated = catalog.rotate_secret(app.id, overlap=timedelta(seconds=1))
    assert (await resolver.by_workspace_token(token)) is not None
    until = rotated.app.previous_secret_until
    assert until is not None
    await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await resolver.by_workspace_token(token) is None
    fresh = catalog.issue_workspace_token(app.api_key, rotated.api_secret)
    assert fresh is not None and (await resolver.by_workspace_token(fresh)) is not None


def _secret_hash(catalog: Catalog, app_id: str) -> str:
    with catalog.engine.connect() as conn:
        return conn.execute(
            sa.select(apps.c.api_secret_hash).where(apps.c.id == app_id)
        ).scalar_one()
