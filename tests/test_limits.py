"""Configurable limits on strings and nesting: an event over a limit is kept as a failed event with
a stable reason while the rest of its batch is stored. In-process against real DuckDB and SQLite.
(Body size and events per request: tests/test_api_ingest.py.)"""

from __future__ import annotations

import msgspec
import pytest

from tally.catalog import NewApp
from tally.http.services import Services
from tally.limits import Limits
from tally.model import Drop, DropReason, Event
from tally.pipeline import RequestContext
from tally.pipeline.steps import limit_values
from tally.store.query import EventQuery, FailedQuery

SMALL = Limits(
    max_name_length=20,
    max_user_id_length=8,
    max_key_length=6,
    max_string_length=10,
    max_depth=2,
)


def verdict(ctx: RequestContext, **fields: object) -> Event | Drop:
    ctx.limits = SMALL
    return limit_values(Event(index=0, protocol="native", name="signup", **fields), ctx)  # type: ignore[arg-type]


def reason(result: Event | Drop) -> DropReason | None:
    return result.reason if isinstance(result, Drop) else None


def test_values_at_their_limits_pass(ctx: RequestContext) -> None:
    result = verdict(
        ctx,
        user_id="u" * 8,
        device_id="d" * 8,
        session_id="s" * 8,
        properties={"k" * 6: "v" * 10, "nested": {"inner": ["x" * 10, 3, None]}},
    )
    assert isinstance(result, Event)


@pytest.mark.parametrize(
    ("fields", "expected", "says"),
    [
        ({"name": "n" * 21}, DropReason.INVALID_NAME, "event name is 21 characters"),
        ({"user_id": "u" * 9}, DropReason.VALUE_TOO_LONG, "user id is 9 characters"),
        ({"device_id": "d" * 9}, DropReason.VALUE_TOO_LONG, "device id"),
        ({"session_id": "s" * 9}, DropReason.VALUE_TOO_LONG, "session id"),
        ({"properties": {"k" * 7: 1}}, DropReason.VALUE_TOO_LONG, "property name is 7"),
        ({"properties": {"a": {"kk" * 4: 1}}}, DropReason.VALUE_TOO_LONG, "property name"),
        ({"properties": {"a": "v" * 11}}, DropReason.VALUE_TOO_LONG, "property a is 11"),
        (
            {"properties": {"a": {"b": ["ok", "v" * 11]}}},
            DropReason.VALUE_TOO_LONG,
            "property a.b[1] is 11",
        ),
        ({"properties": {"a": [[[1]]]}}, DropReason.NESTING_TOO_DEEP, "deeper than 2"),
        ({"properties": {"a": {"b": {"c": {}}}}}, DropReason.NESTING_TOO_DEEP, "a.b.c"),
    ],
)
def test_each_limit_drops_with_a_stable_reason(
    ctx: RequestContext, fields: dict, expected: DropReason, says: str
) -> None:
    if "name" in fields:
        ctx.limits = SMALL
        result = limit_values(Event(index=0, protocol="native", **fields), ctx)
    else:
        result = verdict(ctx, **fields)
    assert reason(result) is expected
    assert isinstance(result, Drop) and says in result.message


def test_defaults_allow_what_sdks_send(ctx: RequestContext) -> None:
    """Ecommerce-style nesting and longish values pass the defaults."""
    properties = {
        "products": [{"sku": "A-1", "tags": ["x", "y"], "dims": {"w": 1, "h": 2}}],
        "description": "d" * 8192,
    }
    event = Event(index=0, protocol="native", name="order", properties=properties)
    assert isinstance(limit_values(event, ctx), Event)


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "TALLY_MAX_STRING_LENGTH": "100",
            "TALLY_MAX_DEPTH": "3",
            "TALLY_RATE_LIMIT_IP": "2.5",
            "TALLY_RATE_LIMIT_EXEMPT": "10.0.0.0/8, 192.168.1.1",
            "TALLY_BODY_TIMEOUT": "15",
            "TALLY_DEDUP_MAX_IDS": "500000",
        }
    )
    assert limits.dedup_max_ids == 500_000
    assert (limits.max_string_length, limits.max_depth) == (100, 3)
    assert limits.rate_limit_ip == 2.5 and limits.body_timeout == 15.0
    assert limits.rate_limit_exempt == ("10.0.0.0/8", "192.168.1.1")
    assert Limits.from_env({"TALLY_RATE_LIMIT_EXEMPT": "none"}).rate_limit_exempt == ()
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TALLY_MAX_DEPTH", "deep", "TALLY_MAX_DEPTH must be a whole number"),
        ("TALLY_RATE_LIMIT_APP", "fast", "TALLY_RATE_LIMIT_APP must be a number"),
        ("TALLY_MAX_KEY_LENGTH", "0", "max_key_length must be at least 1"),
        ("TALLY_RATE_LIMIT_IP", "-1", "rate_limit_ip must be at least 0"),
        ("TALLY_DEDUP_MAX_IDS", "-5", "dedup_max_ids must be at least 0"),
        ("TALLY_RATE_LIMIT_EXEMPT", "10.0.0.300", "is not an address or network"),
    ],
)
def test_bad_settings_are_refused_with_their_name(variable: str, value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Limits.from_env({variable: value})


async def test_an_event_over_a_limit_is_kept_as_failed_and_the_rest_stored(
    client, services: Services, new_app: NewApp
) -> None:
    services.limits = msgspec.structs.replace(Limits(), max_string_length=16, max_depth=2)
    body = {
        "events": [
            {"name": "ok", "id": "e1", "properties": {"note": "short"}},
            {"name": "long", "id": "e2", "properties": {"note": "x" * 17}},
            {"name": "deep", "id": "e3", "properties": {"a": {"b": {"c": [1]}}}},
            {"name": "ok", "id": "e4", "user": "u" * 256},
            {"name": "ok", "id": "e5", "user": "u" * 257},
        ]
    }
    response = await client.post(
        "/api/v1/events", json=body, headers={"x-tally-key": new_app.app.app_key}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
        (1, "value_too_long"),
        (2, "nesting_too_deep"),
        (4, "value_too_long"),
    ]
    app_id = new_app.app.id
    stored = await services.store.fetch_events(EventQuery(app_id=app_id, limit=100))
    assert sorted(e["id"] for e in stored) == ["e1", "e4"]
    failed = await services.store.fetch_failed(FailedQuery(app_id=app_id))
    assert sorted((f.event_index, f.reason) for f in failed) == [
        (1, "value_too_long"),
        (2, "nesting_too_deep"),
        (4, "value_too_long"),
    ]


async def test_segment_batch_reports_the_limit_in_its_own_shape(
    client, services: Services, new_app: NewApp
) -> None:
    services.limits = msgspec.structs.replace(Limits(), max_key_length=5)
    batch = [
        {"type": "track", "event": "Order", "userId": "u1", "messageId": "m1"},
        {"type": "track", "event": "Order", "userId": "u1", "messageId": "m2",
         "properties": {"too_long": 1}},
    ]  # fmt: skip
    response = await client.post("/v1/batch", json={"batch": batch}, auth=(new_app.app.app_key, ""))
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [(1, "value_too_long")]
    stored = await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=100))
    assert [e["id"] for e in stored] == ["m1"]
