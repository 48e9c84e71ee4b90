"""Login throttling: after ``attempts`` failed logins for one email within ``window`` seconds,
further attempts are refused until the oldest of them is older than the window.

The count is kept in memory, per process: with several HTTP workers each counts on its own (so
an attacker gets at most ``attempts`` tries per worker per window), and a restart forgets it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final

MAX_TRACKED: Final = 100_000
"""Emails remembered at once; beyond it, those with no recent failure are forgotten first."""


class LoginThrottle:
    def __init__(
        self,
        attempts: int = 5,
        window: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None if it may try now."""
        now = self.clock()
        failures = self._recent(key, now)
        if failures is None or len(failures) < self.attempts:
            return None
        return max(1, math.ceil(failures[-self.attempts] + self.window - now))

    def failed(self, key: str) -> None:
        now = self.clock()
        if len(self._failures) >= MAX_TRACKED:
            for old in list(self._failures):
                self._recent(old, now)
            if len(self._failures) >= MAX_TRACKED:
                self._failures.clear()
        self._failures.setdefault(key, deque()).append(now)
        while len(self._failures[key]) > self.attempts:
            self._failures[key].popleft()

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
