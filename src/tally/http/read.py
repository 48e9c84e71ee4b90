"""Read-back of stored events: ``GET /api/v1/apps/{app_id}/events`` (tests and debugging)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.http.api import authenticated_app, limit_param
from tally.http.errors import ApiError
from tally.http.services import Services
from tally.pipeline.timeparse import TimeError, parse_instant
from tally.store.query import EventQuery
from tally.store.rows import CONTEXT_COLUMN_NAMES

MAX_LIMIT = 1000
_encoder = msgspec.json.Encoder()


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "label": row["label"],
        "time": row["time"],
        "received_at": row["received_at"],
        "user": row["user_id"],
        "device": row["device_id"],
        "session": row["session_id"],
        "count": row["count"],
        "sum": row["sum"],
        "dur": row["dur"],
        "properties": row["properties"],
        "undefined_properties": row["undefined_properties"],
        "coerced_properties": row["coerced_properties"],
        "protocol": row["protocol"],
        "internal": row["internal"],
        "sdk": {"name": row["sdk_name"], "version": row["sdk_version"]},
        "context": {key: row[key] for key in CONTEXT_COLUMN_NAMES},
    }


def _query(request: Request, app_id: str) -> EventQuery:
    params = request.query_params
    limit = limit_param(params.get("limit"), 100, MAX_LIMIT)
    since = None
    if params.get("since"):
        try:
            since = parse_instant(params["since"])
        except TimeError as exc:
            raise ApiError(400, "invalid_parameter", f"since: {exc}") from None
    return EventQuery(
        app_id=app_id,
        name=params.get("name") or None,
        user=params.get("user") or None,
        since=since,
        limit=limit,
    )


async def list_events(request: Request) -> Response:
    services: Services = request.app.state.services
    app_id = request.path_params["app_id"]
    app = await authenticated_app(request, services, app_id)
    query = _query(request, app_id)
    if query.name is not None:
        names = (await services.resolver.rules(app)).same_event(query.name)
        query = msgspec.structs.replace(query, name=None, names=names)
    rows = await services.store.fetch_events(query)
    body = _encoder.encode({"events": [event_json(row) for row in rows]})
    return Response(body, media_type="application/json")
