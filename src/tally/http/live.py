"""``GET /api/v1/apps/{app_id}/live``: accepted events as Server-Sent Events, as they are
committed, optionally only some names (``?name=a&name=b``). With several workers the store
process fans them out, so every subscriber sees every worker's events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import StreamingResponse

from tally.http.api import authenticated_app
from tally.http.read import event_json
from tally.http.services import Services
from tally.store.live import SUBSCRIBED

KEEP_ALIVE_SECONDS: Final = 15.0
_json = msgspec.json.Encoder()


async def sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Server-Sent Events: ``event: event`` per stored event, ``event: missed`` when the
    subscriber fell behind, and a comment every 15 s so proxies keep the connection open.
    ``events`` is a subscription whose first item (``subscribed``) was already taken."""
    yield b": connected\n\n"
    async with contextlib.aclosing(events):
        iterator = aiter(events)
        next_item = asyncio.ensure_future(anext(iterator))
        try:
            while True:
                done, _ = await asyncio.wait({next_item}, timeout=KEEP_ALIVE_SECONDS)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                row = next_item.result()
                next_item = asyncio.ensure_future(anext(iterator))
                if "missed" in row:
                    yield b"event: missed\ndata: " + _json.encode(row) + b"\n\n"
                    continue
                body = _json.encode(event_json(row))
                yield b"event: event\nid: " + row["id"].encode() + b"\ndata: " + body + b"\n\n"
        finally:
            next_item.cancel()
            with contextlib.suppress(BaseException):
                await next_item


async def live(request: Request) -> StreamingResponse:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    names = request.query_params.getlist("name") or None
    subscription = services.store.subscribe(app.id, names)
    # The answer starts (and a browser's EventSource opens) only once the subscription is
    # registered, so a client misses nothing committed after it is open.
    first = await anext(subscription)
    assert SUBSCRIBED in first, first
    return StreamingResponse(
        sse(subscription),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
