"""Runs events through the steps, collecting the events kept, those dropped (with reasons) and
those discarded (by rule)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import msgspec

from tally.model import Discard, Drop, DropReason, Event, FailedEvent
from tally.pipeline.context import RequestContext
from tally.pipeline.replay import replay_state

_NAME_REASONS = frozenset({DropReason.MISSING_NAME, DropReason.INVALID_NAME})
Step: TypeAlias = Callable[[Event, RequestContext], "Event | Drop | Discard"]
Needed: TypeAlias = Callable[[RequestContext], bool]
_NEEDED: dict[Step, Needed] = {}


def needed_when(predicate: Needed) -> Callable[[Step], Step]:
    """Mark a step that returns every event unchanged unless ``predicate(ctx)`` holds (no
    customer token, no aliases, no lists...): the runner leaves it out of such requests instead
    of calling it for every event."""

    def mark(step: Step) -> Step:
        _NEEDED[step] = predicate
        return step

    return mark


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
    drop_counts: dict[DropReason, int]
    discard_counts: dict[str, int]
    """Events discarded on purpose, by the rule that discarded them."""


def failed_record(
    ctx: RequestContext, event: Event, drop: Drop, *, replayable: bool = True
) -> FailedEvent:
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
        replay=replay_state(event, ctx) if replayable else None,
    )


class Pipeline:
    """An ordered list of steps; each returns the event (possibly enriched), a ``Drop`` or a
    ``Discard``."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)

    @property
    def step_names(self) -> list[str]:
        return [step.__name__ for step in self.steps]

    def steps_for(self, ctx: RequestContext) -> tuple[Step, ...]:
        """The steps that can change something in this request's events."""
        return tuple(
            step for step in self.steps if (needed := _NEEDED.get(step)) is None or needed(ctx)
        )

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
        counts: dict[DropReason, int] = {}  # plain dicts: a Counter costs ~5 µs to create
        discarded: dict[str, int] = {}

        def drop(event: Event, verdict: Drop, *, replayable: bool = True) -> None:
            failed.append(failed_record(ctx, event, verdict, replayable=replayable))
            value = verdict.value
            if value is None and verdict.reason in _NAME_REASONS:
                value = event.name
            rejected.append(Rejection(event.index, verdict.reason.value, verdict.message, value))
            counts[verdict.reason] = counts.get(verdict.reason, 0) + 1

        for event, verdict in decode_errors:
            drop(event, verdict, replayable=False)
        steps = self.steps_for(ctx)
        ctx.ids_wanted = len(events)
        for event in events:
            result: Event | Drop | Discard = event
            for step in steps:
                result = step(result, ctx)
                if type(result) is not Event:
                    break
            if type(result) is Drop:
                drop(event, result)
            elif type(result) is Discard:
                discarded[result.rule] = discarded.get(result.rule, 0) + 1
            else:
                accepted.append(result)
        rejected.sort(key=lambda r: r.index)
        for metric, count in ctx.counted.items():
            metric.labels(ctx.protocol).inc(count)
        ctx.counted.clear()
        return PipelineResult(
            accepted=accepted,
            failed=failed,
            rejected=rejected,
            drop_counts=counts,
            discard_counts=discarded,
        )
