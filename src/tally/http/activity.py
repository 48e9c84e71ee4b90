"""``GET /api/v1/apps/{app_id}/users/{user}/activity``: one customer's events, newest first,
across every device linked to them, labelled, a page at a time."""

from __future__ import annotations

import base64
import binascii

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog.definitions import render_label
from tally.http.api import authenticated_app, json_response, limit_param
from tally.http.errors import ApiError
from tally.http.read import event_json
from tally.http.services import Services
from tally.store.query import EventCursor, EventQuery

DEFAULT_PAGE = 50
MAX_PAGE = 500
_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(EventCursor)


def encode_cursor(cursor: EventCursor) -> str:
    return base64.urlsafe_b64encode(_cursor_encoder.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str) -> EventCursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError(400, "invalid_parameter", "cursor is not one this API gave out") from None


async def user_activity(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    params = request.query_params
    limit = limit_param(params.get("limit"), DEFAULT_PAGE, MAX_PAGE)
    before = decode_cursor(params["cursor"]) if params.get("cursor") else None
    rows = await services.store.fetch_events(
        EventQuery(app_id=app.id, user=request.path_params["user"], before=before, limit=limit + 1)
    )
    page, more = rows[:limit], len(rows) > limit
    rules = await services.resolver.rules(app)
    events = []
    for row in page:
        item = event_json(row)
        definition = rules.definitions.get(row["name"])
        if item["label"] is None and definition is not None and definition.label_template:
            item["label"] = render_label(definition.label_template, row["properties"])
        events.append(item)
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = encode_cursor(EventCursor(last["time"], last["received_at"], last["id"]))
    return json_response({"events": events, "next_cursor": next_cursor})
