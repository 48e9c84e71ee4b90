"""Each protocol's reply shapes, and the checks every fuzzed request must pass: no crash, and
every answer (success or refusal) in the protocol's own shape with a stable code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tally.adapters.base import Adapter, DecodedBatch, RequestError
from tally.catalog.models import App
from tally.limits import Limits
from tally.model import DropReason, Event
from tally.pipeline import DEFAULT_STEPS, Pipeline, RequestContext
from tally.pipeline.app_rules import AppRules
from tally.sink import AppendBatch
from tally.store.columns import events_table, failed_table
from tally.store.rows import event_rows, failed_rows
from tally.store.wire import decode_batch, encode_batch

FUZZ_APP = App(
    id="f" * 24,
    name="fuzz",
    app_key="fuzz-app-key",
    api_key="fuzz-api-key",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)
PIPELINE = Pipeline(DEFAULT_STEPS)
CODES = frozenset(reason.value for reason in DropReason) | {
    "missing_app_key",
    "unknown_app_key",
    "invalid_json",
    "method_not_allowed",
    "body_too_large",
    "batch_too_large",
    "store_unavailable",
    "invalid_token",
    "invalid_user_property",
    "ignored_device_id",
    "missing_requests",
    "invalid_requests",
    "all_rejected",
    "invalid_method",
    "invalid_parameter",
    "origin_not_allowed",
    "rate_limited",
    "request_timeout",
}
"""Every code a refusal may carry; anything else is a code nobody documented."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise AssertionError(f"the reply is not JSON: {body[:200]!r}") from exc


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def check_error(protocol: str, status: int, body: bytes) -> None:
    """A refusal (status >= 400, or Countly's 200 refusals) in the protocol's error shape."""
    data = _json(body)
    assert isinstance(data, dict), data
    if protocol == "native":
        assert set(data) == {"error"}, data
        assert set(data["error"]) == {"code", "message"}, data
        assert data["error"]["code"] in CODES, data
        assert _is_text(data["error"]["message"]), data
    elif protocol == "countly":
        assert set(data) == {"result"} and _is_text(data["result"]), data
    elif protocol == "engagelab":
        assert set(data) == {"code", "message"}, data
        assert isinstance(data["code"], int) and data["code"] != 0, data
        assert _is_text(data["message"]), data
    elif protocol == "segment":
        assert set(data) == {"success", "code", "message"}, data
        assert data["success"] is False and data["code"] in CODES, data
    elif protocol == "synerise":
        assert set(data) == {"error", "message", "path", "status", "timestamp", "errors"}, data
        assert data["status"] == status, data
        assert isinstance(data["errors"], list), data
        for entry in data["errors"]:
            assert set(entry) == {"code", "field", "message", "rejectedValue"}, entry
            assert isinstance(entry["code"], int), entry
    else:  # pragma: no cover
        raise AssertionError(f"no shape known for {protocol}")


def check_reply(protocol: str, status: int, body: bytes) -> None:
    """Any answer of an ingest endpoint: a success in the protocol's success shape, or an
    error in its error shape; never a 5xx other than 503 (the store, retry later)."""
    assert status < 500 or status == 503, (status, body[:300])
    if protocol == "synerise" and status == 202:
        assert body == b"", body
        return
    data = _json(body) if body else None
    if protocol == "native" and isinstance(data, dict) and "accepted" in data:
        assert status in (200, 400), (status, data)
        assert set(data) == {"accepted", "duplicates", "rejected"}, data
        for item in data["rejected"]:
            assert set(item) == {"index", "code", "message"} and item["code"] in CODES, item
        return
    if protocol == "countly" and (status == 200 or 400 <= status < 500 or status == 503):
        assert isinstance(data, dict) and _is_text(data.get("result")), (status, data)
        return
    if protocol == "engagelab" and status == 200:
        assert isinstance(data, dict) and data["code"] == 0 and data["message"] == "success"
        return
    if protocol == "segment" and status == 200:
        assert isinstance(data, dict) and data["success"] is True, data
        return
    if status == 204 and body == b"":  # a CORS preflight
        return
    assert status >= 400, (status, body[:300])
    check_error(protocol, status, body)


def check_refusal(adapter: Adapter, error: RequestError) -> None:
    """``encode_error`` answers a refusal in the protocol's own shape with a known code."""
    assert error.code in CODES, (error.code, error.message)
    reply = adapter.encode_error(error)
    if adapter.protocol == "countly":
        assert reply.status == 200 or 400 <= reply.status < 500, reply.status
    else:
        assert 400 <= reply.status < 500, (reply.status, error.code)
    check_error(adapter.protocol, reply.status, reply.body)


def context(protocol: str, limits: Limits | None = None) -> RequestContext:
    return RequestContext(
        app=FUZZ_APP,
        rules=AppRules(FUZZ_APP),
        protocol=protocol,
        received_at=datetime.now(UTC),
        limits=limits or Limits(),
        ip="203.0.113.9",
    )


def check_storable(protocol: str, decoded: DecodedBatch) -> None:
    """What the adapter decoded goes through the pipeline, and what the pipeline keeps can be
    written to the journal and loaded into the store's columns (a value the store cannot take
    must be rejected before the request is acknowledged, or it blocks the loader)."""
    for part in decoded.parts:
        for event in part.events:
            assert isinstance(event, Event) and isinstance(event.payload, bytes), event
        outcome = PIPELINE.run(part.events, context(protocol), part.errors)
        assert len(outcome.accepted) + len(outcome.failed) + sum(
            outcome.discard_counts.values()
        ) == len(part.events) + len(part.errors)
        batch = AppendBatch(
            events=event_rows(FUZZ_APP.id, outcome.accepted), failed=failed_rows(outcome.failed)
        )
        decode_batch(encode_batch(batch))
        events_table(batch.events)
        failed_table(batch.failed)
