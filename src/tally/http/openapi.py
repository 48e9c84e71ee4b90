"""``/openapi.json``: every HTTP endpoint, with request and response schemas from the same
msgspec types the handlers decode and encode."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from tally import __version__
from tally.adapters.native import ErrorResponse, IngestResponse, NativeBatch
from tally.adapters.segment import (
    CALL_TYPES,
    SHORT_PATHS,
    SegmentBatch,
    SegmentError,
    SegmentSuccess,
)
from tally.adapters.synerise import synerise_adapters
from tally.http.openapi_manage import SCHEMAS, management_paths, path_parameter
from tally.http.openapi_transfer import transfer_paths
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
    country_code: str | None
    city: str | None
    location: str | None


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
    """Properties the event's definition does not name (kept, but out of analytics)."""
    coerced_properties: list[str]
    """Properties whose value was converted to the type their definition gives."""
    protocol: str
    internal: bool
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


def _param(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


COUNTLY_PARAMS = [
    _param("app_key", "The app key (coerced to a string).", required=True),
    _param("device_id", "The device id (coerced to a string).", required=True),
    _param("timestamp", "Seconds or milliseconds; default now; the future is clamped."),
    _param("events", "JSON array of {key, count, sum, dur, segmentation, timestamp, id}."),
    _param("begin_session", "1 starts a session (stored as session.start)."),
    _param("session_duration", "Seconds since the last report (session.update / session.end)."),
    _param("end_session", "1 ends the session (stored as session.end)."),
    _param("metrics", "JSON object: _ua, _os, _locale, _device_type, _browser, ..."),
    _param("tz", "Minutes east of UTC."),
    _param("ip_address", "The client's address, if not the connection's."),
    _param("sdk_name", "SDK name."),
    _param("sdk_version", "SDK version."),
]


def countly_write(operation: str, summary: str, parameters: list[dict[str, Any]]) -> dict:
    """GET with query parameters, or POST with the same as a form or JSON (the body wins)."""
    form = {"type": "object", "additionalProperties": True}
    responses = {
        "200": _json("CountlyResult", "`Success` (with `info` for a duplicate request)."),
        "400": _json("CountlyResult", "`Missing parameter ...`, `App does not exist`."),
        "403": _json("CountlyResult", "The origin is not one the app allows."),
        "405": _json("CountlyResult", "`Method not allowed`."),
        "408": _json("CountlyResult", "The body came too slowly."),
        "429": _json("CountlyResult", "Rate limited; retry after `Retry-After` seconds."),
        "503": _json("CountlyResult", "The store or the catalog is unavailable; retry."),
    }
    return {
        "get": {
            "operationId": f"{operation}Get",
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        },
        "post": {
            "operationId": f"{operation}Post",
            "summary": summary,
            "parameters": parameters,
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {"schema": form},
                    "application/json": {"schema": form},
                }
            },
            "responses": responses,
        },
        "options": {
            "operationId": f"{operation}Preflight",
            "summary": "CORS preflight",
            "responses": {"200": {"description": "CORS headers."}},
        },
    }


COUNTLY_READ_PARAMS = [
    _param("app_id", "The Tally app id (24 hex characters).", required=True),
    _param(
        "api_key",
        "`API_KEY:API_SECRET`, or the API key with `api_secret` (instead of HTTP Basic).",
    ),
    _param("api_secret", "The API secret, with `api_key`."),
    _param(
        "period",
        "`30days` (default), `Ndays`, `Nweeks`, `Nmonths`, `month`, `day`, `prevMonth`, `hour`, "
        '`yesterday`, `[start_ms, end_ms]` or `{"since": ms}`.',
    ),
    _param("timestamp", "Seconds or milliseconds taken as now (default: the server clock)."),
    _param("tz", "IANA time zone of the buckets (default UTC)."),
]


def countly_read(
    operation: str, summary: str, parameters: list[dict[str, Any]], answer: str
) -> dict[str, Any]:
    """Countly's read API: GET, or POST with the parameters as a form or JSON."""
    form = {"type": "object", "additionalProperties": True}
    responses = {
        "200": {
            "description": answer,
            "content": {"application/json": {"schema": {}}},
        },
        "400": _json(
            "CountlyResult",
            '`Missing parameter "app_id"`, `Missing parameter "api_key" or "auth_token"`, '
            '`Invalid method`, `Invalid parameter "period"`, ...',
        ),
        "401": _json("CountlyResult", "`User does not exist`, `User does not have right`."),
        "405": _json("CountlyResult", "`Method not allowed`."),
    }
    common = {
        "summary": summary,
        "security": [{"apiKey": []}, {}],
        "parameters": [*COUNTLY_READ_PARAMS, *parameters],
        "responses": responses,
    }
    return {
        "get": {"operationId": f"{operation}Get", **common},
        "post": {
            "operationId": f"{operation}Post",
            **common,
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {"schema": form},
                    "application/json": {"schema": form},
                }
            },
        },
        "options": {
            "operationId": f"{operation}Preflight",
            "summary": "CORS preflight",
            "responses": {"200": {"description": "CORS headers."}},
        },
    }


def engagelab(operation: str, summary: str, body: str) -> dict[str, Any]:
    reply = {
        "description": "`{code, message}`: code 0 is success (also partial success); "
        "40050 authentication failed; see docs/protocols.md for every code.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "security": [{"apiKey": []}],
            "requestBody": {
                "description": body,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                status: reply for status in ("200", "400", "401", "408", "413", "429", "503")
            },
        }
    }


def dashboard_page_paths() -> dict[str, Any]:
    """The web dashboard's pages and files (docs/dashboard.md)."""
    html = {
        "200": {
            "description": "The dashboard page; its router shows the screen the URL names.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        "303": {"description": "No dashboard session: to /login?next=<this page>."},
    }

    def page(operation_id: str, summary: str, parameters: list[Any] | None = None) -> Any:
        return {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "tags": ["dashboard"],
                **({"parameters": parameters} if parameters else {}),
                "responses": html
                if not parameters
                else {
                    **html,
                    "404": _error(
                        "`not_found`: the path holds what no screen's URL can (a line break)."
                    ),
                },
            }
        }

    script = {"content": {"text/javascript": {"schema": {"type": "string"}}}}
    return {
        "/": page("dashboardHome", "The dashboard (the app, or the list of apps)"),
        "/login": page("dashboardLogin", "The dashboard's login form"),
        "/apps": page("dashboardApps", "The dashboard's list of apps"),
        "/apps/{rest}": page(
            "dashboardAppPage",
            "A screen of one app in the dashboard",
            [path_parameter("rest", "The app id and the screen, e.g. APP_ID/trends.")],
        ),
        "/dashboard/vendor/plotly.min.js": {
            "get": {
                "operationId": "dashboardCharts",
                "summary": "plotly.js, from the installed plotly package",
                "tags": ["dashboard"],
                "responses": {
                    "200": {"description": "The library; gzipped when allowed.", **script}
                },
            }
        },
        "/dashboard/{path}": {
            "get": {
                "operationId": "dashboardFile",
                "summary": "The dashboard's own scripts, styles and icon",
                "tags": ["dashboard"],
                "parameters": [path_parameter("path", "A file of the dashboard, e.g. app.js.")],
                "responses": {
                    "200": {"description": "The file (ETag; revalidated on each use)."},
                    "404": {"description": "No such file."},
                },
            }
        },
    }


def synerise(path: str) -> dict[str, Any]:
    """A Synerise v4 endpoint: 202 with no body on success; Synerise's error body otherwise."""
    error = {
        "description": "`{error, message, path, status, timestamp, errors: [{code, field, "
        "message, rejectedValue}]}`",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    name = path.removeprefix("/v4/").replace("/", "_").replace("-", "_")
    return {
        "post": {
            "operationId": f"synerise_{name}",
            "summary": f"Synerise: {path}",
            "security": [{"apiKey": []}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "202": {"description": "Stored (some items of a batch may be rejected)."},
                **{status: error for status in ("400", "401", "403", "408", "413", "429", "503")},
            },
        }
    }


def segment(call: str, short: str | None = None) -> dict[str, Any]:
    """One Segment Tracking API endpoint (``call`` is a message type, or ``batch``); ``short`` is
    the letter of analytics.js's short path for it (``/v1/t`` for track ...)."""
    body = (
        _ref("SegmentBatch")
        if call == "batch"
        else {
            "type": "object",
            "description": "One Segment message: userId and/or anonymousId, messageId, "
            "timestamp, context, properties or traits, plus the call's own fields (track: event; "
            "page/screen: name; group: groupId; alias: previousId), and writeKey, sentAt.",
            "additionalProperties": True,
        }
    )
    operation = f"segment{call.title()}{'Short' if short else ''}"
    summary = f"Segment Tracking API: {call}"
    description = (
        "The write key is the app key: `writeKey` in the body, or HTTP Basic with the write key "
        "as user name and an empty password. The body is read as JSON whatever the Content-Type "
        "(analytics.js sends `text/plain`). Dropped messages are kept as failed events and listed "
        "in `rejected`; the status is still 200, as in Segment."
    )
    if short:
        summary += f" (analytics.js's short path; same as /v1/{call})"
    content = {"application/json": {"schema": body}, "text/plain": {"schema": body}}
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "description": description,
            "security": [{"segmentWriteKey": []}, {}],
            "requestBody": {"required": True, "content": content},
            "responses": {
                "200": _json("SegmentSuccess", '`{"success": true}`, with `rejected` if any.'),
                "400": _json(
                    "SegmentError",
                    "`invalid_json`, `invalid_body`, `batch_too_large`, `body_too_large`, "
                    "`too_many_events`.",
                ),
                "401": _json("SegmentError", "`missing_app_key`, `unknown_app_key`."),
                "403": _json("SegmentError", "`origin_not_allowed`."),
                "405": _json("SegmentError", "`method_not_allowed`."),
                "408": _json("SegmentError", "`request_timeout`."),
                "429": _json("SegmentError", "`rate_limited`: retry after `Retry-After`."),
                "503": _json(
                    "SegmentError",
                    "`store_unavailable`, `catalog_unavailable`: nothing stored; retry.",
                ),
            },
        },
        "options": {
            "operationId": f"{operation}Preflight",
            "summary": "CORS preflight",
            "responses": {"204": {"description": "CORS headers."}},
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            NativeBatch,
            IngestResponse,
            ErrorResponse,
            EventsPage,
            SegmentBatch,
            SegmentSuccess,
            SegmentError,
            *SCHEMAS,
        ],
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
    components["CountlyResult"] = {
        "type": "object",
        "properties": {"result": {"type": "string"}, "info": {"type": "string"}},
        "required": ["result"],
    }
    document: dict[str, Any] = {
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
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "tally_session",
                    "description": "A dashboard user's session (POST /api/v1/session); unsafe "
                    "methods also need the session's CSRF token in X-CSRF-Token.",
                },
                "segmentWriteKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Segment: the app key as user name and an empty password.",
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
                        "403": _error("`origin_not_allowed`: the app's allowed origins."),
                        "405": _error("Method not allowed."),
                        "408": _error("`request_timeout`: the body came too slowly."),
                        "413": _error("Body or batch larger than the limits."),
                        "429": _error("`rate_limited`: retry after `Retry-After` seconds."),
                        "503": _error(
                            "`store_unavailable` or `catalog_unavailable`: nothing was stored. "
                            "Retry after `Retry-After` seconds."
                        ),
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
            "/i": countly_write(
                "countlyWrite",
                "Countly write API: events, sessions, device details",
                COUNTLY_PARAMS,
            ),
            "/i/bulk": countly_write(
                "countlyBulk",
                "Countly bulk write: `requests`, a JSON array of /i parameter sets",
                [
                    _param("requests", "JSON array of /i parameter objects.", required=True),
                    _param("app_key", "Fills in for items without one."),
                ],
            ),
            "/o/sdk": {
                "get": {
                    "operationId": "countlySdkSettings",
                    "summary": "Countly SDK behaviour settings (`method=sc`): an empty set",
                    "parameters": [
                        _param("method", "Only `sc` is answered.", required=True),
                        _param("app_key", "The app key.", required=True),
                        _param("device_id", "The device id.", required=True),
                    ],
                    "responses": {
                        "200": {
                            "description": '`{"v": 1, "t": <ms>, "c": {}}`',
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _json("CountlyResult", "`App does not exist`, `Invalid method`."),
                    },
                }
            },
            "/o": countly_read(
                "countlyRead",
                "Countly read API: `method=events` (an event's time tree) and `method=get_events`",
                [
                    _param("method", "`events` or `get_events`.", required=True),
                    _param("event", "`events`: the event (default: the first defined one)."),
                    _param("events", "`events`: a JSON array of events, summed into one tree."),
                    _param("segmentation", "`events`: a segment; values one level down."),
                    _param("action", "`events`: `refresh` for today only."),
                ],
                "`events`: `{YEAR: {c, s, dur, MONTH: {..., DAY: {..., HOUR: {c, s, dur}}}}, "
                "meta: {segments, <segment>: [values]}}`; `get_events`: `{_id, list, segments, "
                "limits}`. See docs/protocols.md.",
            ),
            "/o/analytics/events": countly_read(
                "countlyAnalyticsEvents",
                "Countly analytics: an event's rows per period bucket or per segment value",
                [
                    _param("event", "The event (or `events`)."),
                    _param("events", "A JSON array of events: the answer is keyed by event."),
                    _param("segmentation", "A segment: one row per value, most frequent first."),
                    _param("bucket", "`daily` or `monthly` (default: by period)."),
                ],
                "`[{_id, c, s, dur}]` (`_id` a date bucket or a segment value); with `events`, "
                "`{event: [...]}`.",
            ),
            "/v1/event/report": engagelab(
                "engagelabReport",
                "EngageLab: report behaviour events of EUIDs",
                "`{app_key?, data: [{euid, event_name, itime, random_id?, properties?}]}`.",
            ),
            "/v1/user/register": engagelab(
                "engagelabRegister",
                "EngageLab: EUIDs for identities",
                "`{identity_name: user_id|anonymous_id|registration_id, identity_values: [...]}`; "
                "the reply adds `data: [{identity_value, euid}]`.",
            ),
            "/v1/user/property": engagelab(
                "engagelabUserProperty",
                "EngageLab: set or increase user attributes",
                "`{euid, type: set|increase, properties}`.",
            ),
            **{f"/v1/{call}": segment(call) for call in (*CALL_TYPES, "batch")},
            **{f"/v1/{short}": segment(call, short) for short, call in SHORT_PATHS.items()},
            **{path: synerise(path) for path in synerise_adapters()},
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
            **management_paths(),
            **transfer_paths(),
            **dashboard_page_paths(),
            "/sdk/tally.js": {
                "get": {
                    "operationId": "trackerScript",
                    "summary": "tally.js, the browser tracker (docs/tally-js.md)",
                    "parameters": [
                        {
                            "name": "If-None-Match",
                            "in": "header",
                            "schema": {"type": "string"},
                            "description": "An ETag from an earlier answer: 304 if unchanged.",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The script; gzipped when Accept-Encoding allows it. "
                            "ETag (content hash), Cache-Control public, max-age=300.",
                            "content": {"application/javascript": {"schema": {"type": "string"}}},
                        },
                        "304": {"description": "Not modified: If-None-Match names the ETag."},
                    },
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
    document["paths"]["/sdk/v1/events"] = _browser_ingest(document["paths"]["/api/v1/events"])
    return document


def _browser_ingest(native: dict[str, Any]) -> dict[str, Any]:
    """The browser tracker's endpoint: the native body and reply, only defined events."""
    post = dict(native["post"])
    post["operationId"] = "ingestBrowserEvents"
    post["summary"] = "Send events from a browser (tally.js)"
    post["description"] = (
        "The body and reply of POST /api/v1/events (also as text/plain, as sendBeacon sends "
        "it). With the app key, only events defined in the app's catalog and available to "
        "anonymous profiles (or, with a customer JWT in `access_token` or a Bearer header, to "
        "customers) are accepted; others are rejected with undefined_event or forbidden_event."
    )
    return {"post": post, **{k: v for k, v in native.items() if k != "post"}}
