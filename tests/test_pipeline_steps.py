"""Each pipeline step on its own, then the runner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tally.limits import Limits
from tally.model import Drop, DropReason, Event
from tally.pipeline import DEFAULT_STEPS, Pipeline, RequestContext, steps


def event(**fields) -> Event:  # type: ignore[no-untyped-def]
    fields.setdefault("name", "signup")
    return Event(index=fields.pop("index", 0), protocol="native", **fields)


def dropped(result: Event | Drop, reason: DropReason) -> bool:
    return isinstance(result, Drop) and result.reason is reason


def test_limit_event_size_uses_the_payload_as_received(ctx: RequestContext) -> None:
    limit = ctx.limits.max_event_bytes
    assert isinstance(steps.limit_event_size(event(payload=b"x" * limit), ctx), Event)
    result = steps.limit_event_size(event(payload=b"x" * (limit + 1)), ctx)
    assert dropped(result, DropReason.EVENT_TOO_LARGE)
    assert str(limit) in result.message  # type: ignore[union-attr]


@pytest.mark.parametrize("name", [None, "", "   "])
def test_check_name_missing(ctx: RequestContext, name: object) -> None:
    assert dropped(steps.check_name(event(name=name), ctx), DropReason.MISSING_NAME)


def test_check_name_type_and_length(ctx: RequestContext) -> None:
    assert dropped(steps.check_name(event(name=42), ctx), DropReason.INVALID_NAME)
    assert isinstance(steps.check_name(event(name="a" * 255), ctx), Event)
    assert dropped(steps.check_name(event(name="a" * 256), ctx), DropReason.INVALID_NAME)
    assert isinstance(steps.check_name(event(name="item purchase"), ctx), Event)


def test_resolve_time_defaults_to_receipt(ctx: RequestContext) -> None:
    result = steps.resolve_time(event(), ctx)
    assert isinstance(result, Event)
    assert result.time == ctx.received_at == result.received_at


@pytest.mark.parametrize(
    "raw",
    [
        1772366400,
        1772366400000,
        1772366400.0,
        "1772366400",
        "2026-03-01T12:00:00Z",
        "2026-03-01T13:00:00+01:00",
        "2026-03-01T12:00:00",
    ],
)
def test_resolve_time_reads_epoch_seconds_ms_and_iso(ctx: RequestContext, raw: object) -> None:
    result = steps.resolve_time(event(raw_time=raw), ctx)
    assert isinstance(result, Event)
    assert result.time == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["yesterday", True, [1], "1999-12-31T00:00:00Z", float("nan")])
def test_resolve_time_rejects_unreadable_times(ctx: RequestContext, raw: object) -> None:
    assert dropped(steps.resolve_time(event(raw_time=raw), ctx), DropReason.INVALID_TIME)


def test_resolve_time_clamps_the_future(ctx: RequestContext) -> None:
    future = ctx.received_at + timedelta(hours=3)
    result = steps.resolve_time(event(raw_time=future.isoformat()), ctx)
    assert isinstance(result, Event) and result.time == ctx.received_at
    near = ctx.received_at + timedelta(seconds=30)  # within tolerance: small clock drift is kept
    result = steps.resolve_time(event(raw_time=near.isoformat()), ctx)
    assert isinstance(result, Event) and result.time == near


def test_resolve_time_corrects_clock_skew(ctx: RequestContext) -> None:
    # The client's clock runs 1 hour fast: it sent at 13:00 an event it stamped 12:50.
    ctx.sent_at = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    result = steps.resolve_time(event(raw_time="2026-03-01T12:50:00Z"), ctx)
    assert isinstance(result, Event)
    assert result.time == ctx.received_at - timedelta(minutes=10)


def test_check_measures_defaults_and_rules(ctx: RequestContext) -> None:
    result = steps.check_measures(event(), ctx)
    assert isinstance(result, Event) and result.count == 1 and result.sum is None
    result = steps.check_measures(event(count=3, sum=9, dur=1.5), ctx)
    assert isinstance(result, Event)
    assert (result.count, result.sum, result.dur) == (3, 9.0, 1.5)
    assert isinstance(result.sum, float)
    for bad in (
        {"count": 0},
        {"count": -2},
        {"count": 1.5},
        {"count": True},
        {"sum": float("inf")},
        {"dur": -1},
        {"sum": "3"},
    ):
        assert dropped(steps.check_measures(event(**bad), ctx), DropReason.INVALID_MEASURE), bad


def test_limit_properties(ctx: RequestContext) -> None:
    ctx.limits = Limits(max_properties=2)
    assert isinstance(steps.limit_properties(event(properties={"a": 1, "b": 2}), ctx), Event)
    result = steps.limit_properties(event(properties={"a": 1, "b": 2, "c": 3}), ctx)
    assert dropped(result, DropReason.TOO_MANY_PROPERTIES)


def test_enrich_context_fills_ip_and_parses_the_user_agent(ctx: RequestContext) -> None:
    result = steps.enrich_context(event(), ctx)
    assert isinstance(result, Event)
    assert result.ip == "203.0.113.9"
    assert (result.browser, result.os, result.device_type) == ("Chrome", "Linux", "desktop")


def test_enrich_context_keeps_what_the_event_says(ctx: RequestContext) -> None:
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    result = steps.enrich_context(event(ip="192.0.2.1", user_agent=iphone), ctx)
    assert isinstance(result, Event)
    assert result.ip == "192.0.2.1"
    assert (result.os, result.device_type) == ("iOS", "mobile")
    bot = steps.enrich_context(
        event(user_agent="Googlebot/2.1 (+http://www.google.com/bot.html)"), ctx
    )
    assert isinstance(bot, Event) and bot.device_type == "bot"


def test_assign_id_keeps_client_ids_and_makes_time_ordered_ones(ctx: RequestContext) -> None:
    kept = steps.assign_id(event(id="order-17"), ctx)
    assert isinstance(kept, Event) and kept.id == "order-17" and kept.client_id
    first = steps.assign_id(event(), ctx)
    second = steps.assign_id(event(), ctx)
    assert isinstance(first, Event) and isinstance(second, Event)
    assert not first.client_id and first.id and first.id != second.id
    assert first.id[14] == "7"  # UUID version 7
    assert dropped(steps.assign_id(event(id=""), ctx), DropReason.INVALID_ID)
    assert dropped(steps.assign_id(event(id="x" * 129), ctx), DropReason.INVALID_ID)


def test_runner_keeps_order_and_records_failures(ctx: RequestContext) -> None:
    pipeline = Pipeline(DEFAULT_STEPS)
    assert pipeline.step_names == [
        "limit_event_size",
        "check_name",
        "bind_customer",
        "require_identity",
        "rename_alias",
        "check_reserved",
        "filter_lists",
        "enrich_context",
        "filter_traffic",
        "resolve_time",
        "check_measures",
        "limit_properties",
        "limit_values",
        "check_definition",
        "assign_id",
        "note_first_seen",
    ]
    decode_error = (
        event(index=1, name=None, payload=b"[]"),
        Drop(DropReason.INVALID_EVENT, "not an object"),
    )
    result = pipeline.run(
        [event(index=0), event(index=2, name="", payload=b'{"name":""}'), event(index=3, count=0)],
        ctx,
        [decode_error],
    )
    assert [e.index for e in result.accepted] == [0]
    assert [(r.index, r.code) for r in result.rejected] == [
        (1, "invalid_event"),
        (2, "missing_name"),
        (3, "invalid_measure"),
    ]
    by_index = {f.event_index: f for f in result.failed}
    assert by_index[2].payload == b'{"name":""}'
    assert by_index[2].app_id == ctx.app.id and by_index[2].protocol == "native"
    assert by_index[2].received_at == ctx.received_at
    assert result.drop_counts[DropReason.MISSING_NAME] == 1


def test_a_step_that_drops_stops_the_event(ctx: RequestContext) -> None:
    seen: list[str] = []

    def first(e: Event, c: RequestContext) -> Event | Drop:
        seen.append("first")
        return Drop(DropReason.INVALID_NAME, "no")

    def second(e: Event, c: RequestContext) -> Event | Drop:
        seen.append("second")
        return e

    result = Pipeline([first, second]).run([event()], ctx)
    assert seen == ["first"] and not result.accepted and result.rejected[0].code == "invalid_name"


def test_a_batch_gets_distinct_server_ids_made_at_once(ctx: RequestContext) -> None:
    events = [event(index=i) for i in range(50)]
    events[7].id = "client-7"
    result = Pipeline(DEFAULT_STEPS).run(events, ctx)
    ids = [e.id for e in result.accepted]
    assert len(set(ids)) == 50 and ids[7] == "client-7"
    made = [e for e in result.accepted if not e.client_id]
    assert len(made) == 49 and all(e.id and e.id[14] == "7" for e in made)
    # a second run on the same request context draws new ones, never the first run's
    again = Pipeline(DEFAULT_STEPS).run([event(index=0), event(index=1)], ctx)
    assert not {e.id for e in again.accepted} & set(ids)


def test_names_judged_once_per_request_still_answer_every_event(ctx: RequestContext) -> None:
    events = [event(index=i, name=name) for i, name in enumerate(["ok", "", "x" * 300, "", "ok"])]
    result = Pipeline(DEFAULT_STEPS).run(events, ctx)
    assert [e.index for e in result.accepted] == [0, 4]
    assert [(r.index, r.code) for r in result.rejected] == [
        (1, "missing_name"),
        (2, "invalid_name"),
        (3, "missing_name"),
    ]
    assert [f.event_index for f in result.failed] == [1, 2, 3]
