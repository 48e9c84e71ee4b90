"""Identifiers: event ids (time-ordered UUIDv7), app ids and keys."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7) as a string; server-made event ids use it."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))


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
