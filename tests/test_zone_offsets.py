"""Local times by the zone's offsets (``query.zone_offsets``, ``compile.local_time``) equal DuckDB's
own time-zone conversion, for every minute-ish of two years in zones with odd rules: half-hour and
45-minute offsets, a half-hour daylight saving shift, southern summers, no DST at all, and the
instants around every transition; times outside the period fall back to DuckDB's conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from tally.query.compile import local_time
from tally.query.model import Interval
from tally.query.period import Period, zone
from tally.query.zone_offsets import offsets

ZONES = [
    "Europe/Warsaw",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",  # +10:30, DST of half an hour
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kathmandu",  # +05:45
    "Asia/Kolkata",
    "Asia/Tehran",
    "America/St_Johns",  # -03:30 with DST
    "UTC",
]
START = datetime(2025, 6, 1, 0, 7, 30, tzinfo=UTC)
END = datetime(2027, 6, 1, tzinfo=UTC)


def test_the_transitions_of_warsaw() -> None:
    spans = offsets(
        "Europe/Warsaw", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert spans == (
        (datetime(2026, 1, 1, tzinfo=UTC), 3600),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 7200),
        (datetime(2026, 10, 25, 1, 0, tzinfo=UTC), 3600),
    )


@pytest.mark.parametrize("name", ZONES)
def test_local_time_by_offsets_equals_duckdbs_conversion(name: str) -> None:
    period = Period(START, END, zone(name), Interval.DAY)
    spans = offsets(name, START, END)
    extra = [START - timedelta(days=400), START - timedelta(microseconds=1), END]
    for at, _ in spans[1:]:  # each transition, and the seconds around it
        extra += [at + timedelta(seconds=s) for s in (-3601, -1, 0, 1, 3599)]
    conn = duckdb.connect()
    conn.execute(  # every 7 minutes of the two years
        "CREATE TABLE t AS SELECT range AS time FROM "
        "range(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), INTERVAL 7 MINUTE)",
        [START.replace(tzinfo=None), END.replace(tzinfo=None)],
    )
    conn.executemany("INSERT INTO t VALUES (?)", [[i.replace(tzinfo=None)] for i in extra])
    ours = local_time(period, "time")
    rows = conn.execute(
        f"SELECT time, {ours.text} AS ours, timezone(?, timezone('UTC', time)) AS theirs FROM t "
        "WHERE ours IS DISTINCT FROM theirs",
        [*ours.params, name],
    ).fetchall()
    assert rows == []
    counted = conn.execute("SELECT count(*) FROM t").fetchone()
    assert counted is not None and counted[0] > 140_000
