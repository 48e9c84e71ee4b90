"""Group commit: requests arriving close together share one transaction, and each awaits it.

The first append after an idle spell waits ``max_delay`` for company; while a commit is running,
new appends queue up and go together in the next one. No caller is answered before its rows are
committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tally import metrics
from tally.sink import AppendResult, StoreUnavailable
from tally.store.wire import SealedBatch

CommitFn = Callable[[Sequence[SealedBatch]], list[AppendResult]]


class GroupCommitter:
    def __init__(
        self,
        commit: CommitFn,
        *,
        max_delay: float = 0.002,
        max_rows: int = 50_000,
    ) -> None:
        self._commit = commit
        self.max_delay = max_delay
        self.max_rows = max_rows
        self._queue: list[tuple[SealedBatch, asyncio.Future[AppendResult]]] = []
        self._queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-commit")
        self._closed = False
        self._busy = False

    def _ensure_started(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._full = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def append(self, batch: SealedBatch) -> AppendResult:
        if self._closed:
            raise StoreUnavailable("the store is shutting down")
        self._ensure_started()
        assert self._wakeup is not None and self._full is not None
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        self._queued_rows += batch.rows
        self._wakeup.set()
        if self._queued_rows >= self.max_rows:
            self._full.set()
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None and self._full is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.max_delay > 0 and self._queued_rows < self.max_rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_delay)
            group, self._queue = self._queue, []
            self._queued_rows = 0
            self._wakeup.clear()
            self._full.clear()
            if not group:
                continue
            batches = [batch for batch, _ in group]
            started = time.perf_counter()
            self._busy = True
            try:
                results = await loop.run_in_executor(self._executor, self._commit, batches)
            except Exception as exc:  # the store failed: nothing in this group is acknowledged
                error = StoreUnavailable(f"commit failed: {exc}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self._busy = False
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            metrics.COMMIT_ROWS.observe(sum(b.rows for b in batches))
            metrics.COMMIT_REQUESTS.observe(len(batches))
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closed = True
        if self._task is not None:
            while self._queue or self._busy:
                await asyncio.sleep(0.001)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
