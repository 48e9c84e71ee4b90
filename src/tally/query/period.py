"""A query's period in its time zone, and the buckets that divide it.

Day, week and month buckets start at local midnight, so across a daylight-saving change a day is
23 or 25 hours long; hour buckets are real hours (the repeated hour of a fall-back night is two
buckets, and zones offset by half an hour get hours starting at :30 UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tally.query.model import MAX_BUCKETS, Interval, QueryError, parse_bound

_HOUR = timedelta(hours=1)
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
"""A period (and the one it is compared with) lies between these: times the stores hold (the
ClickHouse store counts microseconds from 1970, unsigned)."""


@cache
def _zone_names() -> frozenset[str]:
    """IANA names the stores know. The zone files also hold names the stores do not (``localtime``,
    ``posixrules``, ``right/...``, ``posix/...``) and paths; the zone is sent to the store as a
    bound parameter, so only its meaning could go wrong, never the SQL."""
    return frozenset(available_timezones() - {"localtime"})


def zone(name: str) -> ZoneInfo:
    """The query's time zone; every reader of a ``tz`` checks it here."""
    if name not in _zone_names():
        raise QueryError("invalid_timezone", f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError("invalid_timezone", f"unknown time zone {name!r}") from None


def _instant(name: str, text: str, tz: ZoneInfo) -> datetime:
    bound = parse_bound(name, text)
    try:
        if isinstance(bound, str):
            local = datetime.combine(date.fromisoformat(bound), datetime.min.time(), tz)
            instant = local.astimezone(UTC)
        else:
            instant = bound.astimezone(UTC)
    except OverflowError:
        instant = EARLIEST - _HOUR  # beyond what a datetime holds: out of range below
    if not EARLIEST <= instant <= LATEST:
        raise QueryError(
            "invalid_query", f"{name}: {text!r} is not between {EARLIEST.year} and {LATEST.year}"
        )
    return instant


def _local_start(local: datetime, interval: Interval) -> datetime:
    """The naive local start of the bucket holding ``local`` (naive local time)."""
    if interval is Interval.HOUR:
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval is Interval.WEEK:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MONTH:
        return day.replace(day=1)
    return day


def next_bucket_start(start: datetime, interval: Interval) -> datetime:
    """The naive local start of the bucket after the one starting at ``start`` (not hours)."""
    if interval is Interval.WEEK:
        return start + timedelta(days=7)
    if interval is Interval.MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


@dataclass(frozen=True)
class Bucket:
    key: str
    """How the SQL names the bucket: its naive start, local for day/week/month, UTC for hour."""
    start: datetime
    """Aware, in the query's zone."""

    @property
    def t(self) -> str:
        return self.start.isoformat()


@dataclass(frozen=True)
class Period:
    start: datetime
    """Aware UTC, inclusive."""
    end: datetime
    """Aware UTC, exclusive."""
    tz: ZoneInfo
    interval: Interval

    @classmethod
    def of(cls, from_: str, to: str, tz_name: str, interval: Interval) -> Period:
        tz = zone(tz_name)
        start, end = _instant("from", from_, tz), _instant("to", to, tz)
        if end <= start:
            raise QueryError("invalid_query", "to must be after from")
        period = cls(start, end, tz, interval)
        if period.bucket_count() > MAX_BUCKETS:
            raise QueryError(
                "too_many_buckets",
                f"the period has more than {MAX_BUCKETS} {interval} buckets; "
                "use a longer interval or a shorter period",
            )
        return period

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        if self.start - (self.end - self.start) < EARLIEST:
            raise QueryError(
                "invalid_query",
                f"the period before this one (compare) starts before {EARLIEST.year}",
            )
        return Period(self.start - (self.end - self.start), self.start, self.tz, self.interval)

    def bucket_count(self) -> int:
        span = self.end - self.start
        per = {
            Interval.HOUR: _HOUR,
            Interval.DAY: timedelta(days=1),
            Interval.WEEK: timedelta(days=7),
            Interval.MONTH: timedelta(days=28),
        }[self.interval]
        return span // per + 2

    def buckets(self) -> list[Bucket]:
        if self.interval is Interval.HOUR:
            local = self.start.astimezone(self.tz)
            first = local - (
                local.replace(tzinfo=None) - _local_start(local.replace(tzinfo=None), Interval.HOUR)
            )
            instant = first.astimezone(UTC)
            out = []
            while instant < self.end:
                naive = instant.replace(tzinfo=None)
                out.append(Bucket(naive.isoformat(sep=" "), instant.astimezone(self.tz)))
                instant += _HOUR
            return out
        local_end = self.end.astimezone(self.tz).replace(tzinfo=None)
        start = _local_start(self.start.astimezone(self.tz).replace(tzinfo=None), self.interval)
        out = []
        while start < local_end:
            out.append(Bucket(start.isoformat(sep=" "), start.replace(tzinfo=self.tz)))
            start = next_bucket_start(start, self.interval)
        return out
