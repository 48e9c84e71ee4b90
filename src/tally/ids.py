"""Identifiers: event ids (time-ordered UUIDv7), app ids and keys."""

from __future__ import annotations

import hashlib
import random
import secrets
import time

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_LOW_62 = (1 << 62) - 1
_VARIANT_NIBBLE = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""A random hex digit made into the nibble holding the RFC 9562 variant bits (``10``)."""


def uuid7s(count: int) -> list[str]:
    """``count`` time-ordered UUIDs (RFC 9562 version 7) as strings; server-made event ids.

    48 bits of Unix milliseconds (shared: one request's ids are made at once), the version, then
    74 random bits. Made ``count`` at a time from one draw of random bytes, because it is on the
    ingest hot path: ~0.5 µs an id against ~1.1 µs for one at a time. The random bits come from
    ``random`` (seeded from the OS in every process, reseeded after a fork): an id must be unique,
    not secret, and ``os.urandom`` costs a system call."""
    head = f"{time.time_ns() // 1_000_000:012x}"
    prefix = f"{head[:8]}-{head[8:]}-7"
    text = random.randbytes(10 * count).hex()  # 20 random hex digits an id, 19 used
    variant = _VARIANT_NIBBLE
    return [
        f"{prefix}{text[i : i + 3]}-{variant[text[i + 3]]}{text[i + 4 : i + 7]}-"
        f"{text[i + 7 : i + 19]}"
        for i in range(0, 20 * count, 20)
    ]


def uuid7() -> str:
    """One time-ordered UUID, the same as ``uuid7s`` makes (~1.1 µs, where ``uuid7s(1)`` costs
    2): the 74 random bits drawn as an integer, the 128 bits formatted at once."""
    bits = random.getrandbits(74)
    value = (
        (time.time_ns() // 1_000_000) << 80
        | _VERSION_AND_VARIANT
        | (bits >> 62) << 64
        | (bits & _LOW_62)
    )
    text = value.to_bytes(16, "big").hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_app_id() -> str:
    """24 hex characters, the shape Countly's read API expects of an ``app_id``."""
    return secrets.token_hex(12)


def new_app_key() -> str:
    """40 hex characters, the shape of a Countly app key; public, embedded in browsers and apps."""
    return secrets.token_hex(20)


def new_api_key() -> str:
    return secrets.token_hex(12)


def new_api_secret() -> str:
    return secrets.token_urlsafe(32)


def dedup_key(app_id: str, event_id: str) -> tuple[int, int]:
    """A 128-bit digest of (app, client event id), split in two for the dedup index."""
    digest = hashlib.blake2b(f"{app_id}\x00{event_id}".encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")
