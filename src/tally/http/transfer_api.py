"""Data out, and a person's erasure (docs/export-import.md).

``GET    /api/v1/apps/{app_id}/export?from=&to=&format=``   the app's events as a download
``GET    /api/v1/apps/{app_id}/users/{user}/events``         every event of one person (GDPR)
``DELETE /api/v1/apps/{app_id}/users/{user}``                forget the person (GDPR)

Downloads are streamed a batch at a time (Parquet too: one row group per batch, the footer last),
so neither the server nor the store process holds a whole export.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tally.http.api import authenticated_app, json_response
from tally.http.errors import ApiError, store_unavailable_error
from tally.http.services import Services
from tally.pipeline.timeparse import TimeError
from tally.sink import StoreUnavailable
from tally.store.base import ExportQuery
from tally.transfer.export import check_range, export_bytes, parse_bound
from tally.transfer.formats import FORMATS, MEDIA_TYPES


def _format(request: Request) -> str:
    fmt = request.query_params.get("format") or "jsonl"
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_parameter", f"format must be one of {', '.join(FORMATS)}")
    return fmt


def _bound(request: Request, name: str) -> datetime | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return parse_bound(text)
    except TimeError as exc:
        raise ApiError(400, "invalid_parameter", f"{name}: {exc}") from None


async def _download(services: Services, query: ExportQuery, fmt: str, name: str) -> Response:
    """A streamed download. The first chunk is read before the reply starts, so a store that
    cannot answer gets a 503 rather than a cut-off 200."""
    chunks = export_bytes(services.store, query, fmt)
    try:
        first = await anext(chunks, None)
    except StoreUnavailable as exc:
        await chunks.aclose()
        raise store_unavailable_error(exc) from None

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(chunks):
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk

    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[fmt],
        headers={
            "content-disposition": f'attachment; filename="{name}.{fmt}"',
            "cache-control": "no-store",
            "x-accel-buffering": "no",
        },
    )


async def export_events(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    fmt = _format(request)
    since, until = _bound(request, "from"), _bound(request, "to")
    try:
        check_range(since, until)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    query = ExportQuery(app_id=app.id, since=since, until=until)
    return await _download(services, query, fmt, f"tally-{app.id}-events")


async def user_events(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    query = ExportQuery(app_id=app.id, user=request.path_params["user"])
    return await _download(services, query, _format(request), f"tally-{app.id}-person-events")


async def forget_user(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    try:
        record = await services.store.delete_person(app.id, request.path_params["user"])
    except StoreUnavailable as exc:
        raise store_unavailable_error(exc) from None
    return json_response(record)
