"""tally.js, the browser tracker (``tally.js`` next to this file), served at ``GET /sdk/tally.js``.

The file is read, hashed and gzipped once, at import; every answer carries an ETag (a hash of the
content; the gzipped representation has its own), ``Cache-Control: public, max-age=300`` and
``Vary: Accept-Encoding``, and ``If-None-Match`` gets a ``304``. See docs/tally-js.md.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from tally.http.assets import Asset

PATH: Final = "/sdk/tally.js"
MEDIA_TYPE: Final = "application/javascript; charset=utf-8"
CACHE_CONTROL: Final = "public, max-age=300"

ASSET: Final = Asset(
    files(__name__).joinpath("tally.js").read_bytes(),
    MEDIA_TYPE,
    CACHE_CONTROL,
    headers={"Access-Control-Allow-Origin": "*"},
)
SOURCE: Final = ASSET.source
GZIPPED: Final = ASSET.gzipped
ETAG: Final = ASSET.etag
ETAG_GZIP: Final = ASSET.etag_gzip


async def tally_js(request: Request) -> Response:
    return ASSET.response(request)
