"""Client-supplied event ids seen lately, in memory, so a reply can count a retry as a duplicate.

The authoritative dedup index is DuckDB's ``event_ids`` table (the whole dedup window), checked
when the journal loader stores events: a repeat is never stored twice. Looking it up before every
acknowledgement would put a scan of that table on the reply path, so replies count as duplicates
the repeats of ids among the last ``capacity`` to ``2 * capacity`` client ids (a client's retry
comes seconds or minutes later); an older repeat is answered as accepted and still stored once.
On start the store fills it with the newest ids of ``event_ids``, so a retry across a restart is
still answered as a duplicate.
"""

from __future__ import annotations

DEFAULT_CAPACITY = 100_000
"""Ids per generation: two generations take about 15 MB at most."""


class RecentIds:
    """Two generations of keys: when the current one is full it becomes the previous one."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._current: set[int] = set()
        self._previous: set[int] = set()

    def __contains__(self, key: int) -> bool:
        return key in self._current or key in self._previous

    @staticmethod
    def key(hi: int, lo: int) -> int:
        """One int for a 128-bit dedup digest (``ids.dedup_key``)."""
        return (hi << 64) | lo

    def add(self, key: int) -> None:
        if len(self._current) >= self.capacity:
            self._previous, self._current = self._current, set()
        self._current.add(key)
