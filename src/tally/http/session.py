"""Logging in to the dashboard (docs/dashboard-auth.md).

``POST   /api/v1/session``  ``{email, password}``: a session cookie and ``{email, csrf_token}``
``GET    /api/v1/session``  the logged-in user and the session's CSRF token (401 if none)
``DELETE /api/v1/session``  log out: the session ends on the server, the cookie is cleared
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog.users import Session, csrf_token, normalise_email
from tally.http.api import decode_body, json_response
from tally.http.dashboard_auth import (
    check_csrf,
    clear_session_cookie,
    find_session,
    require_session,
    session_token,
    set_session_cookie,
)
from tally.http.errors import ApiError
from tally.http.services import Services

PATH = "/api/v1/session"


class DashboardLogin(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str
    password: str


class SessionView(msgspec.Struct, kw_only=True):
    email: str
    csrf_token: str
    """Send it in the X-CSRF-Token header of every POST, PUT, PATCH and DELETE."""
    expires_at: datetime
    """Unless used again before: each use moves it 14 days ahead."""


def _view(token: str, session: Session) -> SessionView:
    return SessionView(
        email=session.user.email, csrf_token=csrf_token(token), expires_at=session.expires_at
    )


def _services(request: Request) -> Services:
    return request.app.state.services


async def log_in(request: Request) -> Response:
    services = _services(request)
    body = decode_body(await request.body(), DashboardLogin)
    key = normalise_email(body.email)
    throttle = services.login_throttle
    wait = throttle.retry_after(key)
    if wait is not None:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins for this email; try again in {wait} s",
            headers={"retry-after": str(wait)},
        )
    users = services.catalog.users
    user = await asyncio.to_thread(users.authenticate, body.email, body.password)
    if user is None:
        throttle.failed(key)
        raise ApiError(401, "invalid_login", "the email or the password is not right")
    throttle.succeeded(key)
    old = session_token(request)
    if old is not None:  # a new log-in never keeps a session id the browser had before
        await asyncio.to_thread(users.end_session, old)
    started = await asyncio.to_thread(users.start_session, user)
    view = _view(started.token, started.session)
    response = json_response({"email": view.email, "csrf_token": view.csrf_token})
    set_session_cookie(response, request, started.token)
    return response


async def current(request: Request) -> Response:
    token, session = await require_session(request, _services(request))
    response = json_response(_view(token, session))
    set_session_cookie(response, request, token)  # the cookie slides with the session
    return response


async def log_out(request: Request) -> Response:
    services = _services(request)
    found = await find_session(request, services)
    if found is not None:
        check_csrf(request, found[0])
        await asyncio.to_thread(services.catalog.users.end_session, found[0])
    response = Response(status_code=204)
    clear_session_cookie(response, request)
    return response
