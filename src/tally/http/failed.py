"""Failed events: list, inspect, replay; and the counts of events discarded on purpose.

``GET  /api/v1/apps/{app_id}/failed-events``          filter by reason, name, time, replayed
``GET  /api/v1/apps/{app_id}/failed-events/{id}``     one, with its payload
``POST /api/v1/apps/{app_id}/failed-events/replay``   run the pipeline again after a catalog fix
``GET  /api/v1/apps/{app_id}/discarded``              events discarded per rule and day
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import date, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tally.catalog import App
from tally.http.api import authenticated_app, decode_body, json_response, limit_param
from tally.http.errors import ApiError
from tally.http.ingest import define_first_seen
from tally.http.services import Services
from tally.pipeline.replay import restore
from tally.pipeline.timeparse import TimeError, parse_instant
from tally.sink import AppendBatch
from tally.store.query import FailedQuery, FailedRecord, FailedSummary, ReplayedEvent
from tally.store.rows import event_rows

MAX_LIST = 1000
MAX_REPLAY = 10_000


class FailedEventDetail(FailedSummary, kw_only=True):
    payload: str
    payload_encoding: str
    """``utf-8`` (the payload as text) or ``base64``."""


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which failed events to replay (those not replayed yet); every filter is optional."""

    ids: list[str] | None = None
    reason: str | None = None
    name: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 1000


class StillFailing(msgspec.Struct):
    id: str
    reason: str
    message: str


class ReplayReport(msgspec.Struct, kw_only=True):
    replayed: int
    """Events that passed the pipeline this time."""
    stored: int
    """Of those, newly stored."""
    duplicates: int
    """Of those, already stored (an earlier replay, or the client's retry)."""
    discarded: int
    """Of those, discarded by an allow/deny list or traffic filter."""
    still_failing: list[StillFailing]
    not_replayable: list[str]


def _summary(record: FailedRecord) -> FailedSummary:
    return FailedSummary(**{f: getattr(record, f) for f in FailedSummary.__struct_fields__})


def _instant(name: str, text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_instant(text)
    except TimeError as exc:
        raise ApiError(400, "invalid_parameter", f"{name}: {exc}") from None


async def list_failed(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    params = request.query_params
    replayed = params.get("replayed")
    if replayed not in (None, "true", "false"):
        raise ApiError(400, "invalid_parameter", "replayed must be true or false")
    query = FailedQuery(
        app_id=app.id,
        reason=params.get("reason") or None,
        name=params.get("name") or None,
        since=_instant("since", params.get("since")),
        until=_instant("until", params.get("until")),
        replayed=None if replayed is None else replayed == "true",
        limit=limit_param(params.get("limit"), 100, MAX_LIST),
    )
    records = await services.store.fetch_failed(query)
    return json_response({"failed_events": [_summary(r) for r in records]})


async def get_failed(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    failed_id = request.path_params["failed_id"]
    records = await services.store.fetch_failed(
        FailedQuery(app_id=app.id, ids=[failed_id], with_payload=True, limit=1)
    )
    if not records:
        raise ApiError(404, "not_found", f"no failed event {failed_id!r} in this app")
    record = records[0]
    payload = record.payload or b""
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode(), "base64"
    summary = msgspec.structs.asdict(_summary(record))
    return json_response(FailedEventDetail(**summary, payload=text, payload_encoding=encoding))


async def replay_failed(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    body = decode_body(await request.body() or b"{}", ReplayRequest)
    query = FailedQuery(
        app_id=app.id,
        ids=body.ids,
        reason=body.reason,
        name=body.name,
        since=_instant("since", body.since),
        until=_instant("until", body.until),
        replayed=False,
        with_payload=True,
        limit=limit_param(str(body.limit), 1000, MAX_REPLAY),
    )
    return json_response(await replay(services, app, query))


async def replay(services: Services, app: App, query: FailedQuery) -> ReplayReport:
    """Run failed events through the pipeline again with the app's current catalog.

    An event without a client id is replayed under the failed event's id, so replaying twice (or
    a crash between storing and marking) stores it once.
    """
    records = await services.store.fetch_failed(query)
    rules = await services.resolver.rules(app)
    batch = AppendBatch()
    replayed: list[ReplayedEvent] = []
    still_failing: list[StillFailing] = []
    not_replayable: list[str] = []
    discarded: Counter[str] = Counter()
    for record in records:
        if record.replay is None:
            not_replayable.append(record.id)
            continue
        event, ctx = restore(
            record.replay,
            record.payload or b"",
            app=app,
            rules=rules,
            protocol=record.protocol,
            received_at=record.received_at,
            limits=services.limits,
        )
        if event.id is None:  # no client id: the failed event's own makes the replay idempotent
            event.id = record.id
        outcome = services.pipeline.run([event], ctx)
        if outcome.rejected:
            rejection = outcome.rejected[0]
            still_failing.append(StillFailing(record.id, rejection.code, rejection.message))
            continue
        if ctx.first_seen:
            await define_first_seen(services, ctx)
        batch.events.extend(event_rows(app.id, outcome.accepted))
        discarded.update(outcome.discard_counts)
        replayed.append(ReplayedEvent(record.id, event.id or record.id))
    batch.discarded.extend((app.id, rule, count) for rule, count in discarded.items())
    result = await services.store.append(batch) if not batch.empty else None
    await services.store.mark_replayed(app.id, replayed)
    return ReplayReport(
        replayed=len(replayed),
        stored=result.accepted if result else 0,
        duplicates=result.duplicates if result else 0,
        discarded=sum(discarded.values()),
        still_failing=still_failing,
        not_replayable=not_replayable,
    )


class DiscardedCounts(msgspec.Struct):
    rule: str
    day: date
    count: int


async def list_discarded(request: Request) -> Response:
    services: Services = request.app.state.services
    app = await authenticated_app(request, services, request.path_params["app_id"])
    since_text = request.query_params.get("since")
    try:
        since = date.fromisoformat(since_text) if since_text else None
    except ValueError:
        raise ApiError(400, "invalid_parameter", "since must be a date, YYYY-MM-DD") from None
    counts = await services.store.discard_counts(app.id, since)
    totals: Counter[str] = Counter()
    for row in counts:
        totals[row.rule] += row.count
    body: dict[str, Any] = {
        "totals": dict(sorted(totals.items())),
        "days": [DiscardedCounts(r.rule, r.day, r.count) for r in counts],
    }
    return json_response(body)
