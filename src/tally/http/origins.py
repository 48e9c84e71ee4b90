"""Allowed origins per app for browser writes (the ``allowed_origins`` setting).

When an app lists origins, an ingest request made with its public app key that says where it
comes from (``Origin``, or else the origin of ``Referer``) must come from one of them, or it is
refused with ``403 origin_not_allowed``. Requests that name no origin (servers, mobile apps) and
requests with the server API key and secret pass: the public key is in every page's source, and
an origin check only stops other sites' visitors' browsers from sending with it. It is not
authentication; anything outside a browser can send any ``Origin`` it likes.

An entry is an exact origin, ``https://shop.example.com`` (scheme, host and port; the default
port may be left out, and so may a trailing ``/``), or ``https://*.example.com``: any subdomain
of ``example.com`` at any depth, not ``example.com`` itself.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from tally.adapters.base import AppKey, Credentials, IngestRequest, RequestError
from tally.catalog.models import App

MAX_ORIGINS: Final = 100
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


def _split(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin (``scheme://host[:port]``, nothing more), lower-cased
    and with the scheme's default port filled in; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    if ":" in host:  # an IPv6 address, written in brackets
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    elif not _HOST.fullmatch(host):
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def check_allowed_origins(origins: Sequence[str]) -> None:
    """Refuse entries that can never match an Origin header, saying which and why."""
    if len(origins) > MAX_ORIGINS:
        raise ValueError(f"at most {MAX_ORIGINS} origins")
    for origin in origins:
        parsed = _split(origin) if origin.isascii() else None
        if parsed is None:
            raise ValueError(
                f"{origin!r} is not an origin: give the scheme and host (and a port if not the "
                "default), e.g. https://shop.example.com or https://*.example.com, with no "
                "path; international names in their xn-- form"
            )


class _Allowed:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.exact: set[tuple[str, str, int]] = set()
        self.suffixes: list[tuple[str, str, int]] = []
        """(scheme, ".example.com", port) for ``*.example.com`` entries."""
        for origin in origins:
            parsed = _split(origin)
            if parsed is None:  # refused by check_allowed_origins; never matches
                continue
            scheme, host, port = parsed
            if host.startswith("*."):
                self.suffixes.append((scheme, host[1:], port))
            else:
                self.exact.add(parsed)

    def allows(self, origin: str) -> bool:
        parsed = _split(origin)
        if parsed is None or parsed[1].startswith("*"):
            return False
        if parsed in self.exact:
            return True
        scheme, host, port = parsed
        return any(
            scheme == s and port == p and host.endswith(suffix) for s, suffix, p in self.suffixes
        )


@functools.lru_cache(maxsize=1024)
def _allowed(origins: tuple[str, ...]) -> _Allowed:
    return _Allowed(origins)


def request_origin(request: IngestRequest) -> str | None:
    """Where a browser says the request comes from: ``Origin``, or else ``Referer``'s origin."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip()
    referer = request.headers.get("referer")
    if referer is None:
        return None
    try:
        parts = urlsplit(referer.strip())
    except ValueError:
        return referer
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else referer


def origin_allowed(allowed_origins: Sequence[str], origin: str) -> bool:
    return not allowed_origins or _allowed(tuple(allowed_origins)).allows(origin)


def check_origin(app: App, credentials: Credentials | None, request: IngestRequest) -> None:
    """Refuse a public-key request from a browser origin the app does not list."""
    allowed = app.settings.allowed_origins
    if not allowed or not isinstance(credentials, AppKey):
        return
    origin = request_origin(request)
    if origin is None or origin_allowed(allowed, origin):
        return
    raise RequestError(
        403,
        "origin_not_allowed",
        f"origin {origin[:200]!r} may not send events with this app key "
        "(see the app's allowed_origins setting)",
    )
