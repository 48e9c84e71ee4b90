"""Apps for the dashboard: list, create, rotate keys. These take a dashboard session only (an
app's own API credentials cannot make or list other apps); every dashboard user may manage every
app for now.

``GET  /api/v1/apps``                   every app (never secrets)
``POST /api/v1/apps``                   ``{name}``: a new app, its API secret shown this once
``POST /api/v1/apps/{app_id}/rotate``   a new API secret (``{"app_key": true}``: a new app key
                                        too); the old ones work ``overlap_seconds`` more (24 h)
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog import App
from tally.catalog.store import DEFAULT_OVERLAP, MAX_OVERLAP
from tally.http.api import decode_body, json_response
from tally.http.dashboard_auth import require_session
from tally.http.errors import ApiError
from tally.http.services import Services


class AppList(msgspec.Struct):
    apps: list[App]


class CreateApp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


class RotateKeys(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    app_key: bool = False
    """Also replace the public app key (every tracker and SDK must then be given the new one)."""
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=int(MAX_OVERLAP.total_seconds()))] = int(
        DEFAULT_OVERLAP.total_seconds()
    )
    """How long the replaced secret (and app key) keep working, so clients can be moved to the
    new ones; 0: they stop at once."""


class NewAppView(App, kw_only=True):
    api_secret: str
    """Shown this once; Tally keeps only an argon2 hash of it."""


class RotatedAppView(NewAppView, kw_only=True):
    previous_valid_until: datetime | None
    """When the replaced secret (and app key, if it was replaced) stop working; null: they
    stopped at once."""


def _services(request: Request) -> Services:
    return request.app.state.services


async def list_apps(request: Request) -> Response:
    services = _services(request)
    await require_session(request, services)
    found = await asyncio.to_thread(services.catalog.list_apps)
    return json_response(AppList(apps=[app.public() for app in found]))


async def create_app(request: Request) -> Response:
    services = _services(request)
    await require_session(request, services)
    body = decode_body(await request.body(), CreateApp)
    try:
        created = await asyncio.to_thread(services.catalog.create_app, body.name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    return json_response(created.to_dict(), status=201)


async def rotate_keys(request: Request) -> Response:
    services = _services(request)
    await require_session(request, services)
    raw = await request.body()
    body = decode_body(raw, RotateKeys) if raw.strip() else RotateKeys()
    app_id = request.path_params["app_id"]
    try:
        rotated = await asyncio.to_thread(
            services.catalog.rotate_secret,
            app_id,
            app_key=body.app_key,
            overlap=timedelta(seconds=body.overlap_seconds),
        )
    except KeyError:
        raise ApiError(404, "not_found", f"no app with id {app_id!r}") from None
    services.resolver.forget(app_id)
    view = rotated.to_dict()
    view["previous_valid_until"] = rotated.app.previous_secret_until
    return json_response(view)
