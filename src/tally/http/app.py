"""The ASGI application: raw endpoints for ingestion, Starlette for everything else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tally.adapters.countly import CountlyAdapter, CountlyBulkAdapter
from tally.adapters.engagelab import (
    EngageLabAdapter,
    EngageLabPropertyAdapter,
    EngageLabRegisterAdapter,
)
from tally.adapters.native import NativeAdapter
from tally.adapters.segment import segment_adapters
from tally.adapters.synerise import synerise_adapters
from tally.dashboard.routes import dashboard_pages
from tally.http import (
    activity,
    apps_api,
    customers,
    failed,
    live,
    manage,
    ops,
    query_api,
    read,
    session,
    synerise_auth,
    transfer_api,
)
from tally.http.apps import CATALOG_DRIVER_ERRORS, catalog_unreachable
from tally.http.asgi import Receive, Scope, Send
from tally.http.countly_read import analytics_events_endpoint, o_endpoint
from tally.http.countly_sdk import CountlySdkEndpoint
from tally.http.errors import (
    http_exception,
    query_too_large,
    store_unavailable,
    unexpected,
)
from tally.http.ingest import IngestEndpoint
from tally.http.openapi import openapi_document
from tally.http.services import Services
from tally.sdk import PATH as TALLY_JS_PATH
from tally.sdk import tally_js
from tally.sink import StoreUnavailable
from tally.store.base import QueryTooLarge
from tally.transfer.retention import retention_running


def dashboard_routes() -> list[Route]:
    """Logging in, and the apps a dashboard user manages (docs/dashboard-auth.md)."""
    return [
        Route(session.PATH, session.log_in, methods=["POST"]),
        Route(session.PATH, session.current, methods=["GET"]),
        Route(session.PATH, session.log_out, methods=["DELETE"]),
        Route("/api/v1/apps", apps_api.list_apps, methods=["GET"]),
        Route("/api/v1/apps", apps_api.create_app, methods=["POST"]),
        Route("/api/v1/apps/{app_id}/rotate", apps_api.rotate_keys, methods=["POST"]),
    ]


def management_routes() -> list[Route]:
    base = "/api/v1/apps/{app_id}"
    return [
        Route(f"{base}/settings", manage.get_settings, methods=["GET"]),
        Route(f"{base}/settings", manage.patch_settings, methods=["PATCH"]),
        Route(f"{base}/definitions", manage.list_definitions, methods=["GET"]),
        Route(f"{base}/definitions/{{name:path}}", manage.get_definition, methods=["GET"]),
        Route(f"{base}/definitions/{{name:path}}", manage.put_definition, methods=["PUT"]),
        Route(f"{base}/definitions/{{name:path}}", manage.delete_definition, methods=["DELETE"]),
        Route(f"{base}/aliases", manage.list_aliases, methods=["GET"]),
        Route(f"{base}/aliases/{{alias:path}}", manage.put_alias, methods=["PUT"]),
        Route(f"{base}/aliases/{{alias:path}}", manage.delete_alias, methods=["DELETE"]),
        Route(f"{base}/failed-events", failed.list_failed, methods=["GET"]),
        Route(f"{base}/failed-events/replay", failed.replay_failed, methods=["POST"]),
        Route(f"{base}/failed-events/{{failed_id}}", failed.get_failed, methods=["GET"]),
        Route(f"{base}/discarded", failed.list_discarded, methods=["GET"]),
        Route(f"{base}/query", query_api.run_query, methods=["POST"]),
        Route(f"{base}/live", live.live, methods=["GET"]),
        Route(f"{base}/users/{{user:path}}/activity", activity.user_activity, methods=["GET"]),
        Route(f"{base}/customers", customers.search_customers, methods=["GET"]),
        Route(f"{base}/customers/{{customer:path}}", customers.customer_profile, methods=["GET"]),
        Route(f"{base}/export", transfer_api.export_events, methods=["GET"]),
        Route(f"{base}/users/{{user:path}}/events", transfer_api.user_events, methods=["GET"]),
        Route(f"{base}/users/{{user:path}}", transfer_api.forget_user, methods=["DELETE"]),
    ]


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


class TallyApp:
    """Routes exact ingest paths straight to raw ASGI handlers; the rest goes to Starlette."""

    def __init__(self, services: Services, *, close_services: bool = True) -> None:
        self.services = services
        self.ingest = {
            "/api/v1/events": IngestEndpoint(NativeAdapter(), services),
            "/sdk/v1/events": IngestEndpoint(NativeAdapter(browser=True), services),
            "/i": IngestEndpoint(CountlyAdapter(), services),
            "/i/bulk": IngestEndpoint(CountlyBulkAdapter(), services),
            "/o/sdk": CountlySdkEndpoint(services),
            "/o": o_endpoint(services),
            "/o/analytics/events": analytics_events_endpoint(services),
            "/v1/event/report": IngestEndpoint(EngageLabAdapter(), services),
            "/v1/user/register": IngestEndpoint(EngageLabRegisterAdapter(), services),
            "/v1/user/property": IngestEndpoint(EngageLabPropertyAdapter(), services),
            **{path: IngestEndpoint(a, services) for path, a in segment_adapters().items()},
            **{path: IngestEndpoint(a, services) for path, a in synerise_adapters().items()},
        }

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with retention_running(services):
                yield
            if close_services:
                await services.close()

        self.api = Starlette(
            routes=[
                Route("/api/v1/apps/{app_id}/events", read.list_events, methods=["GET"]),
                *dashboard_routes(),
                *management_routes(),
                Route(synerise_auth.PATH, synerise_auth.login_profile, methods=["POST"]),
                Route("/healthz", ops.healthz, methods=["GET"]),
                Route("/readyz", ops.readyz, methods=["GET"]),
                Route("/metrics", ops.prometheus, methods=["GET"]),
                Route("/openapi.json", openapi, methods=["GET"]),
                Route(TALLY_JS_PATH, tally_js, methods=["GET"]),
                *dashboard_pages(),
            ],
            exception_handlers={
                HTTPException: http_exception,
                **dict.fromkeys(CATALOG_DRIVER_ERRORS, catalog_unreachable),
                StoreUnavailable: store_unavailable,
                QueryTooLarge: query_too_large,
                Exception: unexpected,
            },
            lifespan=lifespan,
        )
        self.api.state.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.ingest.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.api(scope, receive, send)
