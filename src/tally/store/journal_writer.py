"""The acknowledgement step of the embedded store: a group of batches into the journal, synced.

Called by the group committer on its thread, one group at a time. Events whose client id was seen
lately (``RecentIds``) are answered as duplicates and not journaled; the rest is appended and
synced, then handed to the loader. Nothing is answered before the sync returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from tally.sink import AppendBatch, AppendResult
from tally.store.journal import Journal
from tally.store.journal_loader import JournalLoader, Record
from tally.store.recent_ids import RecentIds
from tally.store.wire import SealedBatch, encode_batch


class JournalWriter:
    def __init__(self, journal: Journal, loader: JournalLoader, recent: RecentIds) -> None:
        self.journal = journal
        self.loader = loader
        self.recent = recent

    def write_group(self, batches: Sequence[SealedBatch]) -> list[AppendResult]:
        self.loader.wait_for_room()
        seen: set[int] = set()
        records: list[tuple[bytes, int]] = []
        results: list[AppendResult] = []
        for sealed in batches:
            payload, rows, duplicates = self._first_seen(sealed, seen)
            results.append(AppendResult(accepted=sealed.events - duplicates, duplicates=duplicates))
            if payload is not None:
                records.append((payload, rows))
        if records:
            last = self.journal.append([payload for payload, _ in records])
            first_seq = last - len(records) + 1
            self.loader.offer(
                [
                    Record(seq, payload, max(rows, 1))
                    for seq, (payload, rows) in zip(
                        range(first_seq, last + 1), records, strict=True
                    )
                ]
            )
        for key in seen:  # only once durable: a failed append must not make a retry a duplicate
            self.recent.add(key)
        return results

    def _first_seen(self, sealed: SealedBatch, seen: set[int]) -> tuple[bytes | None, int, int]:
        """The payload to journal (None: nothing left), its rows, and how many of its events
        were seen lately or earlier in the group. Only a batch that has duplicates is decoded."""
        duplicate_rows: set[int] = set()
        for index, hi, lo in sealed.keys:
            key = RecentIds.key(hi, lo)
            if key in seen or key in self.recent:
                duplicate_rows.add(index)
            else:
                seen.add(key)
        if not duplicate_rows:
            return (None if sealed.empty else sealed.payload), sealed.rows, 0
        batch = sealed.batch
        events = [row for i, row in enumerate(batch.events) if i not in duplicate_rows]
        kept = AppendBatch(events=events, failed=batch.failed, discarded=batch.discarded)
        if kept.empty:
            return None, 0, len(duplicate_rows)
        return encode_batch(kept), kept.rows, len(duplicate_rows)
