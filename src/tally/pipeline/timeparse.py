"""Reading an event time from the forms clients send: epoch seconds or milliseconds, or ISO 8601."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec

# Epoch values above this are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 1e11
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


class TimeError(ValueError):
    pass


def parse_instant(value: object) -> datetime:
    """Return an aware UTC datetime for an epoch number (s or ms) or an ISO 8601 string."""
    if isinstance(value, bool):
        raise TimeError(f"time must be a number or an ISO 8601 string, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise TimeError("time is not a finite number")
        if seconds > _MS_THRESHOLD:
            seconds /= 1000.0
        try:
            instant = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise TimeError(f"time {value!r} is out of range") from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_instant(float(text))
        try:
            instant = msgspec.convert(text, datetime)
        except msgspec.ValidationError as exc:
            raise TimeError(f"time {value!r} is not ISO 8601 or an epoch number") from exc
        try:
            instant = (
                instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
            )
        except OverflowError as exc:  # 0001-01-01T00:00+01:00, 9999-12-31T23:59-01:00
            raise TimeError(f"time {value!r} is out of range") from exc
    elif isinstance(value, datetime):
        instant = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        raise TimeError(f"time must be a number or an ISO 8601 string, got {type(value).__name__}")
    if instant < _EARLIEST:
        raise TimeError(f"time {value!r} is before 2000-01-01")
    return instant


def correct_skew(event_time: datetime, sent_at: datetime, received_at: datetime) -> datetime:
    """Segment's rule: time = received_at - (sent_at - event_time), all from the client's clock.
    A correction past the calendar's ends (year 1 or 9999, from absurd client clocks) is ignored:
    the event time stays as sent."""
    try:
        return received_at - (sent_at - event_time)
    except OverflowError:
        return event_time


FUTURE_TOLERANCE = timedelta(minutes=1)
