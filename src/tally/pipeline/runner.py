"""Runs events through the steps, collecting the events kept and those dropped, with reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import msgspec

from tally.model import Drop, DropReason, Event, FailedEvent
from tally.pipeline.context import RequestContext

_NAME_REASONS = frozenset({DropReason.MISSING_NAME, DropReason.INVALID_NAME})
Step: TypeAlias = Callable[[Event, RequestContext], "Event | Drop"]


class Rejection(msgspec.Struct, frozen=True):
    """One rejected item, as reported back to the client."""

    index: int
    code: str
    message: str
    value: Any = None
    """The rejected value: the one the drop names, or the event name for name rules."""


class PipelineResult(msgspec.Struct, kw_only=True):
    accepted: list[Event]
    failed: list[FailedEvent]
    rejected: list[Rejection]
    drop_counts: Counter[DropReason]


def failed_record(ctx: RequestContext, event: Event, drop: Drop) -> FailedEvent:
    name = event.name if isinstance(event.name, str) else None
    return FailedEvent(
        app_id=ctx.app.id,
        received_at=ctx.received_at,
        protocol=ctx.protocol,
        reason=drop.reason,
        message=drop.message,
        payload=event.payload,
        name=name,
        event_index=event.index,
    )


class Pipeline:
    """An ordered list of steps; each returns the event (possibly enriched) or a ``Drop``."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)

    @property
    def step_names(self) -> list[str]:
        return [step.__name__ for step in self.steps]

    def run(
        self,
        events: Sequence[Event],
        ctx: RequestContext,
        decode_errors: Sequence[tuple[Event, Drop]] = (),
    ) -> PipelineResult:
        """Run ``events``; ``decode_errors`` are items the adapter could not decode at all."""
        accepted: list[Event] = []
        failed: list[FailedEvent] = []
        rejected: list[Rejection] = []
        counts: Counter[DropReason] = Counter()

        def drop(event: Event, verdict: Drop) -> None:
            failed.append(failed_record(ctx, event, verdict))
            value = verdict.value
            if value is None and verdict.reason in _NAME_REASONS:
                value = event.name
            rejected.append(Rejection(event.index, verdict.reason.value, verdict.message, value))
            counts[verdict.reason] += 1

        for event, verdict in decode_errors:
            drop(event, verdict)
        for event in events:
            result: Event | Drop = event
            for step in self.steps:
                result = step(result, ctx)
                if type(result) is Drop:
                    break
            if type(result) is Drop:
                drop(event, result)
            else:
                accepted.append(result)
        rejected.sort(key=lambda r: r.index)
        return PipelineResult(
            accepted=accepted, failed=failed, rejected=rejected, drop_counts=counts
        )
