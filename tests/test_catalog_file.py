"""Catalog as code: export an app's catalog to YAML, diff it, apply it (library and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tally.catalog import AppSettings, Catalog, NewApp, sqlite_url
from tally.catalog.catalog_file import (
    SECRET_SETTINGS,
    CatalogFile,
    CatalogSettings,
    apply_catalog,
    diff,
    dump_yaml,
    export_catalog,
    load_yaml,
)
from tally.catalog.definitions import (
    EventAlias,
    EventDefinition,
    EventStatus,
    OnMismatch,
    Permission,
    PropertyDefinition,
    PropertyType,
    Source,
)
from tally.catalog.models import Convention, NameRule
from tally.cli import main


def public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


PAGE_VISIT = EventDefinition(
    name="page.visit",
    display_name="Page visit",
    description="A page view.",
    label_template="Visited page {{title}}",
    permission=Permission.ANONYMOUS,
    properties=[
        PropertyDefinition(name="url", required=True, description="The page's address."),
        PropertyDefinition(name="title"),
    ],
)
# The Synerise seed: SR.event.trackCustomEvent("entries.count", params, "Entries count").
ENTRIES_COUNT = EventDefinition(
    name="entries.count",
    display_name="Entries count",
    label_template="{{entries}} entries at {{shopName}}",
    permission=Permission.CUSTOMER,
    properties=[
        PropertyDefinition(name="lat", type=PropertyType.NUMBER),
        PropertyDefinition(name="lon", type=PropertyType.NUMBER),
        PropertyDefinition(name="object"),
        PropertyDefinition(name="shopId", required=True),
        PropertyDefinition(name="shopName", description="Zażółć gęślą jaźń"),
        PropertyDefinition(name="zipCode"),
        PropertyDefinition(name="street"),
        PropertyDefinition(name="time", type=PropertyType.DATETIME),
        PropertyDefinition(
            name="entries", type=PropertyType.NUMBER, required=True, on_mismatch=OnMismatch.REJECT
        ),
        PropertyDefinition(name="open", type=PropertyType.BOOLEAN),
        PropertyDefinition(name="tags", type=PropertyType.LIST),
        PropertyDefinition(name="hours", type=PropertyType.OBJECT),
    ],
)
OLD_SIGNUP = EventDefinition(
    name="signup", status=EventStatus.DEPRECATED, description="Use client.register."
)
DEBUG = EventDefinition(name="debug.ping", status=EventStatus.HIDDEN)


def populate(catalog: Catalog, app_id: str) -> None:
    for definition in (PAGE_VISIT, ENTRIES_COUNT, OLD_SIGNUP, DEBUG):
        catalog.definitions.put(app_id, definition)
    catalog.definitions.define_first_seen(
        app_id, {"video.play": {"seconds": PropertyType.NUMBER}}, Permission.SERVER
    )
    catalog.definitions.put_alias(app_id, EventAlias(alias="pageview", name="page.visit"))
    catalog.definitions.put_alias(app_id, EventAlias(alias="register", name="client.register"))
    catalog.update_settings(
        app_id,
        countly_salt="pepper",
        name_rule=NameRule.SYNERISE,
        convention=Convention.ENFORCE,
        strict=True,
        allowlist=["page.*", "entries.*"],
        denylist=["debug.*"],
        filter_bots=True,
        internal_ips=["10.0.0.0/8", "2001:db8::1"],
        customer_jwt_key=public_key(),
    )


# round trip


def test_export_apply_export_gives_the_same_text(any_catalog: Catalog) -> None:
    source = any_catalog.create_app("Source").app
    populate(any_catalog, source.id)
    text = dump_yaml(export_catalog(any_catalog, source.id))
    assert "pepper" not in text and "countly_salt" not in text  # secrets stay out
    assert "source: first_seen" in text and "label_template: Visited page {{title}}" in text
    assert "Zażółć gęślą jaźń" in text  # allow_unicode
    assert "customer_jwt_key: |" in text  # the PEM key as a literal block

    target = any_catalog.create_app("Target").app
    changes = apply_catalog(any_catalog, target.id, load_yaml(text))
    assert "+ event entries.count" in changes and "+ alias pageview -> page.visit" in changes
    assert dump_yaml(export_catalog(any_catalog, target.id)) == text
    assert export_catalog(any_catalog, target.id) == load_yaml(text)
    copied = any_catalog.definitions.get(target.id, "video.play")
    assert copied is not None and copied.source is Source.FIRST_SEEN
    target_app = any_catalog.get_app(target.id)
    assert target_app is not None and target_app.settings.countly_salt is None

    # Applying again changes nothing and writes nothing (workers need not reload).
    version = target_app.catalog_version
    assert apply_catalog(any_catalog, target.id, load_yaml(text)) == []
    again = any_catalog.get_app(target.id)
    assert again is not None and again.catalog_version == version


def test_applying_an_apps_own_export_changes_nothing(catalog: Catalog, new_app: NewApp) -> None:
    populate(catalog, new_app.app.id)
    exported = export_catalog(catalog, new_app.app.id)
    assert diff(exported, exported) == []
    assert apply_catalog(catalog, new_app.app.id, load_yaml(dump_yaml(exported))) == []


def test_export_sorts_and_leaves_defaults_out(catalog: Catalog, new_app: NewApp) -> None:
    app_id = new_app.app.id
    catalog.definitions.put(app_id, EventDefinition(name="b.two"))
    catalog.definitions.put(app_id, EventDefinition(name="a.one"))
    catalog.definitions.put_alias(app_id, EventAlias(alias="z", name="a.one"))
    catalog.definitions.put_alias(app_id, EventAlias(alias="y", name="b.two"))
    assert dump_yaml(export_catalog(catalog, app_id)) == (
        "settings: {}\n"
        "events:\n"
        "- name: a.one\n"
        "- name: b.two\n"
        "aliases:\n"
        "- alias: y\n"
        "  name: b.two\n"
        "- alias: z\n"
        "  name: a.one\n"
    )
    empty = catalog.create_app("Empty").app
    assert dump_yaml(export_catalog(catalog, empty.id)) == "settings: {}\nevents: []\naliases: []\n"
    with pytest.raises(KeyError):
        export_catalog(catalog, "0" * 24)


def test_file_settings_are_the_app_settings_without_secrets() -> None:
    assert {"countly_salt", "customer_jwt_secret"} == SECRET_SETTINGS
    app_fields = [f for f in AppSettings.__struct_fields__ if f not in SECRET_SETTINGS]
    assert list(CatalogSettings.__struct_fields__) == app_fields
    assert msgspec.to_builtins(CatalogSettings()) == msgspec.to_builtins(AppSettings()) == {}


# diff


def test_diff_lines() -> None:
    current = CatalogFile(
        settings=CatalogSettings(denylist=[]),
        events=[
            EventDefinition(name="old.thing"),
            EventDefinition(
                name="page.visit",
                description="a",
                properties=[PropertyDefinition(name="url"), PropertyDefinition(name="title")],
            ),
            EventDefinition(
                name="x",
                properties=[
                    PropertyDefinition(name="amount"),
                    PropertyDefinition(name="gone"),
                    PropertyDefinition(name="currency"),
                ],
            ),
        ],
        aliases=[
            EventAlias(alias="old", name="page.visit"),
            EventAlias(alias="stale", name="x"),
        ],
    )
    wanted = CatalogFile(
        settings=CatalogSettings(denylist=["debug.*"], convention=Convention.ENFORCE),
        events=[
            EventDefinition(
                name="x",
                permission=Permission.ANONYMOUS,
                properties=[
                    PropertyDefinition(name="currency"),
                    PropertyDefinition(name="amount", type=PropertyType.NUMBER, required=True),
                    PropertyDefinition(name="new"),
                ],
            ),
            EventDefinition(name="checkout.start"),
            EventDefinition(
                name="page.visit",
                description="b",
                properties=[PropertyDefinition(name="url"), PropertyDefinition(name="title")],
            ),
        ],
        aliases=[
            EventAlias(alias="old", name="checkout.start"),
            EventAlias(alias="new", name="x"),
        ],
    )
    assert diff(current, wanted) == [
        "~ settings.convention: warn -> enforce",
        "~ settings.denylist: [] -> ['debug.*']",
        "+ event checkout.start",
        "- event old.thing",
        "~ event page.visit: description 'a' -> 'b'",
        "~ event x: permission server -> anonymous",
        "~ event x: - property gone",
        "~ event x: property amount type string -> number",
        "~ event x: property amount required False -> True",
        "~ event x: + property new",
        "~ event x: properties reordered: amount, currency -> currency, amount",
        "+ alias new -> x",
        "~ alias old: page.visit -> checkout.start",
        "- alias stale -> x",
    ]
    assert diff(wanted, wanted) == []
    # The order of events and aliases in a file does not matter; the order of properties does.
    shuffled = CatalogFile(
        settings=wanted.settings,
        events=list(reversed(wanted.events)),
        aliases=list(reversed(wanted.aliases)),
    )
    assert diff(wanted, shuffled) == []


def test_diff_shortens_long_values() -> None:
    key = public_key()
    lines = diff(CatalogFile(), CatalogFile(settings=CatalogSettings(customer_jwt_key=key)))
    assert lines == [f"~ settings.customer_jwt_key: None -> {key[:40]!r}..."]


# apply


def test_apply_makes_the_app_equal_to_the_file(catalog: Catalog, new_app: NewApp) -> None:
    app_id = new_app.app.id
    populate(catalog, app_id)
    before = catalog.get_app(app_id)
    assert before is not None
    wanted = load_yaml(
        """
settings:
  denylist: [debug.*]
events:
- name: page.visit
  label_template: Visited page {{title}}
  permission: anonymous
"""
    )
    changes = apply_catalog(catalog, app_id, wanted)
    assert "- event entries.count" in changes and "- event video.play" in changes
    assert "- alias pageview -> page.visit" in changes
    assert "~ settings.strict: True -> False" in changes
    assert [d.name for d in catalog.definitions.list(app_id)] == ["page.visit"]
    assert catalog.definitions.aliases(app_id) == []
    after = catalog.get_app(app_id)
    assert after is not None and after.catalog_version > before.catalog_version
    # Settings the file leaves out go back to their defaults; the secret is kept.
    assert after.settings == AppSettings(countly_salt="pepper", denylist=["debug.*"])
    assert export_catalog(catalog, app_id) == wanted


def test_apply_settings_only_keeps_definitions(catalog: Catalog, new_app: NewApp) -> None:
    app_id = new_app.app.id
    catalog.definitions.put(app_id, PAGE_VISIT)
    version = catalog.get_app(app_id).catalog_version  # type: ignore[union-attr]
    wanted = CatalogFile(settings=CatalogSettings(filter_bots=True), events=[PAGE_VISIT])
    assert apply_catalog(catalog, app_id, wanted) == ["~ settings.filter_bots: False -> True"]
    app = catalog.get_app(app_id)
    assert app is not None and app.settings.filter_bots and app.catalog_version == version


def test_apply_refuses_invalid_files_before_writing(catalog: Catalog, new_app: NewApp) -> None:
    app_id = new_app.app.id
    catalog.definitions.put(app_id, PAGE_VISIT)
    bad = CatalogFile(
        settings=CatalogSettings(internal_ips=["nope"]), events=[EventDefinition(name="x")]
    )
    with pytest.raises(ValueError, match=r"settings\.internal_ips"):
        apply_catalog(catalog, app_id, bad)
    reserved = CatalogFile(events=[EventDefinition(name="transaction.charge")])
    with pytest.raises(ValueError, match="reserved"):
        apply_catalog(catalog, app_id, reserved)
    assert catalog.definitions.list(app_id) == [PAGE_VISIT]
    with pytest.raises(KeyError):
        apply_catalog(catalog, "0" * 24, CatalogFile())


# loading


def test_load_reads_yaml_12_scalars() -> None:
    loaded = load_yaml(
        "settings:\n  convention: off\n  strict: true\n"
        "events:\n- name: launch\n  description: 2024-05-01\n  display_name: yes\n"
    )
    assert loaded.settings == CatalogSettings(convention=Convention.OFF, strict=True)
    assert loaded.events == [
        EventDefinition(name="launch", description="2024-05-01", display_name="yes")
    ]
    assert loaded.aliases == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the file: expected a mapping, got a list"),
        ("events: [\n", "invalid YAML: line 2, column 1"),
        ("events: [{name: a, name: b}]", "invalid YAML: line 1, column 20: the key 'name' appears"),
        ("colour: blue", "the file: unknown key 'colour' (expected one of settings, events,"),
        ("events: {}", "events: expected a list, got a mapping"),
        (
            "events:\n- name: a\n- name: b\n- name: c\n  properties:\n  - {name: p, type: text}\n",
            "events[2].properties[0].type: expected one of string, number, boolean, datetime, "
            "list, object; got 'text'",
        ),
        ("events: [{name: a, kind: b}]", "events[0]: unknown key 'kind' (expected one of name,"),
        ("events: [{description: a}]", "events[0]: missing required key 'name'"),
        ("events: [{name: 404}]", "events[0].name: expected a string, got a number"),
        (
            "events: [{name: a, properties: [{name: p, required: 'yes'}]}]",
            "events[0].properties[0].required: expected true or false, got a string",
        ),
        ("events: [{name: a, status: gone}]", "events[0].status: expected one of active, hidden,"),
        ("events: [{name: ''}]", "events[0].name: must be 1 to 255 characters"),
        ("events: [{name: a}, {name: a}]", "events[1].name: 'a' is already defined (events[0])"),
        (
            "events: [{name: a, properties: [{name: p}, {name: p}]}]",
            "events[0].properties[1].name: 'p' is already a property of 'a'",
        ),
        (
            "events: [{name: transaction.charge}]",
            "events[0].name: transaction.charge is reserved and cannot be defined",
        ),
        ("aliases: [{alias: a}]", "aliases[0]: missing required key 'name'"),
        ("aliases: [{alias: a, name: a}]", "aliases[0]: an event cannot be an alias of itself"),
        (
            "aliases: [{alias: a, name: b}, {alias: a, name: c}]",
            "aliases[1].alias: 'a' is already an alias (aliases[0])",
        ),
        ("aliases: [{alias: x, name: product.buy}]", "aliases[0].name: product.buy is reserved"),
        ("settings: {countly_salt: s}", "settings: countly_salt is a secret"),
        ("settings: {name_rule: loose}", "settings.name_rule: expected one of protocol, synerise"),
        ("settings: {denylist: debug.*}", "settings.denylist: expected a list, got a string"),
        ("settings: {internal_ips: [intranet]}", "settings.internal_ips: 'intranet' is not an"),
        ("settings: {customer_jwt_key: 5}", "settings.customer_jwt_key: expected a string or"),
        ("settings: {customer_jwt_key: abc}", "settings.customer_jwt_key: not a PEM public key"),
        ("{1: a}", "the file: keys must be strings"),
    ],
)
def test_invalid_files_name_the_path(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_yaml(text)
    assert message in str(raised.value)


# the command line


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_export_and_apply(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    source = json.loads(run("apps", "create", "Source", "--data", data, "--json")[1])
    target = json.loads(run("apps", "create", "Target", "--data", data, "--json")[1])
    catalog = Catalog(sqlite_url(Path(data)))
    populate(catalog, source["id"])
    expected = dump_yaml(export_catalog(catalog, source["id"]))

    code, out = run("catalog", "export", "--app", source["app_key"], "-", "--data", data)
    assert code == 0 and out == expected
    file = tmp_path / "catalog.yaml"
    code, out = run("catalog", "export", "--app", source["id"], str(file), "--data", data)
    assert code == 0 and out == f"exported 5 events and 2 aliases of 'Source' to {file}\n"
    assert file.read_text(encoding="utf-8") == expected

    code, out = run(
        "catalog", "apply", "--app", target["id"], str(file), "--data", data, "--dry-run"
    )
    assert code == 0
    assert "+ event entries.count\n" in out and "+ alias pageview -> page.visit\n" in out
    assert out.endswith("dry run: 15 changes to 'Target' not applied\n")
    assert catalog.definitions.list(target["id"]) == []

    code, out = run("catalog", "apply", "--app", target["app_key"], str(file), "--data", data)
    assert code == 0 and out.endswith("applied 15 changes to 'Target'\n")
    assert dump_yaml(export_catalog(catalog, target["id"])) == expected

    code, out = run("catalog", "apply", "--app", target["id"], "-", "--data", data, stdin=expected)
    assert (code, out) == (0, "no changes\n")
    catalog.close()


def test_cli_errors(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    app = json.loads(run("apps", "create", "Shop", "--data", data, "--json")[1])
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n- name: a\n  properties:\n  - {name: p, type: text}\n")
    code, out = run("catalog", "apply", "--app", app["id"], str(bad), "--data", data)
    assert code == 2
    assert "Invalid value for 'FILE': events[0].properties[0].type: expected one of" in out
    missing = str(tmp_path / "no.yaml")
    code, out = run("catalog", "apply", "--app", app["id"], missing, "--data", data)
    assert code == 2 and "No such file" in out
    good = tmp_path / "good.yaml"
    good.write_text("events: [{name: a}]\n")
    code, out = run("catalog", "apply", "--app", "nope", str(good), "--data", data)
    assert code == 1 and "no app with id or app key 'nope'" in out
    code, out = run("catalog", "export", "--app", "nope", "-", "--data", data)
    assert code == 1 and "no app with id or app key 'nope'" in out
    code, out = run("catalog", "export", "-", "--data", data)
    assert code == 2 and "--app" in out


def test_the_documented_example_is_an_exported_file() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    uncommented = "".join(
        line for line in example.splitlines(keepends=True) if not line.lstrip().startswith("#")
    )
    loaded = load_yaml(example)
    assert dump_yaml(loaded) == uncommented
    assert [e.name for e in loaded.events] == ["entries.count", "page.visit", "video.play"]
