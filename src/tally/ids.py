"""Identifiers: event ids (time-ordered UUIDv7), app ids and keys."""

from __future__ import annotations

import hashlib
import random
import secrets
import time

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_LOW_62 = (1 << 62) - 1


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7) as a string; server-made event ids use it.

    48 bits of Unix milliseconds, then the version, 12 random bits, the variant and 62 random
    bits, formatted by hand (one per event, so it is on the ingest hot path). The random bits come
    from ``random`` (seeded from the OS in every process, reseeded after a fork): an id must be
    unique, not secret, and ``os.urandom`` costs a system call per id."""
    bits = random.getrandbits(74)
    value = (
        (time.time_ns() // 1_000_000) << 80
        | _VERSION_AND_VARIANT
        | (bits >> 62) << 64
        | (bits & _LOW_62)
    )
    text = value.to_bytes(16, "big").hex()  # ~0.3 µs faster than format(value, "032x")
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
