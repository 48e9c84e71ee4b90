"""The garbage collector's settings for a long-running server process.

CPython's cyclic collector walks every tracked object in a full (generation 2) collection. A
server builds most of its objects once at start (modules, the app, its routes, caches), and an
ingest request allocates a few hundred short-lived ones, so by default full collections keep
walking the same startup objects and young ones are collected every 700 allocations. Measured
under single-event ingest (BENCHMARKS.md): full collections of ~50 ms a few times a minute,
each one a latency spike for every request waiting behind it.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Allocations between young-generation collections (CPython's default: 700)."""


def settle() -> None:
    """Collect once, then leave what exists now out of every later collection (``gc.freeze``)
    and collect young objects less often. Called once a process has built its app, just before
    it starts serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
