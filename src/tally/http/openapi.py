"""``/openapi.json``: every HTTP endpoint, with request and response schemas from the same
msgspec types the handlers decode and encode."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from tally import __version__
from tally.adapters.native import ErrorResponse, IngestResponse, NativeBatch
from tally.model import DropReason


class EventContext(msgspec.Struct):
    ip: str | None
    user_agent: str | None
    browser: str | None
    os: str | None
    device_type: str | None
    url: str | None
    referrer: str | None
    locale: str | None
    timezone: str | None


class SdkInfo(msgspec.Struct):
    name: str | None
    version: str | None


class StoredEvent(msgspec.Struct):
    id: str
    name: str
    label: str | None
    time: str
    received_at: str
    user: str | None
    device: str | None
    session: str | None
    count: int
    sum: float | None
    dur: float | None
    properties: dict[str, Any]
    undefined_properties: list[str]
    protocol: str
    sdk: SdkInfo
    context: EventContext


class EventsPage(msgspec.Struct):
    events: list[StoredEvent]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return _json("ErrorResponse", description)


@cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [NativeBatch, IngestResponse, ErrorResponse, EventsPage],
        ref_template="#/components/schemas/{name}",
    )
    reasons = ", ".join(f"`{r.value}`" for r in DropReason)
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    status_schema = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    components["Status"] = status_schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": __version__,
            "description": "Event tracking and product analytics. Rejected events carry one of "
            f"these codes: {reasons}.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "appKey": {"type": "apiKey", "in": "header", "name": "X-Tally-Key"},
                "apiKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The app's API key as user name and API secret as password.",
                },
            },
        },
        "paths": {
            "/api/v1/events": {
                "post": {
                    "operationId": "ingestEvents",
                    "summary": "Send events (Tally's own ingest API)",
                    "description": "The app key goes in the body (`app_key`) or the `X-Tally-Key` "
                    "header. Each event is checked on its own: valid events are stored even when "
                    "others are rejected. The reply comes only after the accepted events are "
                    "durable. An event whose `id` was already stored counts as a duplicate.",
                    "security": [{"appKey": []}, {}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("NativeBatch")}},
                    },
                    "responses": {
                        "200": _json("IngestResponse", "Events stored (some may be rejected)."),
                        "400": {
                            "description": "Invalid JSON or body (`ErrorResponse`), or every "
                            "event rejected (`IngestResponse`).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [_ref("ErrorResponse"), _ref("IngestResponse")]
                                    }
                                }
                            },
                        },
                        "401": _error("Missing or unknown app key."),
                        "405": _error("Method not allowed."),
                        "413": _error("Body or batch larger than the limits."),
                        "503": _error("The store cannot take writes; nothing was stored. Retry."),
                    },
                },
                "options": {
                    "operationId": "ingestEventsPreflight",
                    "summary": "CORS preflight",
                    "responses": {"204": {"description": "CORS headers."}},
                },
            },
            "/api/v1/apps/{app_id}/events": {
                "get": {
                    "operationId": "listEvents",
                    "summary": "Read back stored events, newest first",
                    "security": [{"apiKey": []}],
                    "parameters": [
                        {
                            "name": "app_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "user",
                            "in": "query",
                            "description": "A user id or a device id.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "description": "ISO 8601 or epoch seconds/milliseconds; events at or "
                            "after this time.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1000,
                                "default": 100,
                            },
                        },
                    ],
                    "responses": {
                        "200": _json("EventsPage", "Events, newest first."),
                        "400": _error("An invalid query parameter."),
                        "401": _error("Missing or wrong API key and secret."),
                        "403": _error("The credentials belong to another app."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "responses": {"200": _json("Status", "The process is up.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: the catalog answers and the event store takes writes",
                    "responses": {
                        "200": _json("Status", "Ready."),
                        "503": _error("The catalog or the store is unavailable."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Exposition format.", **text}},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            **{"content": {"application/json": {"schema": {"type": "object"}}}},
                        }
                    },
                }
            },
        },
    }
