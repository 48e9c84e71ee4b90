"""Everything a request handler needs, built once per server process."""

from __future__ import annotations

from dataclasses import dataclass, field

from tally.catalog import Catalog
from tally.http.apps import AppResolver
from tally.http.rate_limit import RateLimiter
from tally.http.throttle import LoginThrottle
from tally.limits import Limits
from tally.pipeline import DEFAULT_STEPS, Pipeline
from tally.store.base import EventStore


@dataclass
class Services:
    catalog: Catalog
    store: EventStore
    limits: Limits = field(default_factory=Limits)
    pipeline: Pipeline = field(default_factory=lambda: Pipeline(DEFAULT_STEPS))
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    """Failed dashboard logins per email, in this process."""
    rate_limiter: RateLimiter = None  # type: ignore[assignment]
    """Ingest requests per client address and per app, in this process (from ``limits`` if not
    given)."""
    resolver: AppResolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = AppResolver(self.catalog)
        if self.rate_limiter is None:
            self.rate_limiter = RateLimiter(self.limits)

    async def close(self) -> None:
        self.resolver.close()
        await self.store.close()
        self.catalog.close()
