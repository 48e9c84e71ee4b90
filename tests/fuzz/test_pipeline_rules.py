"""Property-based tests of the pipeline's rules (``tally.pipeline``): events with arbitrary fields,
run under arbitrary app settings and definitions, never make a step raise; every event ends up
exactly once accepted, failed (with a reason) or discarded; what is accepted keeps the promises
the rules make; and what is accepted or failed can be stored."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime

import msgspec
from fuzz_settings import examples
from fuzz_shapes import FUZZ_APP, PIPELINE
from fuzz_strategies import decoded, json_values, mostly, scalars, times
from fuzz_strategies import hostile_text as any_text
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.catalog.definitions import (
    RESERVED_EVENTS,
    EventAlias,
    EventDefinition,
    OnMismatch,
    Permission,
    PropertyDefinition,
    PropertyType,
)
from tally.catalog.models import AppSettings, Convention, NameRule
from tally.limits import Limits
from tally.model import MAX_COUNT, Access, Discard, Drop, DropReason, Event
from tally.pipeline import PipelineResult, RequestContext
from tally.pipeline.app_rules import AppRules
from tally.pipeline.coerce import conforms
from tally.pipeline.names import RULES, name_rule
from tally.pipeline.runner import failed_record
from tally.pipeline.timeparse import FUTURE_TOLERANCE
from tally.sink import AppendBatch
from tally.store.columns import events_table, failed_table
from tally.store.rows import event_rows, failed_rows
from tally.store.wire import decode_batch, encode_batch

hostile_text = any_text.map(decoded)
PROTOCOLS = ["native", "countly", "engagelab", "segment", "synerise"]
NAMES = ["signup", "page.visit", "checkout.done", "item purchase", "transaction.charge", "Bad!"]
names = mostly(st.sampled_from(NAMES), st.one_of(hostile_text, json_values(3).map(decoded)), 70)
PROPERTY_KEYS = ["amount", "plan", "when", "tags", "meta", "flag"]
properties = st.dictionaries(
    mostly(st.sampled_from(PROPERTY_KEYS), hostile_text, 70),
    st.builds(decoded, json_values(4)),
    max_size=6,
)
anything = st.builds(decoded, json_values(3))
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@st.composite
def events(draw: st.DrawFn, index: int) -> Event:
    optional_text = st.one_of(st.none(), hostile_text)
    return Event(
        index=index,
        protocol="fuzz",
        name=draw(names),
        id=draw(st.one_of(st.none(), hostile_text, st.just("x" * 129))),
        label=draw(optional_text),
        raw_time=draw(st.one_of(st.none(), times, anything)),
        user_id=draw(optional_text),
        device_id=draw(optional_text),
        session_id=draw(optional_text),
        count=draw(
            st.one_of(st.none(), scalars.map(decoded), st.just(MAX_COUNT), st.just(MAX_COUNT + 1))
        ),
        sum=draw(st.one_of(st.none(), scalars.map(decoded))),
        dur=draw(st.one_of(st.none(), scalars.map(decoded))),
        properties=draw(properties),
        ip=draw(
            st.one_of(st.none(), st.sampled_from(["10.0.0.5", "::ffff:10.0.0.5"]), hostile_text)
        ),
        user_agent=draw(
            st.one_of(st.none(), st.sampled_from(["Googlebot/2.1", "curl/8.0"]), hostile_text)
        ),
        internal=draw(st.booleans()),
        payload=draw(st.binary(max_size=64)),
    )


globs = st.lists(st.sampled_from(["sign*", "page.*", "*", "[", "*.done", "x"]), max_size=2)
app_settings = st.builds(
    AppSettings,
    name_rule=st.sampled_from(NameRule),
    convention=st.sampled_from(Convention),
    strict=st.booleans(),
    allowlist=globs,
    denylist=globs,
    filter_bots=st.booleans(),
    internal_ips=st.lists(st.sampled_from(["10.0.0.0/8", "::1", "203.0.113.9"]), max_size=2),
)
property_definitions = st.lists(
    st.builds(
        PropertyDefinition,
        name=st.sampled_from(PROPERTY_KEYS),
        type=st.sampled_from(PropertyType),
        required=st.booleans(),
        on_mismatch=st.sampled_from(OnMismatch),
    ),
    max_size=4,
    unique_by=lambda p: p.name,
)
definitions = st.lists(
    st.builds(
        EventDefinition,
        name=st.sampled_from(NAMES),
        label_template=st.sampled_from(["", "{{plan}}", "{{ amount }} of {{meta}}"]),
        permission=st.sampled_from(Permission),
        properties=property_definitions,
    ),
    max_size=3,
    unique_by=lambda d: d.name,
)
aliases = st.lists(
    st.builds(EventAlias, alias=st.sampled_from(NAMES), name=st.sampled_from(NAMES)),
    max_size=2,
    unique_by=lambda a: a.alias,
)


@st.composite
def contexts(draw: st.DrawFn) -> RequestContext:
    app = FUZZ_APP.__class__(
        id=FUZZ_APP.id,
        name=FUZZ_APP.name,
        app_key=FUZZ_APP.app_key,
        api_key=FUZZ_APP.api_key,
        created_at=FUZZ_APP.created_at,
        settings=draw(app_settings),
    )
    return RequestContext(
        app=app,
        rules=AppRules(app, draw(definitions), draw(aliases)),
        protocol=draw(st.sampled_from(PROTOCOLS)),
        received_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        limits=Limits(max_properties=draw(st.sampled_from([3, 300]))),
        ip=draw(st.sampled_from([None, "10.0.0.5", "198.51.100.7"])),
        sent_at=draw(st.sampled_from([None, datetime(2026, 3, 1, 11, 59, tzinfo=UTC)])),
        access=draw(st.sampled_from(Access)),
        enforce_definitions=draw(st.booleans()),
        allow_reserved=draw(st.booleans()),
        customer_id=draw(st.sampled_from([None, "customer-1"])),
    )


def check_accepted(event: Event, ctx: RequestContext) -> None:
    """The promises an accepted event keeps, whichever rules applied."""
    rule = RULES[name_rule(ctx)]
    assert isinstance(event.name, str) and event.name.strip(), event.name
    assert len(event.name) <= rule.longest
    if rule.pattern is not None and not event.internal:
        assert rule.pattern.fullmatch(event.name), event.name
    if event.name in RESERVED_EVENTS:
        assert ctx.allow_reserved
    assert isinstance(event.count, int) and not isinstance(event.count, bool)
    assert 1 <= event.count <= MAX_COUNT
    for value in (event.sum, event.dur):
        assert value is None or (type(value) is float and math.isfinite(value))
    assert event.dur is None or event.dur >= 0
    assert len(event.properties) <= ctx.limits.max_properties
    assert event.time is not None and EARLIEST <= event.time <= ctx.received_at + FUTURE_TOLERANCE
    assert event.id and len(event.id) <= ctx.limits.max_id_length
    if ctx.customer_id is not None:
        assert event.user_id == ctx.customer_id
    if ctx.protocol in ("segment", "synerise", "engagelab"):
        assert event.user_id is not None or event.device_id is not None
    definition = ctx.rules.definitions.get(event.name)
    if ctx.requires_definitions and not event.internal and event.name not in RESERVED_EVENTS:
        assert definition is not None
    if definition is not None and not event.internal:
        for prop in definition.properties:
            value = event.properties.get(prop.name)
            if prop.required:
                assert value is not None, prop.name
            assert conforms(value, prop.type), (prop, value)


@settings(max_examples=examples(80))
@given(ctx=contexts(), data=st.data())
def test_every_event_is_accepted_failed_or_discarded_once(
    ctx: RequestContext, data: st.DataObject
) -> None:
    batch = [data.draw(events(index)) for index in range(data.draw(st.integers(1, 5)))]
    outcome = PIPELINE.run(batch, ctx)

    discarded = sum(outcome.discard_counts.values())
    assert len(outcome.accepted) + len(outcome.failed) + discarded == len(batch)
    assert len(outcome.rejected) == len(outcome.failed)
    assert sorted(r.index for r in outcome.rejected) == sorted(
        f.event_index for f in outcome.failed
    )
    assert sum(outcome.drop_counts.values()) == len(outcome.failed)
    for failed in outcome.failed:
        assert isinstance(failed.reason, DropReason) and failed.message
    for event in outcome.accepted:
        check_accepted(event, ctx)

    rows = AppendBatch(
        events=event_rows(FUZZ_APP.id, outcome.accepted), failed=failed_rows(outcome.failed)
    )
    decode_batch(encode_batch(rows))
    events_table(rows.events)
    failed_table(rows.failed)


def _verdicts(outcome: PipelineResult) -> dict[int, object]:
    """Each event's fate by index; a server-made id (random) is left out of the comparison."""
    verdicts: dict[int, object] = {}
    for event in outcome.accepted:
        verdicts[event.index] = event if event.client_id else msgspec.structs.replace(event, id="")
    for failed in outcome.failed:
        verdicts[failed.event_index] = (failed.reason, failed.message)  # type: ignore[index]
    return verdicts


@settings(max_examples=examples(80))
@given(ctx=contexts(), data=st.data())
def test_steps_a_request_does_not_need_are_left_out_without_changing_anything(
    ctx: RequestContext, data: st.DataObject
) -> None:
    """The runner leaves out steps whose ``needed_when`` condition fails for the request (no
    aliases, no lists, no customer token...); running every step gives the same outcome."""
    batch = [data.draw(events(index)) for index in range(data.draw(st.integers(1, 5)))]
    every_ctx = msgspec.structs.replace(ctx, first_seen={})
    every_step = _run_every_step(copy.deepcopy(batch), every_ctx)
    outcome = PIPELINE.run(batch, ctx)
    assert len(PIPELINE.steps_for(ctx)) <= len(PIPELINE.steps)
    assert _verdicts(outcome) == _verdicts(every_step)
    assert outcome.discard_counts == every_step.discard_counts
    assert ctx.first_seen == every_ctx.first_seen


def _run_every_step(batch: list[Event], ctx: RequestContext) -> PipelineResult:
    """What ``Pipeline.run`` does, calling every step for every event."""
    accepted, failed, discarded = [], [], {}
    for event in batch:
        result: Event | Drop | Discard = event
        for step in PIPELINE.steps:
            result = step(result, ctx)
            if not isinstance(result, Event):
                break
        if isinstance(result, Drop):
            failed.append(failed_record(ctx, event, result))
        elif isinstance(result, Discard):
            discarded[result.rule] = discarded.get(result.rule, 0) + 1
        else:
            accepted.append(result)
    return PipelineResult(
        accepted=accepted, failed=failed, rejected=[], drop_counts={}, discard_counts=discarded
    )


def test_a_count_the_store_cannot_hold_is_rejected() -> None:
    ctx = RequestContext(
        app=FUZZ_APP,
        rules=AppRules(FUZZ_APP),
        protocol="native",
        received_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        limits=Limits(),
    )
    outcome = PIPELINE.run([Event(index=0, protocol="native", name="a", count=MAX_COUNT + 1)], ctx)
    assert [f.reason for f in outcome.failed] == [DropReason.INVALID_MEASURE]
