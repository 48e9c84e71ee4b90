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
from tally.store.wire import encode_batch

_HI, _LO = -2, -1
"""Where an event row carries its dedup digest (``store.rows.EventRow``)."""


class JournalWriter:
    def __init__(self, journal: Journal, loader: JournalLoader, recent: RecentIds) -> None:
        self.journal = journal
        self.loader = loader
        self.recent = recent

    def write_group(self, batches: Sequence[AppendBatch]) -> list[AppendResult]:
        self.loader.wait_for_room()
        seen: set[int] = set()
        kept: list[AppendBatch] = []
        results: list[AppendResult] = []
        for batch in batches:
            first = self._first_seen(batch, seen)
            kept.append(first)
            results.append(
                AppendResult(
                    accepted=len(first.events), duplicates=len(batch.events) - len(first.events)
                )
            )
        records = [batch for batch in kept if not batch.empty]
        if records:
            payloads = [encode_batch(batch) for batch in records]
            last = self.journal.append(payloads)
            first_seq = last - len(records) + 1
            self.loader.offer(
                [
                    Record(seq, payload, max(batch.rows, 1))
                    for seq, payload, batch in zip(
                        range(first_seq, last + 1), payloads, records, strict=True
                    )
                ]
            )
        for key in seen:  # only once durable: a failed append must not make a retry a duplicate
            self.recent.add(key)
        return results

    def _first_seen(self, batch: AppendBatch, seen: set[int]) -> AppendBatch:
        """The batch without events whose client id was seen lately or earlier in the group."""
        events = []
        for row in batch.events:
            hi = row[_HI]
            if hi is None:
                events.append(row)
                continue
            key = RecentIds.key(hi, row[_LO])
            if key in seen or key in self.recent:
                continue
            seen.add(key)
            events.append(row)
        if len(events) == len(batch.events):
            return batch
        return AppendBatch(events=events, failed=batch.failed, discarded=batch.discarded)
