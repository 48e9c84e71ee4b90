"""Newest-first reads in growing time windows: the windows cover every time once, and the pages
of each store, DuckDB and ClickHouse (a customer's feed, an app's events), are exactly what one
query over the whole table answers, whatever the times: far past, far future, ties on an edge."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from stored_events import APP, batch, ev
from tally.sink import AppendBatch
from tally.store.clickhouse_db import ClickHouseDB
from tally.store.duckdb_store import DuckDBStore
from tally.store.query import EventCursor, EventQuery
from tally.store.time_windows import (
    FIRST_WINDOW,
    GROWTH,
    LONGEST_FIRST,
    SHORTEST_FIRST,
    WINDOWS,
    first_window,
    newest_first,
    next_span,
)
from tally.testing.clickhouse_databases import drop_database, fresh_database_url

ANCHOR = datetime(2026, 12, 7, 12, 0)
Window = tuple[datetime | None, datetime | None]


def _reader(times: list[datetime], asked: list[Window]):  # type: ignore[no-untyped-def]
    def read(lo: datetime | None, hi: datetime | None, wanted: int) -> list[datetime]:
        asked.append((lo, hi))
        inside = [t for t in times if (lo is None or t >= lo) and (hi is None or t < hi)]
        return sorted(inside, reverse=True)[:wanted]

    return read


def _contiguous(asked: list[Window]) -> bool:
    return asked[0][1] is None and all(lo == hi for (lo, _), (_, hi) in pairwise(asked))


def test_a_busy_stream_is_read_from_the_newest_windows_only() -> None:
    times = [ANCHOR - timedelta(minutes=10 * i) for i in range(1000)]  # 6 an hour
    asked: list[Window] = []
    assert newest_first(ANCHOR, None, 50, _reader(times, asked)) == times[:50]
    assert _contiguous(asked)
    assert asked[0] == (ANCHOR - FIRST_WINDOW, None)
    # 6 in the first hour: the next window is sized for the 44 missing, with the margin
    assert len(asked) == 2
    assert asked[1][0] == ANCHOR - FIRST_WINDOW - timedelta(seconds=next_span(FIRST_WINDOW, 6, 44))


def test_a_rare_stream_grows_the_windows_then_reads_the_rest() -> None:
    times = [ANCHOR - timedelta(days=d) for d in (3, 400, 5000)]
    asked: list[Window] = []
    assert newest_first(ANCHOR, None, 50, _reader(times, asked)) == times
    assert _contiguous(asked)
    assert len(asked) == WINDOWS + 1
    assert asked[-1][0] is None  # all the rest, once
    assert asked[1][0] == ANCHOR - FIRST_WINDOW * (1 + GROWTH)  # nothing found: 8 times further


def test_since_ends_the_windows() -> None:
    times = [ANCHOR - timedelta(hours=h) for h in (0.5, 2, 30)]
    asked: list[Window] = []
    since = ANCHOR - timedelta(hours=3)
    assert newest_first(ANCHOR, since, 10, _reader(times, asked)) == times[:2]
    assert asked == [(ANCHOR - FIRST_WINDOW, None), (since, ANCHOR - FIRST_WINDOW)]
    asked.clear()
    later = ANCHOR + timedelta(days=1)
    assert newest_first(ANCHOR, later, 10, _reader(times, asked)) == []
    assert asked == [(later, None)]


def test_without_an_anchor_everything_is_one_read() -> None:
    asked: list[Window] = []
    assert newest_first(None, None, 2, _reader([ANCHOR], asked)) == [ANCHOR]
    assert asked == [(None, None)]


def test_next_span_stays_between_an_hour_and_the_growth() -> None:
    hour = timedelta(hours=1)
    assert next_span(hour, 0, 50) == (hour * GROWTH).total_seconds()
    assert next_span(hour * 10, 1000, 1) == FIRST_WINDOW.total_seconds()
    assert next_span(hour, 1, 1000) == (hour * GROWTH).total_seconds()
    assert next_span(hour * 2, 10, 10) == (hour * 3).total_seconds()
    # the estimate alone (200,000 days x 7,498) would pass the largest timedelta
    assert next_span(timedelta(days=200_000), 1, 4999) == 200_000 * GROWTH * 86_400


def test_one_old_row_then_a_huge_estimate_reads_the_rest() -> None:
    """One row found after the windows grew past centuries: the next estimate is beyond any
    date, so the next read is the open one (it overflowed before)."""
    # the first alone in the window that reaches 9**7 hours (199,290 days) back
    times = [ANCHOR - timedelta(days=d) for d in (100_000, 300_000)]
    asked: list[Window] = []
    assert newest_first(ANCHOR, None, 5000, _reader(times, asked)) == times
    assert _contiguous(asked)
    assert asked[-1][0] is None


def test_the_first_window_spans_about_one_read_of_rows() -> None:
    # 10M rows over 30 days: 122,880 rows (a DuckDB row group) arrive in about 8.8 hours
    span = first_window(10_000_000, timedelta(days=30), 122_880)
    assert span == timedelta(days=30) * 122_880 / 10_000_000
    assert first_window(10, timedelta(days=1), 122_880) == LONGEST_FIRST
    assert first_window(10**9, timedelta(minutes=1), 122_880) == SHORTEST_FIRST
    assert first_window(0, timedelta(days=1), 122_880) == FIRST_WINDOW
    assert first_window(5, timedelta(0), 122_880) == FIRST_WINDOW  # one instant: no rate


def test_the_first_window_reaches_back_as_asked() -> None:
    times = [ANCHOR - timedelta(hours=h) for h in range(0, 40, 2)]
    asked: list[Window] = []
    assert newest_first(ANCHOR, None, 5, _reader(times, asked), timedelta(hours=9)) == times[:5]
    assert asked == [(ANCHOR - timedelta(hours=9), None)]  # one read filled the page
    # near the oldest date there is no room for it: the first read is everything
    early = datetime.min + timedelta(days=1)
    asked = []
    assert newest_first(early, None, 5, _reader([early], asked), LONGEST_FIRST) == [early]
    assert asked == [(None, None)]


class Stored:
    """One store's two calls these tests need: write a batch, read a page."""

    def __init__(self, write: Callable[[AppendBatch], Any], fetch: Callable[..., Any]) -> None:
        self.write = write
        self.fetch_events = fetch


@pytest.fixture(params=["duckdb", "clickhouse"])
def db(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Stored]:
    """The embedded store, and ClickHouse (a fresh database on the tests' server)."""
    if request.param == "duckdb":
        duck = DuckDBStore(data_dir)
        duck.migrate()
        yield Stored(lambda batch: duck.commit_group([batch]), duck.fetch_events)
        duck.close()
        return
    url = fresh_database_url(request.getfixturevalue("clickhouse_url"), prefix="tally_windows")
    house = ClickHouseDB(url)
    house.migrate()
    try:
        yield Stored(house.append, house.fetch_events)
    finally:
        house.close()
        drop_database(url)


def _stored(db: Stored, rng: random.Random, *, future: bool = False) -> list[dict[str, Any]]:
    """Events of three customers (one with a linked device) and of nobody, at times from 2001 to
    now (or, with ``future``, to 2096: a device's wrong clock); several share a time, and without
    ``future`` several sit exactly on a window's edge (the newest event is the first's anchor)."""
    now = datetime.now(UTC).replace(microsecond=0)
    # where the windows start when nothing is found; the first one whatever is found
    edges = [now - FIRST_WINDOW * (1 + GROWTH) ** k for k in range(4)]
    times = [
        now,
        *edges,
        *edges,
        datetime(2001, 1, 1, tzinfo=UTC),
        *(now - timedelta(seconds=rng.randrange(0, 3 * 86_400)) for _ in range(60)),
        *(now - timedelta(days=rng.randrange(0, 400)) for _ in range(60)),
    ]
    if future:
        times += [now + timedelta(days=365 * 70), now + timedelta(minutes=5)]
    who = [("u1", "d1"), (None, "d1"), ("u2", "d2"), (None, "d9"), (None, "d3")]
    events = []
    for i, time in enumerate(times):
        user, device = who[i % len(who)]
        received = time + timedelta(seconds=rng.choice((0, 0, 5)))
        events.append(ev("tick", time=time, received_at=received, user_id=user, device_id=device))
    rng.shuffle(events)  # arrival order is not time order
    # one write: ClickHouse makes a part per month per insert, and 18.16 reading a few hundred
    # small parts with FINAL passes the tests' 2 GB per query (read buffers of every column)
    db.write(batch(*events))
    return [
        {
            "id": e.id,
            "time": e.time,
            "received_at": e.received_at,
            "user": e.user_id,
            "d": e.device_id,
        }
        for e in events
    ]


def _order(event: dict[str, Any]) -> tuple[datetime, datetime, str]:
    return (event["time"], event["received_at"], event["id"])


PERSON = {"u1": {"u1", "d1"}, "d1": {"u1", "d1"}, "u2": {"u2", "d2"}, "d3": {"d3"}}


def _all_pages(db: Stored, user: str | None, limit: int) -> list[str]:
    got: list[str] = []
    before: EventCursor | None = None
    while True:
        page = db.fetch_events(EventQuery(app_id=APP, user=user, before=before, limit=limit))
        got += [row["id"] for row in page]
        if len(page) < limit:
            return got
        last = page[-1]
        before = EventCursor(last["time"], last["received_at"], last["id"])


def _expected(stored: list[dict[str, Any]], user: str | None) -> list[str]:
    ids = PERSON.get(user or "", {user})
    chosen = (e for e in stored if user is None or e["user"] in ids or e["d"] in ids)
    return [e["id"] for e in sorted(chosen, key=_order, reverse=True)]


@pytest.mark.parametrize("user", [None, "u1", "d1", "u2", "d3", "nobody"])
@pytest.mark.parametrize("limit", [1, 7, 500])
def test_pages_match_one_query_over_the_whole_table(
    db: Stored, user: str | None, limit: int
) -> None:
    stored = _stored(db, random.Random(f"{user}-{limit}"))
    assert _all_pages(db, user, limit) == _expected(stored, user)


@pytest.mark.parametrize("user", [None, "u1"])
def test_events_stamped_in_the_future_come_first(db: Stored, user: str | None) -> None:
    stored = _stored(db, random.Random(user), future=True)
    expected = _expected(stored, user)
    assert _all_pages(db, user, 3) == expected
    if user is None:
        newest = max(stored, key=_order)
        assert newest["time"].year > 2090
        assert expected[0] == newest["id"]


def test_since_bounds_the_read(db: Stored) -> None:
    stored = _stored(db, random.Random(3))
    since = datetime.now(UTC) - timedelta(days=2)
    expected = sorted((e for e in stored if e["time"] >= since), key=_order, reverse=True)
    page = db.fetch_events(EventQuery(app_id=APP, since=since, limit=1000))
    assert [row["id"] for row in page] == [e["id"] for e in expected]


def test_an_empty_store_answers_nothing(db: Stored) -> None:
    assert db.fetch_events(EventQuery(app_id=APP, user="u1")) == []
