"""``POST /api/v1/apps/{app_id}/query``: one analytics query (docs/queries.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tally.http.api import authenticated_app, json_response
from tally.http.errors import ApiError
from tally.http.services import Services
from tally.query.dialects import dialect_of
from tally.query.model import QueryError, decode_query
from tally.query.run import Runner


async def run_query(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    try:
        query = decode_query(await request.body())
        rules = await services.resolver.rules(app)
        runner = Runner(services.store.run_sql, rules, dialect_of(services.store))
        answer = await runner.run(query)
    except QueryError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    return json_response(answer)
