"""Property values checked against, and converted to, the type their definition gives."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

from tally.catalog.definitions import PropertyType
from tally.pipeline.timeparse import TimeError, parse_instant

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class Mismatch(Exception):
    """The value does not have the type and cannot be converted to it without loss."""


EXACT_TYPES: dict[type, PropertyType] = {
    str: PropertyType.STRING,
    int: PropertyType.NUMBER,
    float: PropertyType.NUMBER,
    bool: PropertyType.BOOLEAN,
    list: PropertyType.LIST,
    dict: PropertyType.OBJECT,
}
"""What decoded JSON holds, looked up in one step (every property of every event comes here)."""


def type_of(value: Any) -> PropertyType | None:
    """The type a first-seen value gets (None for null: wait for a value)."""
    exact = EXACT_TYPES.get(type(value))
    if exact is not None:
        return exact
    if value is None:
        return None
    if isinstance(value, bool):
        return PropertyType.BOOLEAN
    if isinstance(value, int | float):
        return PropertyType.NUMBER
    if isinstance(value, list):
        return PropertyType.LIST
    if isinstance(value, dict):
        return PropertyType.OBJECT
    return PropertyType.STRING


def conforms(value: Any, expected: PropertyType) -> bool:
    if value is None:
        return True
    if expected is PropertyType.DATETIME:
        return isinstance(value, str) and _canonical_instant(value) == value
    return type_of(value) is expected


def _canonical_instant(value: str | int | float) -> str | None:
    """The one form datetimes are stored in: ISO 8601 in UTC with a ``Z``."""
    try:
        instant = parse_instant(value)
    except TimeError:
        return None
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def coerce(value: Any, expected: PropertyType) -> Any:
    """``value`` as ``expected``, or ``Mismatch``."""
    kind = type_of(value)
    if expected is PropertyType.STRING and kind in (PropertyType.NUMBER, PropertyType.BOOLEAN):
        return ("true" if value else "false") if isinstance(value, bool) else _number_text(value)
    if expected is PropertyType.NUMBER and kind is PropertyType.STRING:
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)  # exact, however long
        try:
            number = float(text)
        except ValueError:
            raise Mismatch(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise Mismatch(f"{value!r} is not a finite number")
        return number
    if expected is PropertyType.BOOLEAN:
        if kind is PropertyType.STRING and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if kind is PropertyType.NUMBER and value in (0, 1):
            return bool(value)
    if expected is PropertyType.DATETIME and kind in (PropertyType.STRING, PropertyType.NUMBER):
        canonical = _canonical_instant(value)
        if canonical is None:
            raise Mismatch(f"{value!r} is not an ISO 8601 time or an epoch number")
        return canonical
    if expected is PropertyType.LIST and kind in (
        PropertyType.STRING,
        PropertyType.NUMBER,
        PropertyType.BOOLEAN,
    ):
        return [value]
    raise Mismatch(f"a {kind} cannot be converted to a {expected}")


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)
