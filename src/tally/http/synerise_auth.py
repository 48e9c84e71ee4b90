"""Synerise's workspace login: ``POST /v4/auth/login/profile {"apiKey": ...}`` returns a JWT that
the v4 endpoints accept as a Bearer token.

A Synerise workspace API key is one string; a Tally app has a key and a secret, so the ``apiKey``
is the two joined by a colon, ``API_KEY:API_SECRET`` (the same pair as the Basic form).
"""

from __future__ import annotations

import asyncio

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.adapters.synerise import error_body
from tally.http.services import Services

PATH = "/v4/auth/login/profile"


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    apiKey: str


class LoginResponse(msgspec.Struct, kw_only=True):
    token: str


_decoder = msgspec.json.Decoder(LoginRequest)
_encoder = msgspec.json.Encoder()


def _error(status: int, code: int, message: str) -> Response:
    errors = [{"code": code, "field": "apiKey", "message": message, "rejectedValue": None}]
    return Response(
        error_body(status, PATH, message, errors), status_code=status, media_type="application/json"
    )


async def login_profile(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        body = _decoder.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _error(400, 1002, f'the body must be {{"apiKey": "API_KEY:API_SECRET"}}: {exc}')
    key, sep, secret = body.apiKey.partition(":")
    if not sep or not key or not secret:
        return _error(400, 1002, "apiKey must be the app's API key and secret as KEY:SECRET")
    token = await asyncio.to_thread(services.catalog.issue_workspace_token, key, secret)
    if token is None:
        return _error(401, 1016, "the API key is not valid")
    return Response(_encoder.encode(LoginResponse(token=token)), media_type="application/json")
