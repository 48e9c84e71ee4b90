"""The catalog's rules as the pipeline applies them: name rules and the context.action convention,
reserved names, definitions and permissions, property types, names noted on first sight, allow and
deny lists, traffic filters, aliases, the replay blob and the customer binding.

Examples come from the seed documents where they have one: Synerise's ``entries.count`` with its
shop parameters, Countly's ``item purchase``, EngageLab's ``sign_up``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from tally import ids
from tally.catalog.definitions import (
    EventAlias,
    EventDefinition,
    OnMismatch,
    Permission,
    PropertyDefinition,
    PropertyType,
)
from tally.catalog.models import App, AppSettings, Convention, NameRule
from tally.model import Access, Discard, Drop, DropReason, Event
from tally.pipeline import (
    DEFAULT_STEPS,
    Pipeline,
    PipelineResult,
    Rejection,
    RequestContext,
    filters,
    names,
)
from tally.pipeline import definitions as definition_steps
from tally.pipeline.app_rules import AppRules
from tally.pipeline.replay import restore

PIPELINE = Pipeline(DEFAULT_STEPS)

ENTRIES_COUNT_PARAMS: dict[str, Any] = {
    "lat": "50.0937",
    "lon": "18.5429",
    "object": "Shopping center",
    "shopId": "S198",
    "shopName": "Chicago",
    "zipCode": "60639",
    "street": "W North Ave",
    "time": 1556474400000,
    "entries": 27,
}
"""The parameters of the Synerise seed's custom-event example (``entries.count``)."""
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def app() -> App:
    """An app as the catalog creates it, without the catalog: these rules read only the record
    (and creating a real one hashes an API secret, which costs a third of a second per test)."""
    return App(
        id=ids.new_app_id(),
        name="Test app",
        app_key=ids.new_app_key(),
        api_key=ids.new_api_key(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def context(
    ctx: RequestContext,
    *,
    settings: AppSettings | None = None,
    definitions: list[EventDefinition] | tuple[EventDefinition, ...] = (),
    aliases: list[EventAlias] | tuple[EventAlias, ...] = (),
    rules: AppRules | None = None,
    **fields: Any,
) -> RequestContext:
    """A request context for the fixture's app with these settings, definitions and aliases."""
    app = msgspec.structs.replace(ctx.app, settings=settings or AppSettings())
    fields.setdefault("protocol", ctx.protocol)
    fields.setdefault("ip", ctx.ip)
    fields.setdefault("user_agent", ctx.user_agent)
    return RequestContext(
        app=app,
        rules=rules if rules is not None else AppRules(app, definitions, aliases),
        received_at=ctx.received_at,
        limits=ctx.limits,
        **fields,
    )


def browser(ctx: RequestContext, **kwargs: Any) -> RequestContext:
    """The enforcing path of seed 003: the JS SDK with a public key (anonymous profile)."""
    kwargs.setdefault("protocol", "synerise")
    return context(ctx, access=Access.ANONYMOUS, enforce_definitions=True, **kwargs)


def event(name: Any = "entries.count", **fields: Any) -> Event:
    """An event of one device (Segment, Synerise and EngageLab require an identity)."""
    fields.setdefault("index", 0)
    fields.setdefault("device_id", "device-1")
    fields.setdefault("protocol", "native")
    fields.setdefault("payload", msgspec.json.encode({"name": name}))
    return Event(name=name, **fields)


def run(ctx: RequestContext, *events: Event) -> PipelineResult:
    return PIPELINE.run(list(events), ctx)


def accepted(ctx: RequestContext, item: Event) -> Event:
    result = run(ctx, item)
    assert result.rejected == [] and result.failed == [], result.rejected
    assert not result.discard_counts
    assert len(result.accepted) == 1
    return result.accepted[0]


def rejected(ctx: RequestContext, item: Event, code: DropReason) -> Rejection:
    result = run(ctx, item)
    assert result.accepted == []
    assert len(result.rejected) == 1 and len(result.failed) == 1
    rejection = result.rejected[0]
    assert rejection.code == code.value, rejection
    assert result.failed[0].reason is code
    assert result.drop_counts == {code: 1}
    return rejection


def discarded(ctx: RequestContext, item: Event) -> str:
    """The rule that discarded the event; a discard is neither a failure nor a rejection."""
    result = run(ctx, item)
    assert result.accepted == [] and result.failed == [] and result.rejected == []
    assert not result.drop_counts
    assert sum(result.discard_counts.values()) == 1
    (rule,) = result.discard_counts
    return rule


def convention_warnings(protocol: str) -> float:
    value = REGISTRY.get_sample_value(
        "tally_name_convention_warnings_total", {"protocol": protocol}
    )
    return value or 0.0


def properties_coerced(protocol: str) -> float:
    value = REGISTRY.get_sample_value("tally_properties_coerced_total", {"protocol": protocol})
    return value or 0.0


def defined(name: str = "entries.count", **fields: Any) -> EventDefinition:
    fields.setdefault("permission", Permission.ANONYMOUS)
    return EventDefinition(name=name, **fields)


def typed(name: str, kind: PropertyType, **fields: Any) -> EventDefinition:
    """``entries.count`` with one property of type ``kind``."""
    return defined(properties=[PropertyDefinition(name=name, type=kind, **fields)])


# Name rules ---------------------------------------------------------------------------------------


def test_synerise_action_is_at_most_32_characters(ctx: RequestContext) -> None:
    synerise = context(ctx, protocol="synerise")
    exactly = "entries." + "x" * 24
    assert len(exactly) == 32
    assert accepted(synerise, event(exactly)).name == exactly
    too_long = exactly + "x"
    rejection = rejected(synerise, event(too_long), DropReason.INVALID_NAME)
    assert "33 characters" in rejection.message and "at most 32" in rejection.message
    assert rejection.value == too_long


@pytest.mark.parametrize(
    "name", ["item purchase", "entries/count", "entries:count", "zakup.produktów", "page.visit\n"]
)
def test_synerise_action_must_match_its_pattern(ctx: RequestContext, name: str) -> None:
    rejection = rejected(context(ctx, protocol="synerise"), event(name), DropReason.INVALID_NAME)
    assert "letters, digits" in rejection.message
    assert rejection.value == name


def test_synerise_pattern_allows_dots_dashes_and_underscores(ctx: RequestContext) -> None:
    synerise = context(ctx, protocol="synerise")
    for name in ("product.add-to_cart", "Screen.View2", "a.b.c"):
        assert accepted(synerise, event(name)).name == name


def test_countly_item_purchase_is_accepted_where_synerise_rejects_it(ctx: RequestContext) -> None:
    # Countly's seed example: the key "item purchase" has a space.
    stored = accepted(context(ctx, protocol="countly"), event("item purchase"))
    assert stored.name == "item purchase"
    rejected(context(ctx, protocol="synerise"), event("item purchase"), DropReason.INVALID_NAME)


def test_countly_key_is_under_128_characters(ctx: RequestContext) -> None:
    countly = context(ctx, protocol="countly")
    assert accepted(countly, event("k" * 127)).name == "k" * 127
    rejection = rejected(countly, event("k" * 128), DropReason.INVALID_NAME)
    assert "at most 127" in rejection.message


@pytest.mark.parametrize("name", ["sign_up", "login", "a", "level_2_done"])
def test_engagelab_accepts_lowercase_names_starting_with_a_letter(
    ctx: RequestContext, name: str
) -> None:
    assert accepted(context(ctx, protocol="engagelab"), event(name)).name == name


@pytest.mark.parametrize(
    "name", ["Sign_up", "SIGNUP", "1st_login", "_login", "sign-up", "sign up", "page.visit"]
)
def test_engagelab_rejects_other_names(ctx: RequestContext, name: str) -> None:
    rejection = rejected(context(ctx, protocol="engagelab"), event(name), DropReason.INVALID_NAME)
    assert "lowercase letters, digits and underscores" in rejection.message


def test_engagelab_names_are_at_most_255_characters(ctx: RequestContext) -> None:
    engagelab = context(ctx, protocol="engagelab")
    assert accepted(engagelab, event("e" * 255)).name == "e" * 255
    rejected(engagelab, event("e" * 256), DropReason.INVALID_NAME)


@pytest.mark.parametrize("protocol", ["segment", "native"])
def test_segment_and_native_allow_any_name_up_to_255(ctx: RequestContext, protocol: str) -> None:
    any_rule = context(ctx, protocol=protocol)
    for name in ("Checkout Started", "item purchase", "zakup produktów", "n" * 255):
        assert accepted(any_rule, event(name)).name == name
    rejection = rejected(any_rule, event("n" * 256), DropReason.INVALID_NAME)
    assert "at most 255" in rejection.message


@pytest.mark.parametrize("protocol", ["synerise", "countly", "engagelab", "segment", "native"])
def test_an_app_chosen_rule_applies_to_every_protocol(ctx: RequestContext, protocol: str) -> None:
    engagelab_everywhere = context(
        ctx, protocol=protocol, settings=AppSettings(name_rule=NameRule.ENGAGELAB)
    )
    assert accepted(engagelab_everywhere, event("item_purchase")).name == "item_purchase"
    rejected(engagelab_everywhere, event("Item_Purchase"), DropReason.INVALID_NAME)

    synerise_everywhere = context(
        ctx, protocol=protocol, settings=AppSettings(name_rule=NameRule.SYNERISE)
    )
    rejected(synerise_everywhere, event("item purchase"), DropReason.INVALID_NAME)
    rejected(synerise_everywhere, event("entries." + "x" * 25), DropReason.INVALID_NAME)

    countly_everywhere = context(
        ctx, protocol=protocol, settings=AppSettings(name_rule=NameRule.COUNTLY)
    )
    assert accepted(countly_everywhere, event("item purchase")).name == "item purchase"
    rejected(countly_everywhere, event("k" * 128), DropReason.INVALID_NAME)


def test_the_any_rule_lifts_synerise_limits_and_its_convention(ctx: RequestContext) -> None:
    lifted = context(
        ctx,
        protocol="synerise",
        settings=AppSettings(name_rule=NameRule.ANY, convention=Convention.ENFORCE),
    )
    for name in ("item purchase", "checkout", "x" * 200):
        assert accepted(lifted, event(name)).name == name


def test_sdk_internal_events_follow_the_sdk_naming(ctx: RequestContext) -> None:
    strict_names = context(
        ctx, protocol="countly", settings=AppSettings(name_rule=NameRule.ENGAGELAB)
    )
    assert accepted(strict_names, event("[CLY]_view", internal=True)).name == "[CLY]_view"
    rejected(strict_names, event("[CLY]_view"), DropReason.INVALID_NAME)


def test_check_name_step_on_its_own(ctx: RequestContext) -> None:
    synerise = context(ctx, protocol="synerise")
    assert names.check_name(event("page.visit"), synerise).name == "page.visit"  # type: ignore[union-attr]
    drop = names.check_name(event("item purchase"), synerise)
    assert not isinstance(drop, Event) and drop.reason is DropReason.INVALID_NAME


# The context.action convention --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["entries.count", "page.visit", "screen.view", "a.b.c"])
def test_convention_names_pass_even_when_enforced(ctx: RequestContext, name: str) -> None:
    enforced = context(
        ctx, protocol="synerise", settings=AppSettings(convention=Convention.ENFORCE)
    )
    before = convention_warnings("synerise")
    assert accepted(enforced, event(name)).name == name
    assert accepted(context(ctx, protocol="synerise"), event(name)).name == name
    assert convention_warnings("synerise") == before


def test_a_run_adds_its_warnings_and_coercions_to_the_metrics_once_counted_per_event(
    ctx: RequestContext,
) -> None:
    synerise = context(
        ctx, protocol="synerise", definitions=[typed("entries", PropertyType.NUMBER)]
    )
    warned, coerced = convention_warnings("synerise"), properties_coerced("synerise")
    result = run(
        synerise,
        event(properties={"entries": "1"}),  # entries.count: coerced
        event(properties={"entries": "2"}),
        event("checkout"),  # breaks the convention
        event("checkout"),
    )
    assert len(result.accepted) == 4
    assert convention_warnings("synerise") == warned + 2
    assert properties_coerced("synerise") == coerced + 2
    assert synerise.counted == {}  # reported, not kept for a second run


def test_convention_warns_by_default_on_synerise(ctx: RequestContext) -> None:
    synerise = context(ctx, protocol="synerise")
    assert synerise.rules.settings.convention is Convention.WARN
    before = convention_warnings("synerise")
    assert accepted(synerise, event("checkout")).name == "checkout"
    assert convention_warnings("synerise") == before + 1


@pytest.mark.parametrize("name", ["checkout", ".visit", "page.", "page..visit"])
def test_convention_enforced_rejects(ctx: RequestContext, name: str) -> None:
    enforced = context(
        ctx, protocol="synerise", settings=AppSettings(convention=Convention.ENFORCE)
    )
    rejection = rejected(enforced, event(name), DropReason.INVALID_NAME)
    assert "context.action" in rejection.message
    assert rejection.value == name


def test_convention_off_neither_warns_nor_rejects(ctx: RequestContext) -> None:
    off = context(ctx, protocol="synerise", settings=AppSettings(convention=Convention.OFF))
    before = convention_warnings("synerise")
    assert accepted(off, event("checkout")).name == "checkout"
    assert convention_warnings("synerise") == before


@pytest.mark.parametrize("protocol", ["countly", "engagelab", "segment", "native"])
def test_convention_is_not_checked_outside_the_synerise_rule(
    ctx: RequestContext, protocol: str
) -> None:
    enforced = context(ctx, protocol=protocol, settings=AppSettings(convention=Convention.ENFORCE))
    before = convention_warnings(protocol)
    assert accepted(enforced, event("checkout")).name == "checkout"
    assert accepted(context(ctx, protocol=protocol), event("checkout")).name == "checkout"
    assert convention_warnings(protocol) == before


def test_convention_follows_an_app_chosen_synerise_rule(ctx: RequestContext) -> None:
    countly = context(
        ctx,
        protocol="countly",
        settings=AppSettings(name_rule=NameRule.SYNERISE, convention=Convention.ENFORCE),
    )
    rejected(countly, event("checkout"), DropReason.INVALID_NAME)
    assert accepted(countly, event("checkout.start")).name == "checkout.start"


# Reserved names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["transaction.charge", "product.buy"])
@pytest.mark.parametrize("protocol", ["synerise", "native", "countly"])
def test_reserved_events_are_refused_as_custom_events(
    ctx: RequestContext, name: str, protocol: str
) -> None:
    rejection = rejected(context(ctx, protocol=protocol), event(name), DropReason.RESERVED_EVENT)
    assert "/v4/transactions" in rejection.message
    assert name in rejection.message
    assert rejection.value == name


@pytest.mark.parametrize("name", ["transaction.charge", "product.buy"])
def test_reserved_events_pass_where_the_endpoint_may_produce_them(
    ctx: RequestContext, name: str
) -> None:
    transactions = context(ctx, protocol="synerise", allow_reserved=True)
    item = event(name, properties={"orderId": "o-1", "value": {"amount": 10, "currency": "PLN"}})
    assert accepted(transactions, item).name == name


def test_an_alias_cannot_smuggle_a_reserved_name(ctx: RequestContext) -> None:
    aliased = context(ctx, aliases=[EventAlias(alias="charge", name="transaction.charge")])
    rejection = rejected(aliased, event("charge"), DropReason.RESERVED_EVENT)
    assert rejection.value == "transaction.charge"


@pytest.mark.parametrize("name", ["transaction.charge", "product.buy"])
def test_a_strict_app_still_accepts_transactions(ctx: RequestContext, name: str) -> None:
    transactions = context(
        ctx, protocol="synerise", allow_reserved=True, settings=AppSettings(strict=True)
    )
    assert accepted(transactions, event(name, properties={"orderId": "o-1"})).name == name


# Definitions on an enforcing path -----------------------------------------------------------------


def test_undefined_events_are_rejected_where_definitions_are_enforced(ctx: RequestContext) -> None:
    rejection = rejected(
        browser(ctx),
        event("entries.count", properties=dict(ENTRIES_COUNT_PARAMS)),
        DropReason.UNDEFINED_EVENT,
    )
    assert rejection.value == "entries.count"
    assert "not defined" in rejection.message


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("session.start", "Started session"),
        ("session.end", "Session end"),
        ("form.submit", None),
        ("button.click", None),
    ],
)
def test_built_in_events_are_available_to_anonymous_profiles(
    ctx: RequestContext, name: str, label: str | None
) -> None:
    stored = accepted(browser(ctx), event(name))
    assert stored.name == name and stored.label == label


def test_page_visit_label_is_rendered_from_its_properties(ctx: RequestContext) -> None:
    stored = accepted(
        browser(ctx),
        event("page.visit", properties={"url": "https://shop.test/pricing", "title": "Pricing"}),
    )
    assert stored.label == "Visited page Pricing"
    assert stored.undefined_properties == []
    missing_title = accepted(browser(ctx), event("page.visit", properties={"url": "/"}))
    assert missing_title.label == "Visited page "
    own_label = accepted(browser(ctx), event("page.visit", label="Home", properties={"title": "x"}))
    assert own_label.label == "Home"


def test_labels_render_from_coerced_values(ctx: RequestContext) -> None:
    definition = defined(
        label_template="Counted {{ entries }} entries at {{shopName}}",
        properties=[PropertyDefinition(name="entries", type=PropertyType.NUMBER)],
    )
    stored = accepted(
        context(ctx, definitions=[definition]),
        event(properties={"entries": "27", "shopName": "Chicago"}),
    )
    assert stored.label == "Counted 27 entries at Chicago"


def test_an_app_definition_replaces_the_built_in_one(ctx: RequestContext) -> None:
    own = EventDefinition(name="page.visit", permission=Permission.SERVER)
    rejected(browser(ctx, definitions=[own]), event("page.visit"), DropReason.FORBIDDEN_EVENT)


@pytest.mark.parametrize(
    ("permission", "access", "allowed"),
    [
        (Permission.ANONYMOUS, Access.ANONYMOUS, True),
        (Permission.ANONYMOUS, Access.CUSTOMER, True),
        (Permission.ANONYMOUS, Access.SERVER, True),
        (Permission.CUSTOMER, Access.ANONYMOUS, False),
        (Permission.CUSTOMER, Access.CUSTOMER, True),
        (Permission.CUSTOMER, Access.SERVER, True),
        (Permission.SERVER, Access.ANONYMOUS, False),
        (Permission.SERVER, Access.CUSTOMER, False),
        (Permission.SERVER, Access.SERVER, True),
    ],
)
def test_permissions_by_access(
    ctx: RequestContext, permission: Permission, access: Access, allowed: bool
) -> None:
    enforcing = context(
        ctx,
        protocol="synerise",
        access=access,
        enforce_definitions=True,
        definitions=[defined(permission=permission)],
    )
    if allowed:
        assert accepted(enforcing, event()).name == "entries.count"
        return
    rejection = rejected(enforcing, event(), DropReason.FORBIDDEN_EVENT)
    assert rejection.value == "entries.count"
    needs = "customer JWT" if permission is Permission.CUSTOMER else "server credentials"
    assert needs in rejection.message


def test_the_default_permission_is_server_only(ctx: RequestContext) -> None:
    plain = EventDefinition(name="entries.count")
    rejected(browser(ctx, definitions=[plain]), event(), DropReason.FORBIDDEN_EVENT)


def test_undefined_parameters_are_stored_but_marked(ctx: RequestContext) -> None:
    definition = typed("entries", PropertyType.NUMBER)
    stored = accepted(
        browser(ctx, definitions=[definition]), event(properties=dict(ENTRIES_COUNT_PARAMS))
    )
    assert stored.properties == ENTRIES_COUNT_PARAMS
    assert stored.undefined_properties == [k for k in ENTRIES_COUNT_PARAMS if k != "entries"]
    assert stored.coerced_properties == []


def test_a_strict_app_enforces_definitions_on_every_path(ctx: RequestContext) -> None:
    strict = context(ctx, settings=AppSettings(strict=True), access=Access.SERVER)
    assert not strict.enforce_definitions and strict.requires_definitions
    rejected(strict, event(properties={"entries": 27}), DropReason.UNDEFINED_EVENT)
    strict = context(
        ctx,
        settings=AppSettings(strict=True),
        definitions=[typed("entries", PropertyType.NUMBER)],
        access=Access.SERVER,
    )
    stored = accepted(strict, event(properties={"entries": 27, "shopId": "S198"}))
    assert stored.undefined_properties == ["shopId"]
    assert strict.first_seen == {}


def test_a_strict_app_checks_permissions_on_every_path(ctx: RequestContext) -> None:
    strict = context(
        ctx,
        protocol="countly",
        settings=AppSettings(strict=True),
        access=Access.ANONYMOUS,
        definitions=[defined(permission=Permission.SERVER)],
    )
    rejected(strict, event(), DropReason.FORBIDDEN_EVENT)


def test_a_non_enforcing_path_takes_new_events_and_does_not_mark_properties(
    ctx: RequestContext,
) -> None:
    countly = context(
        ctx,
        protocol="countly",
        access=Access.ANONYMOUS,
        definitions=[typed("entries", PropertyType.NUMBER)],
    )
    assert not countly.requires_definitions
    assert accepted(countly, event("item purchase")).name == "item purchase"
    stored = accepted(countly, event(properties={"entries": 27, "shopId": "S198"}))
    assert stored.undefined_properties == []


def test_sdk_internal_events_are_outside_the_catalog(ctx: RequestContext) -> None:
    enforcing = browser(ctx, protocol="countly")
    stored = accepted(enforcing, event("[CLY]_session", internal=True, properties={"x": 1}))
    assert stored.undefined_properties == []
    assert enforcing.first_seen == {}
    native = context(ctx)
    accepted(native, event("[CLY]_session", internal=True, properties={"x": 1}))
    assert native.first_seen == {}


# Names noted on first sight -----------------------------------------------------------------------


def test_a_new_event_is_noted_with_the_first_type_of_each_parameter(ctx: RequestContext) -> None:
    countly = context(ctx, protocol="countly")
    first = event(
        "item purchase",
        properties={
            "item_name": "rolex",
            "price": 9.5,
            "quantity": 2,
            "gift": False,
            "tags": ["watch", "gold"],
            "shipping": {"city": "Chicago"},
            "coupon": None,
        },
    )
    later = event("item purchase", index=1, properties={"item_name": 7, "coupon": "SPRING"})
    result = run(countly, first, later)
    assert len(result.accepted) == 2
    assert countly.first_seen == {
        "item purchase": {
            "item_name": PropertyType.STRING,
            "price": PropertyType.NUMBER,
            "quantity": PropertyType.NUMBER,
            "gift": PropertyType.BOOLEAN,
            "tags": PropertyType.LIST,
            "shipping": PropertyType.OBJECT,
            "coupon": PropertyType.STRING,
        }
    }


def test_the_seed_custom_event_is_noted_with_its_parameters(ctx: RequestContext) -> None:
    synerise = context(ctx, protocol="synerise")
    accepted(synerise, event(properties=dict(ENTRIES_COUNT_PARAMS)))
    expected = {k: PropertyType.STRING for k in ENTRIES_COUNT_PARAMS}
    expected["time"] = expected["entries"] = PropertyType.NUMBER
    assert synerise.first_seen == {"entries.count": expected}


def test_a_new_event_without_usable_parameters_is_still_noted(ctx: RequestContext) -> None:
    native = context(ctx)
    run(native, event("signup"), event("login", index=1, properties={"referrer": None}))
    assert native.first_seen == {"signup": {}, "login": {}}


def test_known_parameters_are_not_noted_again(ctx: RequestContext) -> None:
    native = context(ctx, definitions=[typed("entries", PropertyType.NUMBER)])
    accepted(native, event(properties={"entries": 27}))
    assert native.first_seen == {}
    accepted(native, event(properties={"entries": 28, "shopId": "S198"}))
    assert native.first_seen == {"entries.count": {"shopId": PropertyType.STRING}}
    built_in = context(ctx)
    accepted(built_in, event("page.visit", properties={"url": "/", "title": "Home"}))
    assert built_in.first_seen == {}
    accepted(built_in, event("page.visit", properties={"url": "/", "campaign": "spring"}))
    assert built_in.first_seen == {"page.visit": {"campaign": PropertyType.STRING}}


def test_names_reported_to_the_catalog_are_not_noted_again(ctx: RequestContext) -> None:
    rules = AppRules(ctx.app)
    first = context(ctx, rules=rules)
    accepted(first, event(properties={"entries": 27, "shopId": "S198"}))
    assert first.first_seen == {
        "entries.count": {"entries": PropertyType.NUMBER, "shopId": PropertyType.STRING}
    }
    for name, properties in first.first_seen.items():
        rules.report(name, list(properties))
    assert rules.reported("entries.count") and rules.reported("entries.count", "shopId")

    again = context(ctx, rules=rules)
    accepted(again, event(properties={"entries": 28, "shopId": "S199"}))
    assert again.first_seen == {}
    accepted(again, event(properties={"entries": 1, "street": "W North Ave"}))
    assert again.first_seen == {"entries.count": {"street": PropertyType.STRING}}


def test_only_stored_events_are_noted(ctx: RequestContext) -> None:
    native = context(ctx, settings=AppSettings(denylist=["debug.*"]))
    result = run(
        native,
        event("debug.click", properties={"x": 1}),
        event("signup", index=1, count=0, properties={"plan": "pro"}),
        event("transaction.charge", index=2, properties={"orderId": "o-1"}),
    )
    assert result.accepted == []
    assert native.first_seen == {}


def test_nothing_is_noted_where_definitions_are_required(ctx: RequestContext) -> None:
    enforcing = browser(ctx)
    accepted(enforcing, event("page.visit", properties={"campaign": "spring"}))
    assert enforcing.first_seen == {}


def test_note_first_seen_step_on_its_own(ctx: RequestContext) -> None:
    native = context(ctx)
    item = event(properties={"entries": 27})
    assert definition_steps.note_first_seen(item, native) is item
    assert native.first_seen == {"entries.count": {"entries": PropertyType.NUMBER}}


# Property types -----------------------------------------------------------------------------------


def test_seed_parameters_are_coerced_to_their_defined_types(ctx: RequestContext) -> None:
    definition = defined(
        properties=[
            PropertyDefinition(name="lat", type=PropertyType.NUMBER),
            PropertyDefinition(name="lon", type=PropertyType.NUMBER),
            PropertyDefinition(name="entries", type=PropertyType.NUMBER),
            PropertyDefinition(name="time", type=PropertyType.DATETIME),
            PropertyDefinition(name="shopId", type=PropertyType.STRING),
        ]
    )
    stored = accepted(
        browser(ctx, definitions=[definition]), event(properties=dict(ENTRIES_COUNT_PARAMS))
    )
    assert stored.properties["lat"] == 50.0937
    assert stored.properties["lon"] == 18.5429
    assert stored.properties["entries"] == 27
    assert stored.properties["time"] == "2019-04-28T18:00:00Z"
    assert stored.properties["shopId"] == "S198"
    assert stored.coerced_properties == ["lat", "lon", "time"]


def test_a_number_sent_as_text_is_coerced(ctx: RequestContext) -> None:
    native = context(ctx, definitions=[typed("entries", PropertyType.NUMBER)])
    stored = accepted(native, event(properties={"entries": "27"}))
    assert stored.properties == {"entries": 27}
    assert type(stored.properties["entries"]) is int
    assert stored.coerced_properties == ["entries"]
    assert accepted(native, event(properties={"entries": " 2.5 "})).properties["entries"] == 2.5
    kept = accepted(native, event(properties={"entries": 27}))
    assert kept.coerced_properties == []


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (PropertyType.NUMBER, "abc"),
        (PropertyType.NUMBER, "nan"),
        (PropertyType.NUMBER, "inf"),
        (PropertyType.NUMBER, True),
        (PropertyType.NUMBER, [27]),
        (PropertyType.BOOLEAN, "maybe"),
        (PropertyType.BOOLEAN, 2),
        (PropertyType.DATETIME, "yesterday"),
        (PropertyType.DATETIME, True),
        (PropertyType.DATETIME, 5),
        (PropertyType.LIST, {"a": 1}),
        (PropertyType.STRING, {"a": 1}),
        (PropertyType.STRING, ["a"]),
        (PropertyType.OBJECT, "a"),
    ],
)
def test_values_that_cannot_be_coerced_are_rejected(
    ctx: RequestContext, kind: PropertyType, value: Any
) -> None:
    native = context(ctx, definitions=[typed("entries", kind)])
    rejection = rejected(native, event(properties={"entries": value}), DropReason.INVALID_PROPERTY)
    assert rejection.value == value
    assert "'entries'" in rejection.message and str(kind) in rejection.message


def test_on_mismatch_reject_refuses_to_coerce(ctx: RequestContext) -> None:
    native = context(
        ctx, definitions=[typed("entries", PropertyType.NUMBER, on_mismatch=OnMismatch.REJECT)]
    )
    rejection = rejected(native, event(properties={"entries": "27"}), DropReason.INVALID_PROPERTY)
    assert rejection.value == "27"
    assert "must be a number" in rejection.message
    assert accepted(native, event(properties={"entries": 27})).properties == {"entries": 27}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        ("false", False),
        ("0", False),
        ("no", False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_are_coerced(ctx: RequestContext, value: Any, expected: bool) -> None:
    native = context(ctx, definitions=[typed("vip", PropertyType.BOOLEAN)])
    stored = accepted(native, event(properties={"vip": value}))
    assert stored.properties["vip"] is expected
    assert stored.coerced_properties == ["vip"]


@pytest.mark.parametrize(
    "value", [1556474400000, 1556474400, "1556474400000", "1556474400", 1556474400.0]
)
def test_datetimes_are_coerced_from_epoch_seconds_and_ms(ctx: RequestContext, value: Any) -> None:
    native = context(ctx, definitions=[typed("time", PropertyType.DATETIME)])
    stored = accepted(native, event(properties={"time": value}))
    assert stored.properties["time"] == "2019-04-28T18:00:00Z"
    assert stored.coerced_properties == ["time"]


def test_iso_datetimes_conform(ctx: RequestContext) -> None:
    native = context(ctx, definitions=[typed("time", PropertyType.DATETIME)])
    stored = accepted(native, event(properties={"time": "2019-04-28T18:00:00Z"}))
    assert stored.properties["time"] == "2019-04-28T18:00:00Z"
    assert stored.coerced_properties == []


def test_decimal_epoch_strings_are_coerced_like_whole_ones(ctx: RequestContext) -> None:
    native = context(ctx, definitions=[typed("time", PropertyType.DATETIME)])
    stored = accepted(native, event(properties={"time": "1556474400.5"}))
    assert stored.properties["time"] == "2019-04-28T18:00:00.500000Z"
    assert stored.coerced_properties == ["time"]


@pytest.mark.parametrize("value", ["2019-04-28T20:00:00+02:00", "2019-04-28T18:00:00"])
def test_iso_datetimes_are_stored_in_utc(ctx: RequestContext, value: str) -> None:
    native = context(ctx, definitions=[typed("time", PropertyType.DATETIME)])
    stored = accepted(native, event(properties={"time": value}))
    assert stored.properties["time"] == "2019-04-28T18:00:00Z"


@pytest.mark.parametrize(
    ("value", "expected", "coerced"),
    [("gold", ["gold"], True), (3, [3], True), (True, [True], True), (["a", 1], ["a", 1], False)],
)
def test_a_list_wraps_a_scalar(
    ctx: RequestContext, value: Any, expected: list[Any], coerced: bool
) -> None:
    native = context(ctx, definitions=[typed("tags", PropertyType.LIST)])
    stored = accepted(native, event(properties={"tags": value}))
    assert stored.properties["tags"] == expected
    assert stored.coerced_properties == (["tags"] if coerced else [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(27, "27"), (27.0, "27"), (2.5, "2.5"), (True, "true"), (False, "false")],
)
def test_strings_are_coerced_from_numbers_and_booleans(
    ctx: RequestContext, value: Any, expected: str
) -> None:
    native = context(ctx, definitions=[typed("zipCode", PropertyType.STRING)])
    stored = accepted(native, event(properties={"zipCode": value}))
    assert stored.properties["zipCode"] == expected
    assert stored.coerced_properties == ["zipCode"]


@pytest.mark.parametrize("kind", list(PropertyType))
def test_null_values_pass_every_type(ctx: RequestContext, kind: PropertyType) -> None:
    native = context(ctx, definitions=[typed("p", kind, on_mismatch=OnMismatch.REJECT)])
    stored = accepted(native, event(properties={"p": None}))
    assert stored.properties == {"p": None} and stored.coerced_properties == []


@pytest.mark.parametrize("text", ["9007199254740993", "12345678901234567890"])
def test_large_integers_are_coerced_without_loss(ctx: RequestContext, text: str) -> None:
    native = context(ctx, definitions=[typed("orderNo", PropertyType.NUMBER)])
    result = run(native, event(properties={"orderNo": text}))
    if result.accepted:  # converted: exactly; or else rejected, as the option promises
        assert result.accepted[0].properties["orderNo"] == int(text)
    else:
        assert [r.code for r in result.rejected] == ["invalid_property"]


def test_required_properties(ctx: RequestContext) -> None:
    definition = typed("shopId", PropertyType.STRING, required=True)
    for enforcing in (
        browser(ctx, definitions=[definition]),
        context(ctx, definitions=[definition]),
    ):
        rejection = rejected(
            enforcing, event(properties={"entries": 27}), DropReason.MISSING_PROPERTY
        )
        assert rejection.value == "shopId"
        assert "'shopId' is required" in rejection.message
        rejected(enforcing, event(properties={"shopId": None}), DropReason.MISSING_PROPERTY)
        assert accepted(enforcing, event(properties={"shopId": "S198"})).properties == {
            "shopId": "S198"
        }


def test_a_required_property_is_checked_before_types(ctx: RequestContext) -> None:
    definition = defined(
        properties=[
            PropertyDefinition(name="entries", type=PropertyType.NUMBER),
            PropertyDefinition(name="shopId", required=True),
        ]
    )
    rejected(
        context(ctx, definitions=[definition]),
        event(properties={"entries": "abc"}),
        DropReason.MISSING_PROPERTY,
    )


# Allow and deny lists -----------------------------------------------------------------------------


def test_a_denylisted_event_is_discarded_and_counted(ctx: RequestContext) -> None:
    native = context(ctx, settings=AppSettings(denylist=["debug.*", "test.*"]))
    result = run(
        native,
        event("debug.click"),
        event("page.visit", index=1),
        event("debug.scroll", index=2),
        event("test.ping", index=3),
    )
    assert [e.name for e in result.accepted] == ["page.visit"]
    assert result.failed == [] and result.rejected == [] and not result.drop_counts
    assert result.discard_counts == {"denylist:debug.*": 2, "denylist:test.*": 1}


def test_denylist_globs_match_the_whole_name(ctx: RequestContext) -> None:
    native = context(ctx, settings=AppSettings(denylist=["debug.*"]))
    for name in ("debugging.click", "app.debug.click", "Debug.click"):
        assert accepted(native, event(name)).name == name
    assert discarded(native, event("debug.")) == "denylist:debug.*"


def test_denylist_applies_to_internal_events_and_wins_over_the_allowlist(
    ctx: RequestContext,
) -> None:
    both = context(ctx, settings=AppSettings(allowlist=["debug.*"], denylist=["debug.*"]))
    assert discarded(both, event("debug.click")) == "denylist:debug.*"
    deny = context(ctx, settings=AppSettings(denylist=["[[]CLY]_*"]))
    assert discarded(deny, event("[CLY]_view", internal=True)) == "denylist:[[]CLY]_*"


def test_the_allowlist_admits_only_matching_events(ctx: RequestContext) -> None:
    allow = context(ctx, settings=AppSettings(allowlist=["checkout.*", "page.visit"]))
    assert accepted(allow, event("checkout.start")).name == "checkout.start"
    assert accepted(allow, event("page.visit")).name == "page.visit"
    for name in ("entries.count", "checkout", "xcheckout.start", "page.visits"):
        assert discarded(allow, event(name)) == filters.NOT_ALLOWED == "allowlist"


def test_internal_events_pass_the_allowlist(ctx: RequestContext) -> None:
    allow = context(ctx, protocol="countly", settings=AppSettings(allowlist=["checkout.*"]))
    assert accepted(allow, event("[CLY]_session", internal=True)).name == "[CLY]_session"
    assert discarded(allow, event("[CLY]_session")) == "allowlist"


def test_lists_are_checked_before_definitions(ctx: RequestContext) -> None:
    enforcing = browser(ctx, settings=AppSettings(denylist=["debug.*"]))
    assert discarded(enforcing, event("debug.click")) == "denylist:debug.*"


def test_filter_lists_step_on_its_own(ctx: RequestContext) -> None:
    native = context(ctx, settings=AppSettings(denylist=["debug.*"]))
    assert filters.filter_lists(event("debug.click"), native) == Discard("denylist:debug.*")
    item = event("page.visit")
    assert filters.filter_lists(item, native) is item


# Bots and internal traffic ------------------------------------------------------------------------


def test_bots_are_discarded_when_the_app_asks(ctx: RequestContext) -> None:
    filtering = context(ctx, settings=AppSettings(filter_bots=True), user_agent=GOOGLEBOT)
    assert discarded(filtering, event("page.visit")) == filters.BOT == "bot"
    by_event = context(ctx, settings=AppSettings(filter_bots=True))
    assert discarded(by_event, event("page.visit", user_agent=GOOGLEBOT)) == "bot"
    assert accepted(by_event, event("page.visit")).device_type == "desktop"
    keeping = context(ctx, user_agent=GOOGLEBOT)
    assert accepted(keeping, event("page.visit")).device_type == "bot"


def test_internal_addresses_are_discarded(ctx: RequestContext) -> None:
    settings = AppSettings(internal_ips=["10.0.0.0/8", "203.0.113.9"])
    office = context(ctx, settings=settings, ip="203.0.113.9")
    assert discarded(office, event()) == "internal_ips:203.0.113.9/32"
    assert discarded(office, event(ip="10.20.30.40")) == "internal_ips:10.0.0.0/8"
    # The event's own address wins over the request's.
    assert accepted(office, event(ip="198.51.100.1")).ip == "198.51.100.1"
    outside = context(ctx, settings=settings, ip="203.0.113.10")
    assert accepted(outside, event()).ip == "203.0.113.10"
    assert accepted(outside, event(ip="not an address")).ip == "not an address"
    assert accepted(context(ctx, settings=settings, ip=None), event()).ip is None


def test_a_cidr_with_host_bits_is_taken_as_its_network(ctx: RequestContext) -> None:
    lax = context(ctx, settings=AppSettings(internal_ips=["192.168.1.77/24"]), ip="192.168.1.5")
    assert discarded(lax, event()) == "internal_ips:192.168.1.0/24"


def test_internal_ipv6_addresses_are_discarded(ctx: RequestContext) -> None:
    settings = AppSettings(internal_ips=["2001:db8::/32", "fd00::1", "10.0.0.0/8"])
    inside = context(ctx, settings=settings, ip="2001:db8:1::42")
    assert discarded(inside, event()) == "internal_ips:2001:db8::/32"
    assert discarded(inside, event(ip="FD00:0:0::1")) == "internal_ips:fd00::1/128"
    assert accepted(inside, event(ip="2001:db9::1")).ip == "2001:db9::1"
    assert accepted(inside, event(ip="fd00::2")).ip == "fd00::2"
    # An IPv4 network never holds an IPv6 address, nor the other way round.
    v6_only = context(ctx, settings=AppSettings(internal_ips=["::/0"]), ip="203.0.113.9")
    assert accepted(v6_only, event()).ip == "203.0.113.9"


def test_filter_traffic_step_on_its_own(ctx: RequestContext) -> None:
    native = context(ctx, settings=AppSettings(filter_bots=True, internal_ips=["10.0.0.0/8"]))
    assert filters.filter_traffic(event(device_type="bot"), native) == Discard("bot")
    assert filters.filter_traffic(event(ip="10.0.0.1"), native) == Discard(
        "internal_ips:10.0.0.0/8"
    )
    item = event(ip="198.51.100.1", device_type="mobile")
    assert filters.filter_traffic(item, native) is item


# Aliases ------------------------------------------------------------------------------------------


def test_an_event_sent_as_its_alias_is_stored_under_the_new_name(ctx: RequestContext) -> None:
    alias = EventAlias(alias="entries", name="entries.count")
    native = context(ctx, aliases=[alias])
    stored = accepted(native, event("entries", properties={"entries": 27}))
    assert stored.name == "entries.count"
    assert native.first_seen == {"entries.count": {"entries": PropertyType.NUMBER}}
    assert accepted(native, event("entries.count")).name == "entries.count"


def test_the_new_name_definition_and_lists_apply_to_an_alias(ctx: RequestContext) -> None:
    alias = EventAlias(alias="entries", name="entries.count")
    enforcing = browser(ctx, aliases=[alias], definitions=[typed("entries", PropertyType.NUMBER)])
    stored = accepted(enforcing, event("entries", properties={"entries": "27"}))
    assert (stored.name, stored.properties, stored.coerced_properties) == (
        "entries.count",
        {"entries": 27},
        ["entries"],
    )
    denied = context(ctx, aliases=[alias], settings=AppSettings(denylist=["entries.*"]))
    assert discarded(denied, event("entries")) == "denylist:entries.*"


# Replay -------------------------------------------------------------------------------------------


def replayed(
    ctx: RequestContext, result: PipelineResult, rules: AppRules
) -> tuple[Event, RequestContext]:
    (failed,) = result.failed
    assert failed.replay is not None
    return restore(
        failed.replay,
        failed.payload,
        app=msgspec.structs.replace(ctx.app, settings=rules.settings),
        rules=rules,
        protocol=failed.protocol,
        received_at=failed.received_at,
        limits=ctx.limits,
    )


def test_a_failed_event_replays_once_the_catalog_defines_it(ctx: RequestContext) -> None:
    enforcing = browser(ctx, ip="198.51.100.20")
    payload = msgspec.json.encode({"action": "entries.count", "params": ENTRIES_COUNT_PARAMS})
    original = event(
        protocol="synerise",
        payload=payload,
        raw_time="2026-03-01T11:59:00Z",
        device_id="07243da7-8c93-4e52-b6d4-0a3dd2a86ba7",
        properties=dict(ENTRIES_COUNT_PARAMS),
    )
    result = run(enforcing, original)
    assert [r.code for r in result.rejected] == ["undefined_event"]
    assert result.failed[0].payload == payload

    # Replayed against the same catalog it fails the same way.
    again, again_ctx = replayed(enforcing, result, enforcing.rules)
    assert [r.code for r in run(again_ctx, again).rejected] == ["undefined_event"]

    fixed = AppRules(enforcing.app, [typed("entries", PropertyType.NUMBER)])
    item, restored = replayed(enforcing, result, fixed)
    assert (restored.access, restored.enforce_definitions, restored.allow_reserved) == (
        Access.ANONYMOUS,
        True,
        False,
    )
    assert (restored.ip, restored.user_agent, restored.protocol) == (
        "198.51.100.20",
        enforcing.user_agent,
        "synerise",
    )
    assert item.payload == payload
    outcome = run(restored, item)
    assert outcome.rejected == []
    (stored,) = outcome.accepted
    assert stored.name == "entries.count"
    assert stored.properties == ENTRIES_COUNT_PARAMS
    assert stored.undefined_properties == [k for k in ENTRIES_COUNT_PARAMS if k != "entries"]
    assert stored.device_id == "07243da7-8c93-4e52-b6d4-0a3dd2a86ba7"
    assert stored.time is not None and stored.time.isoformat() == "2026-03-01T11:59:00+00:00"
    assert stored.ip == "198.51.100.20" and stored.browser == "Chrome"


def test_a_replay_keeps_the_customer_and_the_permission_check(ctx: RequestContext) -> None:
    customer = context(
        ctx,
        protocol="synerise",
        access=Access.CUSTOMER,
        enforce_definitions=True,
        customer_id="cust-42",
        definitions=[defined(permission=Permission.SERVER)],
    )
    result = run(customer, event(user_id="someone-else"))
    assert [r.code for r in result.rejected] == ["forbidden_event"]
    still_server = AppRules(customer.app, [defined(permission=Permission.SERVER)])
    item, restored = replayed(customer, result, still_server)
    assert restored.customer_id == "cust-42" and restored.access is Access.CUSTOMER
    assert [r.code for r in run(restored, item).rejected] == ["forbidden_event"]
    opened = AppRules(customer.app, [defined(permission=Permission.CUSTOMER)])
    item, restored = replayed(customer, result, opened)
    (stored,) = run(restored, item).accepted
    assert stored.user_id == "cust-42"


def test_a_type_rejection_replays_after_the_property_is_relaxed(ctx: RequestContext) -> None:
    strict_type = typed("entries", PropertyType.NUMBER, on_mismatch=OnMismatch.REJECT)
    native = context(ctx, definitions=[strict_type])
    result = run(native, event(properties={"entries": "27"}))
    assert [r.code for r in result.rejected] == ["invalid_property"]
    relaxed = AppRules(native.app, [typed("entries", PropertyType.NUMBER)])
    item, restored = replayed(native, result, relaxed)
    (stored,) = run(restored, item).accepted
    assert stored.properties == {"entries": 27} and stored.coerced_properties == ["entries"]


def test_a_reserved_name_replays_only_where_reserved_names_are_allowed(
    ctx: RequestContext,
) -> None:
    native = context(ctx)
    result = run(native, event("transaction.charge"))
    assert [r.code for r in result.rejected] == ["reserved_event"]
    item, restored = replayed(native, result, native.rules)
    assert not restored.allow_reserved
    assert [r.code for r in run(restored, item).rejected] == ["reserved_event"]


def test_a_replay_reports_coercions_made_before_the_drop(ctx: RequestContext) -> None:
    definition = defined(
        properties=[
            PropertyDefinition(name="entries", type=PropertyType.NUMBER),
            PropertyDefinition(
                name="shopId", type=PropertyType.NUMBER, on_mismatch=OnMismatch.REJECT
            ),
        ]
    )
    native = context(ctx, definitions=[definition])
    result = run(native, event(properties={"entries": "27", "shopId": "S198"}))
    assert [r.code for r in result.rejected] == ["invalid_property"]
    fixed = AppRules(
        native.app,
        [
            defined(
                properties=[
                    PropertyDefinition(name="entries", type=PropertyType.NUMBER),
                    PropertyDefinition(name="shopId", type=PropertyType.STRING),
                ]
            )
        ],
    )
    item, restored = replayed(native, result, fixed)
    (stored,) = run(restored, item).accepted
    assert stored.properties == {"entries": 27, "shopId": "S198"}
    assert stored.coerced_properties == ["entries"]


def test_a_dropped_event_with_a_huge_integer_is_still_rejected(ctx: RequestContext) -> None:
    result = run(context(ctx), event("transaction.charge", properties={"n": 10**30}))
    assert [r.code for r in result.rejected] == ["reserved_event"]
    assert len(result.failed) == 1


def test_decode_errors_carry_no_replay_blob(ctx: RequestContext) -> None:
    bare = event(None, payload=b"[1, 2")
    result = PIPELINE.run([], context(ctx), [(bare, Drop(DropReason.INVALID_EVENT, "bad"))])
    assert [f.replay for f in result.failed] == [None]


# Customer binding ---------------------------------------------------------------------------------


def test_a_customer_token_binds_events_to_its_customer(ctx: RequestContext) -> None:
    customer = context(
        ctx,
        protocol="synerise",
        access=Access.CUSTOMER,
        customer_id="cust-42",
        enforce_definitions=True,
    )
    stored = accepted(customer, event("page.visit", user_id="someone-else", device_id="d-1"))
    assert (stored.user_id, stored.device_id) == ("cust-42", "d-1")
    assert accepted(customer, event("session.start")).user_id == "cust-42"
    anonymous = context(ctx)
    assert accepted(anonymous, event("page.visit", user_id="u-7")).user_id == "u-7"
