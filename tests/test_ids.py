"""Server-made event ids: RFC 9562 version 7 UUIDs, ordered by time."""

from __future__ import annotations

import os
import time
import uuid

from tally.ids import uuid7, uuid7s


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


def test_uuid7s_makes_a_requests_ids_at_once_sharing_the_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = uuid7s(5000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(text) for text in ids]
    assert all(str(u) == text for u, text in zip(parsed, ids, strict=True))
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert len({u.int >> 80 for u in parsed}) == 1
    assert before <= parsed[0].int >> 80 <= after
    assert len(set(ids)) == len(ids)
    # every one of the 74 random bits varies (the two variant bits excepted)
    random_bits = [u.int & ~(((1 << 48) - 1) << 80 | 0xF << 76 | 0b11 << 62) for u in parsed]
    varying = 0
    for value in random_bits:
        varying |= value ^ random_bits[0]
    assert bin(varying).count("1") == 74
    assert uuid7s(0) == []


def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    """HTTP workers are forked; each must draw other random bits than its parent."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its ids and leave at once
        os.close(read_end)
        os.write(write_end, " ".join(uuid7() for _ in range(100)).encode())
        os._exit(0)
    os.close(write_end)
    mine = {uuid.UUID(text).int & ((1 << 74) - 1) for text in (uuid7() for _ in range(100))}
    with os.fdopen(read_end, "rb") as pipe:
        theirs = {uuid.UUID(text).int & ((1 << 74) - 1) for text in pipe.read().decode().split()}
    os.waitpid(pid, 0)
    assert len(theirs) == 100
    assert not mine & theirs
