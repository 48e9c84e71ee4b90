"""Dashboard sessions on requests: the session cookie, the CSRF check, and who is logged in
(docs/dashboard-auth.md)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from tally.catalog.users import SESSION_LIFETIME, Session, csrf_token
from tally.http.errors import ApiError
from tally.http.services import Services

COOKIE: Final = "tally_session"
CSRF_HEADER: Final = "x-csrf-token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def session_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE)
    return token or None


def is_https(request: Request) -> bool:
    """The request came over https, directly or through a proxy that says so."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=is_https(request), httponly=True, samesite="lax"
    )


async def find_session(request: Request, services: Services) -> tuple[str, Session] | None:
    """The request's live session (and its id), or None."""
    token = session_token(request)
    if token is None:
        return None
    session = await asyncio.to_thread(services.catalog.users.session, token)
    return None if session is None else (token, session)


def check_csrf(request: Request, token: str) -> None:
    """Unsafe methods sent with the session cookie must carry the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
        raise ApiError(
            403,
            "csrf_failed",
            f"send the session's CSRF token (GET /api/v1/session) in the {CSRF_HEADER} header",
        )


async def require_session(request: Request, services: Services) -> tuple[str, Session]:
    """The logged-in dashboard user's session (CSRF checked for unsafe methods), or a 401."""
    found = await find_session(request, services)
    if found is None:
        if session_token(request) is None:
            raise ApiError(
                401, "unauthorized", "log in to the dashboard first (POST /api/v1/session)"
            )
        raise ApiError(401, "invalid_session", "the session has expired or was ended; log in again")
    check_csrf(request, found[0])
    return found
