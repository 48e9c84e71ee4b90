"""The embedded store's own write-ahead journal: acknowledged batches, fsync'd, not yet in DuckDB.

A request is answered once its batch is appended here and synced to disk (a fraction of a
millisecond), not once DuckDB has committed it (a few milliseconds, and now and then a checkpoint of
hundreds). The journal loader moves records into DuckDB behind the acknowledgements, in large
transactions that also record the last record loaded, so a restart loads exactly what is left.

Files: ``<data dir>/journal/<first seq, 20 digits>.log``, each starting with ``MAGIC``, then
records of ``RECORD`` (payload length, CRC-32 of the payload, sequence number) and the payload (a
batch as msgpack, ``store.wire.encode_batch``). A record cut short by a crash was never
acknowledged (the sync had not returned): opening the journal drops it and what follows it.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("tally.store")

MAGIC = b"TALLYJ01"
"""Format marker and version of a journal file; a file with another marker is refused."""
RECORD = struct.Struct("<IIQ")
MIN_FREE_BYTES = 1024 * 1024
"""Below this much free space the store reports itself not ready (``/readyz``)."""
SEGMENT_BYTES = 64 * 1024 * 1024
"""A new file is started once the current one is this large; loaded files are deleted whole."""


class JournalError(Exception):
    """The journal on disk cannot be read (not a torn tail: a foreign or damaged file)."""


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.log"


class Journal:
    """Append, sync, replay and release records. Used from one thread at a time."""

    DIR_NAME = "journal"

    def __init__(self, data_dir: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = data_dir / self.DIR_NAME
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._file: int | None = None
        self._path: Path | None = None
        self._size = 0
        self.last_seq = 0
        """The sequence number of the newest record (0: none ever)."""
        self.loaded_through = 0
        """Set by whoever loads the records: files holding only records up to it are deleted
        when a new file is started."""

    def segments(self) -> list[tuple[int, Path]]:
        """(first seq, path) of every journal file, oldest first."""
        found = []
        for path in self.dir.glob("*.log"):
            try:
                found.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every record with a sequence number above ``after``, oldest first; cuts a torn tail
        off the file it is in. Must run before the first ``append``."""
        for _, path in self.segments():
            for seq, payload in self._read(path):
                self.last_seq = max(self.last_seq, seq)
                if seq > after:
                    yield seq, payload
        self.last_seq = max(self.last_seq, after)

    def _read(self, path: Path) -> Iterator[tuple[int, bytes]]:
        data = path.read_bytes()
        if data[: len(MAGIC)] != MAGIC:
            if not data:  # created, then the process died before the marker reached the disk
                return
            raise JournalError(f"{path} is not a Tally journal file (or of another version)")
        offset = len(MAGIC)
        while offset < len(data):
            end = offset + RECORD.size
            if end > len(data):
                break
            size, crc, seq = RECORD.unpack_from(data, offset)
            payload = data[end : end + size]
            if len(payload) < size or zlib.crc32(payload) != crc:
                break
            yield seq, payload
            offset = end + size
        if offset < len(data):
            log.warning(
                "journal %s: dropping %d bytes of an unfinished record", path, len(data) - offset
            )
            with path.open("r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())

    def append(self, payloads: list[bytes]) -> int:
        """Write records for ``payloads`` and sync them; returns the last one's sequence number.
        On failure nothing of them stays in the file."""
        if self._file is None or self._size >= self.segment_bytes:
            self._start_segment()
            self.release(self.loaded_through)
        assert self._file is not None
        parts = []
        seq = self.last_seq
        for payload in payloads:
            seq += 1
            parts.append(RECORD.pack(len(payload), zlib.crc32(payload), seq))
            parts.append(payload)
        data = b"".join(parts)
        try:
            written = os.write(self._file, data)
            while written < len(data):
                written += os.write(self._file, data[written:])
            os.fdatasync(self._file)
        except BaseException:
            os.ftruncate(self._file, self._size)
            raise
        self._size += len(data)
        self.last_seq = seq
        return seq

    def _start_segment(self) -> None:
        self._close_file()
        path = self.dir / _segment_name(self.last_seq + 1)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, MAGIC)
            os.fsync(fd)
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new file's name is durable too
            finally:
                os.close(dir_fd)
        except BaseException:
            os.close(fd)
            raise
        self._file, self._path, self._size = fd, path, len(MAGIC)

    def free_bytes(self) -> int:
        """Space left for the journal on its filesystem (for unprivileged writers)."""
        stats = os.statvfs(self.dir)
        return stats.f_bavail * stats.f_frsize

    def release(self, through: int) -> int:
        """Delete files whose records are all loaded (sequence numbers up to ``through``); the
        file being written is kept. Returns how many were deleted."""
        segments = self.segments()
        ends = [next_first - 1 for next_first, _ in segments[1:]]
        if self._file is None:  # closed: the newest file may go too once all of it is loaded
            ends.append(self.last_seq)
        deleted = 0
        for (_, path), last in zip(segments, ends, strict=False):
            if last > through or path == self._path:
                break
            path.unlink(missing_ok=True)
            deleted += 1
        return deleted

    def _close_file(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file, self._path = None, None

    def close(self) -> None:
        self._close_file()
