"""The catalog's management API: an app's rule settings, event definitions and aliases.

``GET|PATCH       /api/v1/apps/{app_id}/settings``
``GET             /api/v1/apps/{app_id}/definitions``
``GET|PUT|DELETE  /api/v1/apps/{app_id}/definitions/{name}``
``GET             /api/v1/apps/{app_id}/aliases``
``PUT|DELETE      /api/v1/apps/{app_id}/aliases/{alias}``

Every change bumps the app's catalog version; running workers apply it within a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog.definitions import (
    BUILT_IN_EVENTS,
    MAX_DEFINED_NAME,
    RESERVED_EVENTS,
    EventAlias,
    EventDefinition,
    EventStatus,
    PropertyDefinition,
)
from tally.catalog.models import SECRET_SETTINGS, AppSettings, redacted
from tally.http.api import authenticated_app, decode_body, json_response
from tally.http.errors import ApiError
from tally.http.services import Services
from tally.pipeline.names import CONVENTION

_BUILT_IN = {d.name: d for d in BUILT_IN_EVENTS}


class PropertyView(PropertyDefinition, kw_only=True, omit_defaults=False):
    """A property definition with every field shown, defaults included."""


class DefinitionView(EventDefinition, kw_only=True, omit_defaults=False):
    properties: list[PropertyView] = msgspec.field(default_factory=list)
    built_in: bool = False
    """Predefined by Tally (page.visit, session.start...); a PUT replaces it for this app."""
    follows_convention: bool = True
    """The name has the ``context.action`` form."""


class AliasTarget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


def _services(request: Request) -> Services:
    return request.app.state.services


def settings_view(settings: AppSettings) -> dict[str, Any]:
    """Every setting with its value (defaults included); secrets (the Countly salt, the customer
    JWT secret) are written, never read back: only whether they are set is shown."""
    return msgspec.to_builtins(msgspec.structs.asdict(redacted(settings)))


async def get_settings(request: Request) -> Response:
    app = await authenticated_app(request, _services(request), request.path_params["app_id"])
    return json_response({"settings": settings_view(app.settings)})


async def patch_settings(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    changes = decode_body(await request.body(), dict[str, Any])
    unknown = set(changes) - set(AppSettings.__struct_fields__)
    if unknown:
        known = ", ".join(AppSettings.__struct_fields__)
        raise ApiError(
            400, "invalid_settings", f"unknown settings {sorted(unknown)}; known: {known}"
        )
    for name in SECRET_SETTINGS:  # a view sent back as it was read leaves the secret alone
        if changes.get(name) == "set":
            del changes[name]
    try:
        updated = await asyncio.to_thread(services.catalog.update_settings, app.id, **changes)
    except ValueError as exc:
        raise ApiError(400, "invalid_settings", str(exc)) from None
    services.resolver.forget(app.id)
    return json_response({"settings": settings_view(updated.settings)})


def _view(definition: EventDefinition, *, built_in: bool) -> DefinitionView:
    fields = msgspec.structs.asdict(definition)
    fields["properties"] = [
        PropertyView(**msgspec.structs.asdict(p)) for p in definition.properties
    ]
    return DefinitionView(
        **fields,
        built_in=built_in,
        follows_convention=bool(CONVENTION.fullmatch(definition.name)),
    )


async def list_definitions(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    status = request.query_params.get("status")
    if status is not None and status not in EventStatus.__members__.values():
        raise ApiError(400, "invalid_parameter", f"status must be one of {list(EventStatus)}")
    stored = await asyncio.to_thread(services.catalog.definitions.list, app.id)
    names = {d.name for d in stored}
    views = [_view(d, built_in=False) for d in stored]
    views += [_view(d, built_in=True) for d in BUILT_IN_EVENTS if d.name not in names]
    views.sort(key=lambda v: v.name)
    if status is not None:
        views = [v for v in views if v.status == status]
    return json_response({"events": views})


async def get_definition(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    name = request.path_params["name"]
    definition = await asyncio.to_thread(services.catalog.definitions.get, app.id, name)
    if definition is not None:
        return json_response(_view(definition, built_in=False))
    if name in _BUILT_IN:
        return json_response(_view(_BUILT_IN[name], built_in=True))
    raise ApiError(404, "not_found", f"event {name!r} is not defined")


def check_definition(definition: EventDefinition) -> None:
    """Refuse a definition the pipeline could not apply, saying why."""
    name = definition.name
    if not name.strip() or len(name) > MAX_DEFINED_NAME:
        raise ValueError(f"event names are 1 to {MAX_DEFINED_NAME} characters")
    if name in RESERVED_EVENTS:
        raise ValueError(f"{name} is reserved and cannot be defined: {RESERVED_EVENTS[name]}")
    seen: set[str] = set()
    for prop in definition.properties:
        if not prop.name:
            raise ValueError("property names must not be empty")
        if prop.name in seen:
            raise ValueError(f"property {prop.name!r} is defined twice")
        seen.add(prop.name)


async def put_definition(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    name = request.path_params["name"]
    body = decode_body(await request.body(), dict[str, Any])
    if body.setdefault("name", name) != name:
        raise ApiError(400, "invalid_body", "the body's name differs from the one in the path")
    try:
        definition = msgspec.convert(body, EventDefinition)
        check_definition(definition)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ApiError(400, "invalid_definition", str(exc)) from None
    created = await asyncio.to_thread(services.catalog.definitions.put, app.id, definition)
    services.resolver.forget(app.id)
    return json_response(_view(definition, built_in=False), status=201 if created else 200)


async def delete_definition(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    name = request.path_params["name"]
    if not await asyncio.to_thread(services.catalog.definitions.delete, app.id, name):
        raise ApiError(404, "not_found", f"event {name!r} has no definition of this app's own")
    services.resolver.forget(app.id)
    return Response(status_code=204)


async def list_aliases(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    aliases = await asyncio.to_thread(services.catalog.definitions.aliases, app.id)
    return json_response({"aliases": aliases})


async def put_alias(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    alias = EventAlias(
        alias=request.path_params["alias"],
        name=decode_body(await request.body(), AliasTarget).name,
    )
    store = services.catalog.definitions
    existing = {a.alias: a.name for a in await asyncio.to_thread(store.aliases, app.id)}
    if alias.name in existing:
        raise ApiError(
            400,
            "invalid_alias",
            f"{alias.name!r} is itself an alias of {existing[alias.name]!r}; "
            "point the alias at the current name",
        )
    if alias.alias in existing.values():
        raise ApiError(
            400, "invalid_alias", f"{alias.alias!r} is the current name of other aliases"
        )
    try:
        await asyncio.to_thread(store.put_alias, app.id, alias)
    except ValueError as exc:
        raise ApiError(400, "invalid_alias", str(exc)) from None
    services.resolver.forget(app.id)
    return json_response(alias)


async def delete_alias(request: Request) -> Response:
    services = _services(request)
    app = await authenticated_app(request, services, request.path_params["app_id"])
    alias = request.path_params["alias"]
    if not await asyncio.to_thread(services.catalog.definitions.delete_alias, app.id, alias):
        raise ApiError(404, "not_found", f"no alias {alias!r}")
    services.resolver.forget(app.id)
    return Response(status_code=204)
