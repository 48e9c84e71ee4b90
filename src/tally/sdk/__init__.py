"""tally.js, the browser tracker (``tally.js`` next to this file), served at ``GET /sdk/tally.js``.

The file is read, hashed and gzipped once, at import; every answer carries an ETag (a hash of the
content; the gzipped representation has its own), ``Cache-Control: public, max-age=300`` and
``Vary: Accept-Encoding``, and ``If-None-Match`` gets a ``304``. See docs/tally-js.md.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

PATH: Final = "/sdk/tally.js"
MEDIA_TYPE: Final = "application/javascript; charset=utf-8"
CACHE_CONTROL: Final = "public, max-age=300"

SOURCE: Final = files(__name__).joinpath("tally.js").read_bytes()
GZIPPED: Final = gzip.compress(SOURCE, compresslevel=9, mtime=0)
_DIGEST: Final = hashlib.sha256(SOURCE).hexdigest()[:32]
ETAG: Final = f'"{_DIGEST}"'
ETAG_GZIP: Final = f'"{_DIGEST}-gzip"'


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


def not_modified(if_none_match: str | None) -> bool:
    """Whether ``If-None-Match`` names either representation (weak comparison) or is ``*``."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or ETAG in tags or ETAG_GZIP in tags


async def tally_js(request: Request) -> Response:
    gzipped = accepts_gzip(request.headers.get("accept-encoding"))
    headers = {
        "ETag": ETAG_GZIP if gzipped else ETAG,
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if not_modified(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(GZIPPED, media_type=MEDIA_TYPE, headers=headers)
    return Response(SOURCE, media_type=MEDIA_TYPE, headers=headers)
