"""Server-made event ids: RFC 9562 version 7 UUIDs, ordered by time."""

from __future__ import annotations

import time
import uuid

from tally.ids import uuid7


def test_uuid7_is_a_version_7_uuid_ordered_by_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(text) for text in ids]
    assert all(str(u) == text for u, text in zip(parsed, ids, strict=True))
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    stamps = [u.int >> 80 for u in parsed]
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)
    assert len(set(ids)) == len(ids)
