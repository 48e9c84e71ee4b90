"""``/openapi.json``'s part for the data-management API and Synerise's workspace login, with
schemas from the same msgspec types the handlers decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from tally.catalog.definitions import EventAlias, EventDefinition
from tally.catalog.models import AppSettings
from tally.http.apps_api import AppList, CreateApp, NewAppView, RotatedAppView, RotateKeys
from tally.http.failed import (
    DiscardedCounts,
    FailedEventDetail,
    ReplayReport,
    ReplayRequest,
)
from tally.http.manage import AliasTarget, DefinitionView
from tally.http.session import PATH as SESSION_PATH
from tally.http.session import DashboardLogin, SessionView
from tally.http.synerise_auth import PATH as LOGIN_PATH
from tally.http.synerise_auth import LoginRequest, LoginResponse
from tally.query.model import (
    FunnelQuery,
    RetentionQuery,
    SessionsQuery,
    TrendsQuery,
    UsersQuery,
)
from tally.store.query import FailedSummary

BASE = "/api/v1/apps/{app_id}"


class DefinitionList(msgspec.Struct):
    events: list[DefinitionView]


class AliasList(msgspec.Struct):
    aliases: list[EventAlias]


class SettingsView(msgspec.Struct):
    settings: AppSettings


class FailedEventList(msgspec.Struct):
    failed_events: list[FailedSummary]


class DiscardedReport(msgspec.Struct):
    totals: dict[str, int]
    """Events discarded per rule over the period."""
    days: list[DiscardedCounts]


SCHEMAS = [
    EventDefinition,
    DefinitionView,
    DefinitionList,
    EventAlias,
    AliasTarget,
    AliasList,
    SettingsView,
    FailedEventList,
    FailedEventDetail,
    ReplayRequest,
    ReplayReport,
    DiscardedReport,
    LoginRequest,
    LoginResponse,
    TrendsQuery,
    UsersQuery,
    SessionsQuery,
    FunnelQuery,
    RetentionQuery,
    DashboardLogin,
    SessionView,
    AppList,
    CreateApp,
    RotateKeys,
    NewAppView,
    RotatedAppView,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str | dict[str, Any]) -> dict[str, Any]:
    return {
        "content": {
            "application/json": {"schema": _ref(schema) if isinstance(schema, str) else schema}
        }
    }


_ERROR = {"description": "`{error: {code, message}}`", **_json("ErrorResponse")}
_APP_ID = {
    "name": "app_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The app's id (24 hex characters).",
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _op(
    operation_id: str,
    summary: str,
    *,
    replies: dict[str, str | dict[str, Any] | None],
    body: str | dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """One operation; ``replies`` maps a status to a schema name (None: no body)."""
    responses: dict[str, Any] = {}
    for status, schema in replies.items():
        reply: dict[str, Any] = {"description": status}
        if schema is not None:
            reply.update(_json(schema))
        responses[status] = reply
    for status in ("400", "401", "403", "404"):
        responses.setdefault(status, _ERROR)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "security": [{"apiKey": []}, {"session": []}],
        "parameters": [_APP_ID, *(parameters or [])],
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    return operation


_NAME = path_parameter("name", "The event's name.")
_ALIAS = path_parameter("alias", "The old name.")
_FAILED_FILTERS = [
    _query("reason", "A drop reason (see the info section)."),
    _query("name", "The event name."),
    _query("since", "Received at or after (ISO 8601 or epoch)."),
    _query("until", "Received before."),
    _query("replayed", "true or false."),
    _query("limit", "1 to 1000, default 100."),
]
_CSRF = (
    "Takes a dashboard session only (log in with POST /api/v1/session); with the session "
    "cookie, send the session's CSRF token in X-CSRF-Token."
)
_SESSION_ONLY = [{"session": []}]


def _session_op(
    operation_id: str,
    summary: str,
    *,
    replies: dict[str, Any],
    description: str,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    responses = {
        status: {"description": status, **(_json(schema) if schema else {})}
        for status, schema in replies.items()
    }
    responses.setdefault("401", _ERROR)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "security": _SESSION_ONLY,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": body_required, **_json(body)}
    return operation


def dashboard_paths() -> dict[str, Any]:
    """Logging in to the dashboard, and the apps a dashboard user manages."""
    return {
        SESSION_PATH: {
            "post": {
                "operationId": "logIn",
                "summary": "Log in to the dashboard",
                "description": "Sets the session cookie (HttpOnly, SameSite=Lax, Secure over "
                "https) and answers the email and the session's CSRF token. Wrong email or "
                "password: 401 invalid_login. After 5 failed logins for an email within 15 "
                "minutes: 429 too_many_attempts with Retry-After.",
                "security": [],
                "requestBody": {"required": True, **_json("DashboardLogin")},
                "responses": {
                    "200": {
                        "description": "Logged in.",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string"},
                                    "csrf_token": {"type": "string"},
                                },
                                "required": ["email", "csrf_token"],
                            }
                        ),
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "429": _ERROR,
                },
            },
            "get": _session_op(
                "currentSession",
                "The logged-in dashboard user and the session's CSRF token",
                replies={"200": "SessionView"},
                description="401 when not logged in. Each use moves the session's expiry 14 "
                "days ahead.",
            ),
            "delete": _session_op(
                "logOut",
                "Log out: the session ends on the server and the cookie is cleared",
                replies={"204": None, "403": "ErrorResponse"},
                description="Needs X-CSRF-Token while the session is live.",
            ),
        },
        "/api/v1/apps": {
            "get": _session_op(
                "listApps",
                "Every app (never secrets)",
                replies={"200": "AppList"},
                description="Takes a dashboard session only.",
            ),
            "post": _session_op(
                "createApp",
                "Create an app; its API secret is in the answer this once",
                body="CreateApp",
                replies={"201": "NewAppView", "400": "ErrorResponse", "403": "ErrorResponse"},
                description=_CSRF,
            ),
        },
        "/api/v1/apps/{app_id}/rotate": {
            "post": _session_op(
                "rotateKeys",
                "Give an app a new API secret (and optionally a new app key)",
                parameters=[_APP_ID],
                body="RotateKeys",
                body_required=False,
                replies={
                    "200": "RotatedAppView",
                    "400": "ErrorResponse",
                    "403": "ErrorResponse",
                    "404": "ErrorResponse",
                },
                description="The old secret (and app key), and workspace JWTs made with the old "
                "secret, keep working for `overlap_seconds` (default 86400; 0: they stop at once "
                "in this worker and within a second in the others); `previous_valid_until` says "
                "until when. " + _CSRF,
            ),
        },
    }


_CHANGES = "Applies at once in this worker and within a second in every other, without a restart."


def management_paths() -> dict[str, Any]:
    settings_patch = {
        "type": "object",
        "description": "Only the settings to change; see the AppSettings schema for each. "
        'Secrets (countly_salt, customer_jwt_secret) are read back as "set"; sending "set" '
        "leaves them as they are.",
        "additionalProperties": True,
    }
    return {
        **dashboard_paths(),
        f"{BASE}/settings": {
            "get": _op("getSettings", "An app's rule settings", replies={"200": "SettingsView"}),
            "patch": _op(
                "patchSettings",
                "Change some rule settings",
                body=settings_patch,
                replies={"200": "SettingsView"},
                description=_CHANGES,
            ),
        },
        f"{BASE}/definitions": {
            "get": _op(
                "listDefinitions",
                "Event definitions (the app's own and the built-in ones)",
                parameters=[_query("status", "active, hidden or deprecated.")],
                replies={"200": "DefinitionList"},
            ),
        },
        f"{BASE}/definitions/{{name}}": {
            "get": _op(
                "getDefinition",
                "One event definition",
                parameters=[_NAME],
                replies={"200": "DefinitionView"},
            ),
            "put": _op(
                "putDefinition",
                "Create or replace an event definition",
                parameters=[_NAME],
                body="EventDefinition",
                replies={"200": "DefinitionView", "201": "DefinitionView"},
                description=_CHANGES,
            ),
            "delete": _op(
                "deleteDefinition",
                "Delete an event definition",
                parameters=[_NAME],
                replies={"204": None},
                description=_CHANGES,
            ),
        },
        f"{BASE}/aliases": {
            "get": _op("listAliases", "Event aliases", replies={"200": "AliasList"}),
        },
        f"{BASE}/aliases/{{alias}}": {
            "put": _op(
                "putAlias",
                "Store events sent under this name as another one from now on",
                parameters=[_ALIAS],
                body="AliasTarget",
                replies={"200": "EventAlias"},
                description=_CHANGES,
            ),
            "delete": _op(
                "deleteAlias",
                "Remove an alias",
                parameters=[_ALIAS],
                replies={"204": None},
                description=_CHANGES,
            ),
        },
        f"{BASE}/failed-events": {
            "get": _op(
                "listFailedEvents",
                "Failed events, newest first",
                parameters=_FAILED_FILTERS,
                replies={"200": "FailedEventList"},
            ),
        },
        f"{BASE}/failed-events/{{failed_id}}": {
            "get": _op(
                "getFailedEvent",
                "One failed event with its payload",
                parameters=[path_parameter("failed_id", "The failed event's id.")],
                replies={"200": "FailedEventDetail"},
            ),
        },
        f"{BASE}/failed-events/replay": {
            "post": _op(
                "replayFailedEvents",
                "Run failed events through the pipeline again",
                body="ReplayRequest",
                replies={"200": "ReplayReport"},
                description="Picks failed events not replayed yet that match the filters, runs "
                "them with the app's current catalog and stores those that pass. An event is "
                "replayed under its client id or the failed event's id, so replaying twice "
                "stores it once.",
            ),
        },
        f"{BASE}/discarded": {
            "get": _op(
                "listDiscarded",
                "Events discarded on purpose, per rule and day",
                parameters=[_query("since", "A date, YYYY-MM-DD.")],
                replies={"200": "DiscardedReport"},
            ),
        },
        f"{BASE}/query": {
            "post": _op(
                "runQuery",
                "Run an analytics query (trends, users, sessions, funnel, retention)",
                body={
                    "oneOf": [
                        _ref(name)
                        for name in (
                            "TrendsQuery",
                            "UsersQuery",
                            "SessionsQuery",
                            "FunnelQuery",
                            "RetentionQuery",
                        )
                    ],
                    "discriminator": {"propertyName": "kind"},
                },
                replies={"200": {"type": "object"}},
                description="See docs/queries.md. Errors: invalid_query, undefined_property, "
                "invalid_timezone, too_many_buckets.",
            ),
        },
        f"{BASE}/users/{{user}}/activity": {
            "get": _op(
                "userActivity",
                "One customer's events, newest first, across their linked devices",
                parameters=[
                    path_parameter("user", "A customer id or device id."),
                    _query("limit", "1 to 500, default 50."),
                    _query("cursor", "next_cursor of the previous page."),
                ],
                replies={"200": {"type": "object"}},
                description="`{events: [...], next_cursor}`; labels are rendered from the "
                "definitions' label templates where the event has none.",
            ),
        },
        f"{BASE}/customers": {
            "get": _op(
                "searchCustomers",
                "Customers whose user or device id contains a text, most recently seen first",
                parameters=[
                    _query("search", "Part of a user or device id, any case; empty: everyone."),
                    _query("limit", "1 to 500, default 50."),
                ],
                replies={"200": {"type": "object"}},
                description="`{customers: [{id, kind: user|device, events, first_seen, "
                "last_seen}]}`.",
            ),
        },
        f"{BASE}/customers/{{customer}}": {
            "get": _op(
                "customerProfile",
                "One customer's profile across their linked ids",
                parameters=[path_parameter("customer", "A user id or device id.")],
                replies={"200": {"type": "object"}},
                description="`{id, linked_ids, events, first_seen, last_seen, properties, "
                "devices: [{device, events, first_seen, last_seen, os, browser, device_type, "
                "sdk_name, country_code, city, locale}], top_events: [{name, events, "
                "last_seen}]}`; properties merge the customer's user.details, "
                "identity.identify, user.set and user.increase events. 404 not_found when the "
                "id has no events.",
            ),
        },
        f"{BASE}/live": {
            "get": {
                **_op(
                    "liveEvents",
                    "Accepted events as Server-Sent Events, as they are stored",
                    parameters=[_query("name", "Only these event names (repeat for several).")],
                    replies={},
                ),
                "responses": {
                    "200": {
                        "description": "`event: event` with the event as JSON per stored event; "
                        "`event: missed` with `{missed: n}` if the client fell behind; a comment "
                        "every 15 s.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _ERROR,
                    "403": _ERROR,
                },
            }
        },
        LOGIN_PATH: {
            "post": {
                "operationId": "syneriseLoginProfile",
                "summary": "Synerise: a workspace JWT for the app's API key and secret",
                "description": "`apiKey` is `API_KEY:API_SECRET`. The token is valid for one "
                "hour and is accepted as a Bearer token by the /v4 endpoints.",
                "requestBody": {"required": True, **_json("LoginRequest")},
                "responses": {
                    "200": {"description": "The token.", **_json("LoginResponse")},
                    "400": {"description": "Synerise's error body."},
                    "401": {"description": "Synerise's error body: the key is not valid."},
                },
            }
        },
    }
