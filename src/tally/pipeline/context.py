"""What every step may know about the request an event arrived in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from tally.catalog.definitions import PropertyType
from tally.catalog.models import App
from tally.ids import uuid7, uuid7s
from tally.limits import Limits
from tally.model import Access
from tally.pipeline.app_rules import AppRules


class RequestContext(msgspec.Struct, kw_only=True):
    app: App
    rules: AppRules
    protocol: str
    received_at: datetime
    limits: Limits
    ip: str | None = None
    user_agent: str | None = None
    sent_at: datetime | None = None
    """The client's clock when it sent the request, used to correct event times for skew."""
    access: Access = Access.SERVER
    enforce_definitions: bool = False
    """The path requires every event to be defined (browser tracker, customer JWT)."""
    allow_reserved: bool = False
    """The endpoint may produce reserved events (Synerise transactions)."""
    customer_id: str | None = None
    """The customer a customer JWT speaks for; events are stored as that user."""
    first_seen: dict[str, dict[str, PropertyType]] = msgspec.field(default_factory=dict)
    """Events and properties to define because this request sent them first (filled by the
    pipeline, written to the catalog by the ingest flow)."""

    counted: dict[Any, int] = msgspec.field(default_factory=dict)
    """Per-protocol counters (``tally.metrics``) the steps bumped for this request's events, added
    to the metrics once when the run ends: a metric update costs 1-2 µs, too much per event."""

    name_verdicts: dict[str, Any] = msgspec.field(default_factory=dict)
    """``check_name``'s verdict on each name this request sent (names repeat in a batch)."""
    ids_wanted: int = 1
    """How many events the pipeline is running: the most server-made ids it can need."""
    spare_ids: list[str] = msgspec.field(default_factory=list)
    """Server-made ids made for this request and not given out yet."""

    def new_event_id(self) -> str:
        """A server-made event id. The first asks for as many as the run has events, made at once
        (half the cost of one at a time); a batch of client ids makes none."""
        spare = self.spare_ids
        if not spare:
            if self.ids_wanted <= 1:
                return uuid7()  # one alone is cheaper made the single way
            spare.extend(uuid7s(self.ids_wanted))
            self.ids_wanted = 1
        return spare.pop()

    def count(self, metric: Any) -> None:
        """One more for ``metric`` (a Counter labelled by protocol)."""
        self.counted[metric] = self.counted.get(metric, 0) + 1

    @property
    def requires_definitions(self) -> bool:
        return self.enforce_definitions or self.rules.settings.strict
