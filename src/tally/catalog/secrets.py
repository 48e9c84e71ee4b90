"""API secrets: hashed with argon2 at rest, and verified without paying argon2 on every request."""

from __future__ import annotations

import hmac
import os
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


class VerifiedSecrets:
    """Remembers (stored hash, secret) pairs that passed argon2, as a keyed digest.

    argon2 is slow on purpose (tens of ms); reads authenticate on every request, so after one
    successful verification the pair is remembered by an HMAC under a per-process random key and
    compared in constant time.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = os.urandom(32)
        self._seen: dict[str, bytes] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def _digest(self, stored_hash: str, secret: str) -> bytes:
        return hmac.new(self._key, f"{stored_hash}\x00{secret}".encode(), "sha256").digest()

    def verify(self, stored_hash: str, secret: str) -> bool:
        digest = self._digest(stored_hash, secret)
        known = self._seen.get(stored_hash)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        if not verify_secret(stored_hash, secret):
            return False
        with self._lock:
            if len(self._seen) >= self._max:
                self._seen.clear()
            self._seen[stored_hash] = digest
        return True
