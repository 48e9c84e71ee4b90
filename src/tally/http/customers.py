"""Customers, for the dashboard and the API (docs/api.md#customers).

``GET /api/v1/apps/{app_id}/customers?search=&limit=``  customers whose id contains the text
``GET /api/v1/apps/{app_id}/customers/{customer}``      one customer's profile
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from tally.http.api import authenticated_app, json_response, limit_param
from tally.http.errors import ApiError
from tally.http.services import Services
from tally.query.compile import Sql
from tally.query.customers import PROFILE_EVENTS, device_rows, merge_properties
from tally.query.dialects import dialect_of
from tally.store.query import EventQuery
from tally.utc import aware

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
MAX_SEARCH: Final = 200
PROFILE_EVENT_LIMIT: Final = 1000
"""The newest profile events merged into a customer's properties."""


async def _rows(services: Services, sql: Sql) -> list[tuple]:
    return await services.store.run_sql(sql.text, sql.params)


async def search_customers(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    text = request.query_params.get("search", "").strip()
    if len(text) > MAX_SEARCH:
        raise ApiError(400, "invalid_parameter", f"search is at most {MAX_SEARCH} characters")
    dialect = dialect_of(services.store)
    rows = await _rows(
        services,
        dialect.search_sql(
            app.id,
            text or None,
            limit_param(request.query_params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT),
        ),
    )
    customers = [
        {
            "id": customer,
            "kind": "user" if is_user else "device",
            "events": events,
            "first_seen": aware(dialect.instant(first)),
            "last_seen": aware(dialect.instant(last)),
        }
        for customer, is_user, events, first, last in rows
    ]
    return json_response({"customers": customers})


async def customer_profile(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    customer = request.path_params["customer"]
    dialect = dialect_of(services.store)
    [(events, first, last)] = await _rows(services, dialect.summary_sql(app.id, customer))
    if not events:
        raise ApiError(404, "not_found", f"no events of a customer {customer!r}")
    linked = [row[0] for row in await _rows(services, dialect.linked_ids_sql(app.id, customer))]
    devices = device_rows(
        await _rows(services, dialect.devices_sql(app.id, customer)), dialect.instant
    )
    top = [
        {"name": name, "events": count, "last_seen": aware(dialect.instant(seen))}
        for name, count, seen in await _rows(services, dialect.top_events_sql(app.id, customer))
    ]
    profile_events = await services.store.fetch_events(
        EventQuery(
            app_id=app.id, user=customer, names=list(PROFILE_EVENTS), limit=PROFILE_EVENT_LIMIT
        )
    )
    profile: dict[str, Any] = {
        "id": customer,
        "linked_ids": [i for i in linked if i != customer],
        "events": events,
        "first_seen": aware(dialect.instant(first)),
        "last_seen": aware(dialect.instant(last)),
        "properties": merge_properties(reversed(profile_events)),
        "devices": devices,
        "top_events": top,
    }
    return json_response(profile)
