"""JSON error responses for the management and read API: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tally.sink import StoreUnavailable
from tally.store.base import QUERY_TOO_LARGE

log = logging.getLogger("tally.http")
_encoder = msgspec.json.Encoder()

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    503: "unavailable",
}


class ApiError(HTTPException):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = _encoder.encode({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = exc.code if isinstance(exc, ApiError) else _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and not isinstance(exc, ApiError):
        message = f"no endpoint at {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def store_unavailable_error(exc: StoreUnavailable) -> ApiError:
    return ApiError(
        503,
        "store_unavailable",
        f"the event store is unavailable; retry later ({exc})",
        headers={"retry-after": "1"},
    )


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """A read the event store could not answer (its process gone, ClickHouse unreachable)."""
    assert isinstance(exc, StoreUnavailable)
    return await http_exception(request, store_unavailable_error(exc))


async def query_too_large(request: Request, exc: Exception) -> Response:
    return error_response(400, QUERY_TOO_LARGE, str(exc))


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an unexpected error occurred; see the server log")
