"""Newest-first reads in growing time windows, so a page of a customer's feed reads only the
recent part of the events table.

The embedded store keeps events in the order they arrive, so each row group's time range (its
zone map) is narrow and a bound on ``time`` skips every other row group. A feed page wants the
newest ``limit`` events matching a filter; asked in one query, the store scans the whole table
(at 10M events, about a second). Asked window by window, newest first (the last hour, then a
window sized from the rate found so far, and so on), a busy customer's page comes from the first
window or two; a rare customer's costs a few more queries that skip nearly everything, then one
over the remainder, about what the single query costs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, TypeVar

FIRST_WINDOW: Final = timedelta(hours=1)
"""The first window when the store does not size it (``first_window``)."""
SHORTEST_FIRST: Final = timedelta(minutes=1)
LONGEST_FIRST: Final = timedelta(days=30)
GROWTH: Final = 8
"""How much further back the next window reaches, as a multiple of the time covered, when the
windows so far found nothing."""
MARGIN: Final = 1.5
"""The next window is sized from the rate found so far, this much larger, so one more usually
fills the page."""
WINDOWS: Final = 8
"""Bounded windows at most; the next one is open (all the rest)."""

Row = TypeVar("Row")


def next_span(covered: timedelta, found: int, missing: int) -> float:
    """The next window's length in seconds: from the rate of the ``found`` rows over ``covered``
    the time ``missing`` more rows take (with ``MARGIN``), between ``FIRST_WINDOW`` and ``GROWTH``
    times what is covered. (Seconds, not a timedelta: after a few empty windows the estimate can
    pass the largest timedelta; the caller then reads all the rest.)"""
    seconds = covered.total_seconds()
    longest = seconds * GROWTH
    if not found:
        return longest
    return max(FIRST_WINDOW.total_seconds(), min(longest, seconds * (missing / found * MARGIN)))


def first_window(rows: int, arrival: timedelta, rows_per_read: int) -> timedelta:
    """A first window as long as ``rows_per_read`` rows take to arrive, at the rate of ``rows``
    over ``arrival`` (between ``SHORTEST_FIRST`` and ``LONGEST_FIRST``). A store that reads at
    least that many rows whatever the window (DuckDB: a row group) answers such a window for the
    price of a shorter one, and a busy customer's page then comes from one read, not two."""
    seconds = arrival.total_seconds()
    if rows <= 0 or seconds <= 0:
        return FIRST_WINDOW
    span = timedelta(seconds=seconds * rows_per_read / rows)
    return max(SHORTEST_FIRST, min(LONGEST_FIRST, span))


def newest_first(
    anchor: datetime | None,
    since: datetime | None,
    limit: int,
    read: Callable[[datetime | None, datetime | None, int], list[Row]],
    first: timedelta = FIRST_WINDOW,
) -> list[Row]:
    """Up to ``limit`` rows, newest first, from ``read(lo, hi, wanted)`` window by window.
    ``read`` answers the rows with ``lo <= time < hi`` (None: no bound) newest first, at most
    ``wanted`` of them. The first window has no upper bound (rows stamped after ``anchor`` belong
    to it), the last none below (or ``since``): they cover every time once. ``anchor``: where
    the first window ends, normally the newest time stored (None: one read of everything);
    ``first``: how far back the first window reaches."""
    if anchor is None:
        return read(since, None, limit)
    rows: list[Row] = []
    hi: datetime | None = None
    floor = datetime.min.replace(tzinfo=anchor.tzinfo)
    lo: datetime | None = anchor - first if anchor - floor > first else None
    for step in range(WINDOWS + 1):
        if step == WINDOWS or lo is None or (since is not None and lo <= since):
            lo = since
        rows.extend(read(lo, hi, limit - len(rows)))
        if len(rows) >= limit or lo is None or lo == since:
            break
        hi = lo
        span = next_span(anchor - hi, len(rows), limit - len(rows))
        room = (hi - floor).total_seconds()
        lo = hi - timedelta(seconds=span) if span < room else None
    return rows
