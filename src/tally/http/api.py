"""What every management and read endpoint shares: the app's Basic credentials or a dashboard
session, JSON bodies in and out."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog import App
from tally.http.auth import basic_credentials
from tally.http.dashboard_auth import require_session, session_token
from tally.http.errors import ApiError
from tally.http.services import Services

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


async def authenticated_app(request: Request, services: Services, app_id: str) -> App:
    """The app named in the path, if the request's Basic credentials are that app's API key, or
    if it carries a logged-in dashboard user's session cookie (and, for unsafe methods, the
    session's CSRF token). Every dashboard user may manage every app (no per-app roles yet)."""
    authorization = request.headers.get("authorization")
    if authorization is None and session_token(request) is not None:
        await require_session(request, services)
        app = await asyncio.to_thread(services.catalog.get_app, app_id)
        if app is None:
            raise ApiError(404, "not_found", f"no app with id {app_id!r}")
        return app
    credentials = basic_credentials(authorization)
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "send the app's API key and secret with HTTP Basic authentication, or log in to "
            "the dashboard",
            headers={"www-authenticate": 'Basic realm="tally"'},
        )
    app = await services.resolver.by_api_credentials(credentials.key, credentials.secret)
    if app is None:
        raise ApiError(
            401,
            "invalid_credentials",
            "the API key and secret do not match any app",
            headers={"www-authenticate": 'Basic realm="tally"'},
        )
    if app.id != app_id:
        raise ApiError(403, "forbidden", "these credentials belong to another app")
    return app


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def decode_body(body: bytes, type_: type[T]) -> T:
    """A JSON request body as ``type_``, or a 400 that says what is wrong."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


def limit_param(text: str | None, default: int, most: int) -> int:
    """A ``limit`` parameter: a whole number from 1 to ``most`` (``default`` when absent)."""
    try:
        limit = int(text) if text else default
    except ValueError:
        raise ApiError(
            400, "invalid_parameter", f"limit must be a whole number, got {text!r}"
        ) from None
    if not 1 <= limit <= most:
        raise ApiError(400, "invalid_parameter", f"limit must be between 1 and {most}")
    return limit
