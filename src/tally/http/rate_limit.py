"""Rate limiting of ingest requests per client address and per app: token buckets in memory.

Each HTTP worker keeps its own buckets (like the login throttle), so with N workers a client gets
up to N times the configured rate, and a restart forgets them. A check is one dict lookup and a
little arithmetic. At most ``MAX_TRACKED`` keys are kept per kind; beyond it the full buckets
(idle keys) are forgotten first, which changes nothing for them.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from typing import Final

from tally.limits import Limits

MAX_TRACKED: Final = 100_000


class TokenBuckets:
    """``rate`` tokens a second per key, at most ``burst`` saved up; each request takes one."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate * 2)))
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}
        """key -> [tokens, when they were counted]"""

    def take(self, key: str) -> int | None:
        """Take a token for ``key``: None if it may go on, else seconds until it may retry."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_idle(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return None
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        bucket[0] = tokens
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _forget_idle(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets.clear()  # everyone is busy: start over rather than grow

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """The per-address and per-app limits of ``Limits``; a kind with rate 0 is off."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_ip = (
            TokenBuckets(limits.rate_limit_ip, limits.rate_limit_ip_burst, clock)
            if limits.rate_limit_ip > 0
            else None
        )
        self.by_app = (
            TokenBuckets(limits.rate_limit_app, limits.rate_limit_app_burst, clock)
            if limits.rate_limit_app > 0
            else None
        )
        self._exempt = _networks(limits.rate_limit_exempt)
        self._exempt_seen: dict[str, bool] = {}

    def ip(self, address: str | None) -> int | None:
        """Seconds ``address`` must wait, or None if its request may go on."""
        if self.by_ip is None or address is None or self._is_exempt(address):
            return None
        return self.by_ip.take(address)

    def app(self, app_id: str) -> int | None:
        """Seconds the app's clients must wait, or None if the request may go on."""
        if self.by_app is None:
            return None
        return self.by_app.take(app_id)

    def _is_exempt(self, address: str) -> bool:
        known = self._exempt_seen.get(address)
        if known is None:
            try:
                parsed = ipaddress.ip_address(address)
                known = any(parsed in network for network in self._exempt)
            except ValueError:
                known = False
            if len(self._exempt_seen) >= MAX_TRACKED:
                self._exempt_seen.clear()
            self._exempt_seen[address] = known
        return known


def _networks(specs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(spec, strict=False) for spec in specs]
