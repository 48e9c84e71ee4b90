"""Static files served from memory: read and gzipped once, with an ETag per representation.

Every answer carries ``ETag`` (a hash of the content; the gzipped representation has its own),
the asset's ``Cache-Control`` and ``Vary: Accept-Encoding``; ``If-None-Match`` gets a ``304``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (``gzip`` or ``*``, with a non-zero q)."""
    allowed: dict[str, bool] = {}
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[coding] = q > 0
    if "gzip" in allowed:
        return allowed["gzip"]
    if "x-gzip" in allowed:
        return allowed["x-gzip"]
    return allowed.get("*", False)


class Asset:
    """One file's bytes, their gzipped form and both ETags."""

    def __init__(
        self,
        source: bytes,
        media_type: str,
        cache_control: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.gzipped = gzip.compress(source, compresslevel=9, mtime=0)
        digest = hashlib.sha256(source).hexdigest()[:32]
        self.etag = f'"{digest}"'
        self.etag_gzip = f'"{digest}-gzip"'
        self.media_type = media_type
        self.cache_control = cache_control
        self.headers = dict(headers or {})

    def not_modified(self, if_none_match: str | None) -> bool:
        """Whether ``If-None-Match`` names either representation (weak comparison) or is ``*``."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags or self.etag_gzip in tags

    def response(self, request: Request) -> Response:
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        headers = {
            "ETag": self.etag_gzip if gzipped else self.etag,
            "Cache-Control": self.cache_control,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            **self.headers,
        }
        if self.not_modified(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=headers)
        return Response(self.source, media_type=self.media_type, headers=headers)
