"""HTTP Basic credentials (``api_key:api_secret``), as the read API and EngageLab use them."""

from __future__ import annotations

import base64
import binascii

from tally.adapters.base import ApiCredentials


def basic_credentials(authorization: str | None) -> ApiCredentials | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    if not sep or not key:
        return None
    return ApiCredentials(key, secret)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
