"""Versioned schema migrations, shared by the catalog and the event stores.

Each component keeps its version in its own ``tally_schema`` table; migrations are numbered from 1
and each runs once, in order, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Conn = TypeVar("Conn")


@dataclass(frozen=True)
class Migration(Generic[Conn]):
    version: int
    description: str
    apply: Callable[[Conn], None]


def check_sequence(migrations: Sequence[Migration[Conn]]) -> None:
    """Versions must be exactly 1..n, so a gap or a duplicate is caught before anything runs."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order, got {versions}")


def pending(migrations: Sequence[Migration[Conn]], current: int) -> list[Migration[Conn]]:
    check_sequence(migrations)
    latest = len(migrations)
    if current > latest:
        raise RuntimeError(
            f"the schema is at version {current}, newer than this Tally knows ({latest}); "
            "upgrade Tally"
        )
    return list(migrations[current:])
