"""The analytics query model: what ``POST /api/v1/apps/{app_id}/query`` accepts (docs/queries.md).

Queries are decoded with msgspec into these types (a tagged union on ``kind``), then checked with
``check`` for what types cannot say (the period, the time zone, the fields).
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Annotated, Final

import msgspec

ANY_EVENT: Final = "*"
"""A trends series over every event of the app (``{"event": "*"}``)."""
COLUMN_FIELDS: Final = {
    "event": "name",
    "user": "user_id",
    "device": "device_id",
    "session": "session_id",
    "label": "label",
    "protocol": "protocol",
    "sdk_name": "sdk_name",
    "sdk_version": "sdk_version",
    "browser": "browser",
    "os": "os",
    "device_type": "device_type",
    "url": "url",
    "referrer": "referrer",
    "locale": "locale",
    "timezone": "timezone",
    "country_code": "country_code",
    "city": "city",
}
"""Fields a filter or breakdown may name besides ``properties.<name>``, and their columns."""
PROPERTY_PREFIX: Final = "properties."
MAX_BUCKETS: Final = 10_000
MAX_BREAKDOWN: Final = 100


class Op(enum.StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    CONTAINS = "contains"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IS_SET = "is_set"
    IS_NOT_SET = "is_not_set"


class Measure(enum.StrEnum):
    COUNT = "count"
    SUM = "sum"
    DUR = "dur"
    AVG_SUM = "avg_sum"
    AVG_DUR = "avg_dur"
    USERS = "users"


class Interval(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


Scalar = str | int | float | bool


class Filter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    field: str
    op: Op
    value: Scalar | list[Scalar] | None = None


class Breakdown(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    field: str
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BREAKDOWN)] = 10


class SeriesSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    event: str
    measure: Measure = Measure.COUNT
    filters: list[Filter] = msgspec.field(default_factory=list)


class _Common(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    from_: str = msgspec.field(name="from")
    to: str
    tz: str = "UTC"
    filters: list[Filter] = msgspec.field(default_factory=list)


class TrendsQuery(_Common, tag="trends"):
    events: Annotated[list[SeriesSpec], msgspec.Meta(min_length=1, max_length=20)]
    interval: Interval = Interval.DAY
    breakdown: Breakdown | None = None
    compare: bool = False


class UsersQuery(_Common, tag="users"):
    interval: Interval = Interval.DAY
    """day, week or month (daily, weekly, monthly active users)."""


class SessionsQuery(_Common, tag="sessions"):
    interval: Interval = Interval.DAY


class FunnelStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    event: str
    filters: list[Filter] = msgspec.field(default_factory=list)


class WindowUnit(enum.StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


class Window(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    value: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    unit: WindowUnit = WindowUnit.DAY

    @property
    def seconds(self) -> int:
        return self.value * {"minute": 60, "hour": 3600, "day": 86400}[self.unit]


class FunnelQuery(_Common, tag="funnel"):
    steps: Annotated[list[FunnelStep], msgspec.Meta(min_length=2, max_length=20)]
    window: Window = msgspec.field(default_factory=lambda: Window(value=1))
    breakdown: Breakdown | None = None


class RetentionQuery(_Common, tag="retention"):
    start_event: FunnelStep
    return_event: FunnelStep
    interval: Interval = Interval.DAY
    """day or week."""
    periods: Annotated[int, msgspec.Meta(ge=1, le=100)] = 7


Query = TrendsQuery | UsersQuery | SessionsQuery | FunnelQuery | RetentionQuery


class QueryError(ValueError):
    """A query that cannot be answered, with a stable code (``invalid_query``...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_query(body: bytes) -> Query:
    try:
        return msgspec.json.decode(body, type=Query)
    except msgspec.ValidationError as exc:
        raise QueryError("invalid_query", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise QueryError("invalid_query", f"the query is not valid JSON: {exc}") from None


def property_name(field: str) -> str | None:
    """``plan`` for ``properties.plan``; None for a column field; QueryError otherwise."""
    if field.startswith(PROPERTY_PREFIX) and len(field) > len(PROPERTY_PREFIX):
        return field[len(PROPERTY_PREFIX) :]
    if field in COLUMN_FIELDS:
        return None
    known = ", ".join(COLUMN_FIELDS)
    raise QueryError(
        "invalid_query", f"unknown field {field!r}: use properties.<name> or one of {known}"
    )


def _check_number(where: str, value: Scalar) -> None:
    """A number must be a finite double: the stores compare numbers as doubles (and a DuckDB
    parameter cannot be an integer beyond 128 bits)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise QueryError("invalid_query", f"{where}: {value!r} is out of a number's range")


def check_filter(where: str, item: Filter) -> None:
    property_name(item.field)
    value = item.value
    for one in value if isinstance(value, list) else [value]:
        if one is not None:
            _check_number(where, one)
    if item.op in (Op.IS_SET, Op.IS_NOT_SET):
        return
    if value is None:
        raise QueryError("invalid_query", f"{where}: {item.op} needs a value")
    if item.op is Op.IN:
        if not isinstance(value, list) or not value:
            raise QueryError("invalid_query", f"{where}: in needs a non-empty list")
        return
    if isinstance(value, list):
        raise QueryError("invalid_query", f"{where}: only in takes a list")
    if item.op is Op.CONTAINS and not isinstance(value, str):
        raise QueryError("invalid_query", f"{where}: contains needs a string")
    if item.op in (Op.GT, Op.GTE, Op.LT, Op.LTE) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise QueryError("invalid_query", f"{where}: {item.op} needs a number")


def filters_of(query: Query) -> list[tuple[str, Filter]]:
    """Every filter of the query, with where it is (for messages)."""
    found = [(f"filters[{i}]", f) for i, f in enumerate(query.filters)]
    if isinstance(query, TrendsQuery):
        for s, spec in enumerate(query.events):
            found += [(f"events[{s}].filters[{i}]", f) for i, f in enumerate(spec.filters)]
    if isinstance(query, FunnelQuery):
        for s, step in enumerate(query.steps):
            found += [(f"steps[{s}].filters[{i}]", f) for i, f in enumerate(step.filters)]
    if isinstance(query, RetentionQuery):
        for key in ("start_event", "return_event"):
            step = getattr(query, key)
            found += [(f"{key}.filters[{i}]", f) for i, f in enumerate(step.filters)]
    return found


def fields_used(query: Query) -> list[str]:
    fields = [f.field for _, f in filters_of(query)]
    breakdown = getattr(query, "breakdown", None)
    if breakdown is not None:
        fields.append(breakdown.field)
    return fields


def parse_bound(name: str, text: str) -> datetime | str:
    """A date (``2026-03-01``, returned as text: midnight in the query's zone) or an aware
    date-time."""
    if len(text) == 10:
        try:
            datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            raise QueryError("invalid_query", f"{name}: {text!r} is not a date") from None
        return text
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError("invalid_query", f"{name}: {text!r} is not ISO 8601") from None
    if value.tzinfo is None:
        raise QueryError("invalid_query", f"{name}: a date-time needs its offset ({text!r})")
    return value
