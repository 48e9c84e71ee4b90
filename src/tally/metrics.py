"""Prometheus metrics. With several processes, each writes to a shared directory and /metrics
aggregates them (prometheus_client's multiprocess mode, enabled by PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

EVENTS_ACCEPTED = Counter(
    "tally_events_accepted_total", "Events stored, by protocol.", ["protocol"]
)
EVENTS_DUPLICATE = Counter(
    "tally_events_duplicate_total",
    "Events not stored again because their id was already stored, by protocol.",
    ["protocol"],
)
EVENTS_DROPPED = Counter(
    "tally_events_dropped_total",
    "Events rejected and kept as failed events, by protocol and reason.",
    ["protocol", "reason"],
)
EVENTS_DISCARDED = Counter(
    "tally_events_discarded_total",
    "Events discarded on purpose (allow/deny lists, bots, internal traffic), by protocol and rule.",
    ["protocol", "rule"],
)
NAME_CONVENTION_WARNINGS = Counter(
    "tally_name_convention_warnings_total",
    "Events accepted although their name breaks the context.action convention, by protocol.",
    ["protocol"],
)
PROPERTIES_COERCED = Counter(
    "tally_properties_coerced_total",
    "Property values converted to the type their definition gives, by protocol.",
    ["protocol"],
)
REQUESTS_REJECTED = Counter(
    "tally_requests_rejected_total",
    "Ingest requests refused as a whole, by protocol and error code.",
    ["protocol", "code"],
)
REQUESTS_RATE_LIMITED = Counter(
    "tally_requests_rate_limited_total",
    "Ingest requests refused with 429 (nothing of them kept), by protocol and by what was over "
    "its rate (ip or app).",
    ["protocol", "by"],
)
COMMIT_SECONDS = Histogram(
    "tally_store_commit_seconds",
    "Time to make one group of batches durable (the embedded store: append and sync its journal).",
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COMMIT_ROWS = Histogram(
    "tally_store_commit_rows",
    "Rows (events and failed events) made durable together.",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
COMMIT_REQUESTS = Histogram(
    "tally_store_commit_requests",
    "Requests sharing one commit (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
LOAD_SECONDS = Histogram(
    "tally_store_load_seconds",
    "Time to load one run of journal records into the embedded store's DuckDB file.",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LOAD_ROWS = Histogram(
    "tally_store_load_rows",
    "Rows (events and failed events) loaded into DuckDB in one transaction.",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 250_000),
)
EVENTS_LATE_DUPLICATE = Counter(
    "tally_events_late_duplicate_total",
    "Repeated client event ids found only when loading (answered as accepted, stored once).",
)
DEDUP_IDS_FORGOTTEN = Counter(
    "tally_dedup_ids_forgotten_total",
    "Client event ids the embedded store's dedup index forgot before their window ended, to stay "
    "within its budget (TALLY_DEDUP_MAX_IDS): a retry of one of them is stored again.",
)
STORE_REOPENED = Counter(
    "tally_store_reopened_total",
    "Times the embedded store opened its DuckDB file again after DuckDB invalidated it (a "
    "checkpoint that failed for lack of memory or disk).",
)
REQUEST_EVENTS = Histogram(
    "tally_ingest_request_events",
    "Events per ingest request (batch size), by protocol.",
    ["protocol"],
    buckets=(1, 2, 5, 10, 50, 100, 500, 1_000, 10_000),
)


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics, aggregated over processes when multiprocess."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(pid)
