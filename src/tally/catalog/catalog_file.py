"""Catalog as code: an app's rules, definitions and aliases as one YAML file.

``export_catalog`` reads an app into a :class:`CatalogFile`, ``dump_yaml`` writes it, ``load_yaml``
reads one back (strictly: unknown keys, wrong types and impossible definitions are refused with
the path of the offending value), ``diff`` says what would change, and ``apply_catalog`` makes an
app equal to a file. Exporting an app and applying the file to another app gives a copy whose
export is the same text. Secrets (the Countly salt, a customer JWT secret) are not part of the
file and are left alone.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import msgspec
import yaml

from tally.catalog.definitions import (
    MAX_DEFINED_NAME,
    RESERVED_EVENTS,
    EventAlias,
    EventDefinition,
    PropertyDefinition,
)
from tally.catalog.models import SECRET_SETTINGS as _SECRETS
from tally.catalog.models import AppSettings, check_settings

if TYPE_CHECKING:
    from tally.catalog.store import Catalog

SECRET_SETTINGS: Final = frozenset(_SECRETS)
"""Settings a catalog file neither shows nor changes."""


def _public_settings() -> type[msgspec.Struct]:
    """:class:`AppSettings` without its secrets, in the same order and with the same defaults
    (``customer_jwt_key`` is a public key, so it is included); derived, so a new setting is in
    catalog files as soon as it exists."""
    fields = []
    for field in msgspec.structs.fields(AppSettings):
        if field.name in SECRET_SETTINGS:
            continue
        if field.default_factory is not msgspec.NODEFAULT:
            default: Any = msgspec.field(default_factory=field.default_factory)
        else:
            default = field.default
        fields.append((field.name, field.type, default))
    return msgspec.defstruct(
        "CatalogSettings",
        fields,
        frozen=True,
        kw_only=True,
        omit_defaults=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


CatalogSettings: Any = _public_settings()
"""The app's rule settings as a catalog file holds them."""


class CatalogFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One app's catalog: what a file holds, and what applying it makes the app hold.

    A key left out of a file means its default (no events, no aliases, default settings)."""

    settings: CatalogSettings = msgspec.field(default_factory=CatalogSettings)
    events: list[EventDefinition] = msgspec.field(default_factory=list)
    """Sorted by name when exported."""
    aliases: list[EventAlias] = msgspec.field(default_factory=list)
    """Sorted by alias when exported."""


# export and YAML


def export_catalog(catalog: Catalog, app_id: str) -> CatalogFile:
    """The app's catalog as a file would hold it; KeyError if there is no such app."""
    app = catalog.get_app(app_id)
    if app is None:
        raise KeyError(app_id)
    settings = {
        key: value
        for key, value in msgspec.to_builtins(app.settings).items()
        if key not in SECRET_SETTINGS
    }
    return CatalogFile(
        settings=msgspec.convert(settings, CatalogSettings),
        events=sorted(catalog.definitions.list(app_id), key=lambda d: d.name),
        aliases=sorted(catalog.definitions.aliases(app_id), key=lambda a: a.alias),
    )


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line text (a PEM key, a long description) reads best as a literal block.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(file: CatalogFile) -> str:
    """The file as YAML: keys in definition order, defaults left out, one line per value."""
    data = {
        "settings": msgspec.to_builtins(file.settings),
        "events": msgspec.to_builtins(file.events),
        "aliases": msgspec.to_builtins(file.aliases),
    }
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=float("inf"),
    )


class _Loader(yaml.SafeLoader):
    """YAML 1.2's scalars: only true/false are booleans (so ``convention: off`` is the string
    ``off``, not false) and dates stay strings; repeated keys are an error, not a silent
    overwrite."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class explains it
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> CatalogFile:
    """Read a catalog file; ValueError naming the offending path if it is not a valid one."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"invalid YAML: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None
    if data is None:
        raise ValueError("the file is empty; expected settings, events and aliases")
    try:
        file = msgspec.convert(data, CatalogFile)
    except msgspec.ValidationError as exc:
        raise ValueError(_explain(str(exc))) from None
    check_catalog_file(file)
    return file


# validation


def check_catalog_file(file: CatalogFile) -> None:
    """Refuse what the catalog cannot hold or the pipeline could not apply."""
    try:
        check_settings(AppSettings(**_fields(file.settings)))
    except ValueError as exc:
        raise ValueError(f"settings.{exc}") from None
    events: dict[str, int] = {}
    for i, definition in enumerate(file.events):
        where = f"events[{i}]"
        _check_name(f"{where}.name", definition.name)
        if definition.name in events:
            raise ValueError(
                f"{where}.name: {definition.name!r} is already defined "
                f"(events[{events[definition.name]}])"
            )
        events[definition.name] = i
        properties: dict[str, int] = {}
        for j, prop in enumerate(definition.properties):
            path = f"{where}.properties[{j}].name"
            if not prop.name:
                raise ValueError(f"{path}: must not be empty")
            if prop.name in properties:
                raise ValueError(
                    f"{path}: {prop.name!r} is already a property of {definition.name!r} "
                    f"({where}.properties[{properties[prop.name]}])"
                )
            properties[prop.name] = j
    aliases: dict[str, int] = {}
    for i, alias in enumerate(file.aliases):
        where = f"aliases[{i}]"
        _check_name(f"{where}.alias", alias.alias)
        _check_name(f"{where}.name", alias.name)
        if alias.alias == alias.name:
            raise ValueError(f"{where}: an event cannot be an alias of itself ({alias.name!r})")
        if alias.alias in aliases:
            raise ValueError(
                f"{where}.alias: {alias.alias!r} is already an alias "
                f"(aliases[{aliases[alias.alias]}])"
            )
        aliases[alias.alias] = i


def _check_name(path: str, name: str) -> None:
    if not 1 <= len(name) <= MAX_DEFINED_NAME:
        raise ValueError(f"{path}: must be 1 to {MAX_DEFINED_NAME} characters")
    where = RESERVED_EVENTS.get(name)
    if where is not None:
        raise ValueError(
            f"{path}: {name} is reserved and cannot be defined or aliased as a custom event: "
            f"{where}"
        )


_ERROR: Final = re.compile(r"^(?P<message>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?$")
_PATH_PART: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TYPE_NAMES: Final = {
    "str": "a string",
    "bool": "true or false",
    "int": "a number",
    "float": "a number",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing (null)",
}


def _explain(error: str) -> str:
    """msgspec's message reworded for people editing YAML, with the path in front:
    ``events[2].properties[0].type: expected one of string, number, ...; got 'text'``."""
    match = _ERROR.match(error)
    if match is None:  # pragma: no cover (msgspec's format changed)
        return error
    message, path = match["message"], (match["path"] or "").lstrip(".")
    where = path or "the file"
    if match["key"]:
        return f"{where}: keys must be strings"
    if found := re.fullmatch(r"Invalid enum value (.*)", message):
        values = ", ".join(str(v.value) for v in _enum_at(path) or ())
        return f"{where}: expected one of {values}; got {found[1]}"
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", message):
        if path == "settings" and found[1] in SECRET_SETTINGS:
            return (
                f"settings: {found[1]} is a secret and not part of catalog files "
                f"(set it with tally apps set)"
            )
        known = ", ".join(_keys_at(path))
        return f"{where}: unknown key {found[1]!r} (expected one of {known})"
    if found := re.fullmatch(r"Object missing required field `(.*)`", message):
        return f"{where}: missing required key {found[1]!r}"
    if found := re.fullmatch(r"Expected `(.*?)`, got `(.*)`", message):
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in found[1].split(" | "))
        got = _TYPE_NAMES.get(found[2], found[2])
        return f"{where}: expected {wanted}, got {got}"
    return f"{where}: {message[:1].lower()}{message[1:]}"


def _type_at(path: str) -> msgspec.inspect.Type | None:
    kind: msgspec.inspect.Type | None = msgspec.inspect.type_info(CatalogFile)
    for field, _index in _PATH_PART.findall(f".{path}"):
        while isinstance(kind, msgspec.inspect.UnionType):
            kind = next(
                (t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)), None
            )
        if field and isinstance(kind, msgspec.inspect.StructType):
            kind = next((f.type for f in kind.fields if f.encode_name == field), None)
        elif not field and isinstance(kind, msgspec.inspect.ListType):
            kind = kind.item_type
        else:
            return None
    return kind


def _enum_at(path: str) -> type[Any] | None:
    kind = _type_at(path)
    return kind.cls if isinstance(kind, msgspec.inspect.EnumType) else None


def _keys_at(path: str) -> list[str]:
    kind = _type_at(path)
    if isinstance(kind, msgspec.inspect.StructType):
        return [f.encode_name for f in kind.fields]
    return []  # pragma: no cover (unknown keys are only reported on structs)


# diff and apply


def _show(value: Any) -> str:
    """A value in a diff line: enum values bare, strings quoted (long ones shortened)."""
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str) and ("\n" in value or len(value) > 60):
        return repr(value[:40]) + "..."
    return repr(value)


_EVENT_FIELDS: Final = tuple(f for f in EventDefinition.__struct_fields__ if f != "properties")
_PROPERTY_FIELDS: Final = tuple(f for f in PropertyDefinition.__struct_fields__ if f != "name")


def diff(current: CatalogFile, wanted: CatalogFile) -> list[str]:
    """What applying ``wanted`` to an app holding ``current`` would change, one line each:
    ``+ event checkout.start``, ``~ event x: property amount type string -> number``,
    ``~ settings.denylist: [] -> ['debug.*']``. Empty when they are the same."""
    lines = [
        f"~ settings.{name}: {_show(old)} -> {_show(new)}"
        for name in CatalogSettings.__struct_fields__
        if (old := getattr(current.settings, name)) != (new := getattr(wanted.settings, name))
    ]
    before = {d.name: d for d in current.events}
    after = {d.name: d for d in wanted.events}
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            lines.append(f"- event {name}")
        elif name not in before:
            lines.append(f"+ event {name}")
        else:
            lines.extend(f"~ event {name}: {c}" for c in _event_changes(before[name], after[name]))
    old_aliases = {a.alias: a.name for a in current.aliases}
    new_aliases = {a.alias: a.name for a in wanted.aliases}
    for alias in sorted(old_aliases.keys() | new_aliases.keys()):
        old, new = old_aliases.get(alias), new_aliases.get(alias)
        if new is None:
            lines.append(f"- alias {alias} -> {old}")
        elif old is None:
            lines.append(f"+ alias {alias} -> {new}")
        elif old != new:
            lines.append(f"~ alias {alias}: {old} -> {new}")
    return lines


def _event_changes(old: EventDefinition, new: EventDefinition) -> Iterator[str]:
    for field in _EVENT_FIELDS:
        if (was := getattr(old, field)) != (now := getattr(new, field)):
            yield f"{field} {_show(was)} -> {_show(now)}"
    before = {p.name: p for p in old.properties}
    after = {p.name: p for p in new.properties}
    for prop in old.properties:
        if prop.name not in after:
            yield f"- property {prop.name}"
    for prop in new.properties:
        was_prop = before.get(prop.name)
        if was_prop is None:
            yield f"+ property {prop.name}"
            continue
        for field in _PROPERTY_FIELDS:
            if (was := getattr(was_prop, field)) != (now := getattr(prop, field)):
                yield f"property {prop.name} {field} {_show(was)} -> {_show(now)}"
    kept_before = [p.name for p in old.properties if p.name in after]
    kept_after = [p.name for p in new.properties if p.name in before]
    if kept_before != kept_after:
        yield f"properties reordered: {', '.join(kept_before)} -> {', '.join(kept_after)}"


def _fields(settings: CatalogSettings) -> dict[str, Any]:
    """Every setting, defaults included (so applying them resets what the file leaves out)."""
    return {name: getattr(settings, name) for name in CatalogSettings.__struct_fields__}


def apply_catalog(catalog: Catalog, app_id: str, wanted: CatalogFile) -> list[str]:
    """Make the app's settings, definitions and aliases those of ``wanted`` (definitions and
    aliases in one transaction; settings are validated before anything is written). Returns the
    changes, as :func:`diff` does; nothing is written when there are none. KeyError if there is
    no such app, ValueError if the file is not valid."""
    check_catalog_file(wanted)
    current = export_catalog(catalog, app_id)
    changes = diff(current, wanted)
    if not changes:
        return []
    if (current.events, current.aliases) != (
        sorted(wanted.events, key=lambda d: d.name),
        sorted(wanted.aliases, key=lambda a: a.alias),
    ):
        catalog.definitions.replace_all(app_id, wanted.events, wanted.aliases)
    if current.settings != wanted.settings:
        catalog.update_settings(app_id, **_fields(wanted.settings))
    return changes
