"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tally import metrics
from tally.http.errors import error_response
from tally.http.services import Services
from tally.sink import StoreUnavailable


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the catalog answers and the event store can take a write."""
    services: Services = request.app.state.services
    try:
        await asyncio.to_thread(services.catalog.ping)
    except Exception as exc:
        return error_response(503, "catalog_unavailable", f"the catalog is not reachable: {exc}")
    try:
        await asyncio.wait_for(services.store.check_writable(), timeout=5)
    except (StoreUnavailable, TimeoutError) as exc:
        return error_response(503, "store_unavailable", f"the event store is not writable: {exc}")
    return JSONResponse({"status": "ready"})


async def prometheus(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
