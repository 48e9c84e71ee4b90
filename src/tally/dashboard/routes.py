"""Routes of the dashboard: its pages, its own files and the charting library.

Every page path (``/``, ``/login``, ``/apps/...``) answers with the same ``index.html``; the
page's router picks the screen from the URL, so any view can be bookmarked or shared.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tally.http.assets import Asset
from tally.http.dashboard_auth import find_session
from tally.http.errors import ApiError
from tally.http.services import Services

LOGIN_PATH: Final = "/login"
STATIC: Final = files(__package__).joinpath("static")
ASSET_PREFIX: Final = "/dashboard/"
PLOTLY_PATH: Final = "/dashboard/vendor/plotly.min.js"
REVALIDATE: Final = "no-cache"
"""The dashboard's own files change with Tally's version: browsers revalidate (ETag) each time."""

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # plotly.js sets style attributes and injects its own stylesheet at run time
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        media_type = MEDIA_TYPES.get(suffix)
        if media_type is not None:
            headers = PAGE_HEADERS if suffix == ".html" else None
            found[name] = Asset(entry.read_bytes(), media_type, REVALIDATE, headers=headers)
    return found


ASSETS: Final = _walk(STATIC)
INDEX: Final = ASSETS["index.html"]


async def page(request: Request) -> Response:
    """The page; without a live session, a redirect to the login form that comes back here."""
    if request.url.path != LOGIN_PATH:
        services: Services = request.app.state.services
        if await find_session(request, services) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = "" if target == "/" else "?" + urlencode({"next": target})
            return RedirectResponse(LOGIN_PATH + query, status_code=303)
    return INDEX.response(request)


async def asset(request: Request) -> Response:
    found = ASSETS.get(request.path_params["path"])
    if found is None or found is INDEX:
        raise ApiError(404, "not_found", f"no dashboard file at {request.url.path}")
    return found.response(request)


class _Plotly:
    """plotly.min.js from the installed ``plotly`` package, loaded and gzipped on first use."""

    def __init__(self) -> None:
        self._asset: Asset | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def _load() -> Asset:
        source = files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
        return Asset(source, MEDIA_TYPES[".js"], "public, max-age=86400")

    async def response(self, request: Request) -> Response:
        if self._asset is None:
            async with self._lock:
                if self._asset is None:
                    self._asset = await asyncio.to_thread(self._load)
        return self._asset.response(request)


_plotly = _Plotly()


async def plotly_js(request: Request) -> Response:
    return await _plotly.response(request)


def dashboard_pages() -> list[Route]:
    return [
        Route("/", page, methods=["GET"]),
        Route(LOGIN_PATH, page, methods=["GET"]),
        Route("/apps", page, methods=["GET"]),
        Route("/apps/{rest:path}", page, methods=["GET"]),
        Route(PLOTLY_PATH, plotly_js, methods=["GET"]),
        Route(ASSET_PREFIX + "{path:path}", asset, methods=["GET"]),
    ]
