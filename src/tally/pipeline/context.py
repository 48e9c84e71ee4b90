"""What every step may know about the request an event arrived in."""

from __future__ import annotations

from datetime import datetime

import msgspec

from tally.catalog.models import App
from tally.limits import Limits


class RequestContext(msgspec.Struct, kw_only=True):
    app: App
    protocol: str
    received_at: datetime
    limits: Limits
    ip: str | None = None
    user_agent: str | None = None
    sent_at: datetime | None = None
    """The client's clock when it sent the request, used to correct event times for skew."""
