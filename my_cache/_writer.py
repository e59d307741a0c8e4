"""Write-behind for cache_async: results are pickled and written on a thread pool.

Until its write lands, a result is served from an in-memory buffer; once written, the
buffer lets go of it. Writes are tracked so that ``join()`` can wait for them and report
those that failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from my_cache import _log
from my_cache._fork import renew_after_fork
from my_cache._storages.base import MISSING
from my_cache._threads import StartedPool

T = TypeVar("T")

_REASONS_KEPT = 5

Slot = tuple[str, str]
"""Where a buffered result belongs: its folder and key."""
WriteJob = Callable[[int], str | None]
"""Writes one result, given how many writes are queued behind it: None when written, else
why not (the caller has the value already)."""


class CacheWriteError(Exception):
    """Raised by ``CacheStor.join()`` when results could not be written; callers had them."""


class BackgroundWriter:
    """A thread pool for write jobs, the buffer of results not yet written, and their
    failures. It knows nothing of what it writes to: each job does its own writing.

    Safe to use from any thread and any event loop. The pool's threads are joined at
    interpreter exit after the queue drains, so a program that never calls ``join()`` or
    ``close()`` still leaves every submitted result on disk (a killed process does not).
    """

    def __init__(self, max_workers: int, is_debug_log: Callable[[], bool]) -> None:
        self._is_debug_log = is_debug_log
        self._lock = threading.Lock()
        self._pool = StartedPool(max_workers, "my_cache-writer")
        self._pending: set[concurrent.futures.Future[None]] = set()
        # Counted before the pool gets the write, so a write already running is never
        # missing from the depth it reports (its future joins _pending only after submit).
        self._queued = 0
        self._buffer: dict[tuple[str, str], Any] = {}
        self._failure_count = 0
        self._failure_reasons: list[str] = []
        renew_after_fork(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's writes are the parent's to finish and report
        (their threads are not here); the child's own start afresh."""
        self._lock = threading.Lock()
        self._pending = set()
        self._queued = 0
        self._buffer = {}
        self._failure_count, self._failure_reasons = 0, []

    @property
    def queue_depth(self) -> int:
        """Writes submitted and not yet finished."""
        return self._queued

    def buffered(self, slot: Slot) -> Any:
        """A result whose write has not landed yet, or MISSING."""
        return self._buffer.get(slot, MISSING)

    def submit(self, slot: Slot, value: Any, write: WriteJob) -> None:
        """Buffer ``value`` under ``slot`` and queue ``write``; returns at once."""
        with self._lock:
            self._buffer[slot] = value
            self._queued += 1
            future = self._pool.submit(self._run, slot, value, write)
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def run(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``job`` on the pool, unbuffered and untracked: its outcome is the future's."""
        return self._pool.submit(job)

    async def settled(self) -> None:
        """Wait for every write submitted so far, without raising their failures (those
        stay for ``join()``)."""
        with self._lock:
            waiting = list(self._pending)
        if waiting:
            await asyncio.wait([asyncio.wrap_future(f) for f in waiting])

    def _run(self, slot: Slot, value: Any, write: WriteJob) -> None:
        try:
            failure = write(self.queue_depth - 1)
        finally:
            with self._lock:
                if self._buffer.get(slot) is value:
                    del self._buffer[slot]
        if failure is not None:
            with self._lock:
                self._failure_count += 1
                if len(self._failure_reasons) < _REASONS_KEPT:
                    self._failure_reasons.append(failure)

    def _finished(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
            self._queued -= 1

    async def join(self) -> None:
        """Wait for every write submitted so far; raise CacheWriteError if any failed."""
        started = time.perf_counter()
        with self._lock:
            waiting = list(self._pending)
        if waiting:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in waiting))
        self._flushed(len(waiting), started)
        self._raise_failures()

    def flush(self) -> None:
        """Block until every write submitted so far has finished (failures are kept)."""
        started = time.perf_counter()
        with self._lock:
            waiting = list(self._pending)
        concurrent.futures.wait(waiting)
        self._flushed(len(waiting), started)

    def close(self) -> None:
        """Flush, then stop the pool's threads; a later write starts a new pool."""
        self.flush()
        self._pool.shutdown()

    def _flushed(self, writes: int, started: float) -> None:
        if writes and self._is_debug_log():
            _log.debug(
                "my_cache.flush",
                writes=writes,
                queue_depth=self.queue_depth,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    def _raise_failures(self) -> None:
        with self._lock:
            count, reasons = self._failure_count, self._failure_reasons
            self._failure_count, self._failure_reasons = 0, []
        if count:
            shown = "; ".join(reasons) + ("; …" if count > len(reasons) else "")
            raise CacheWriteError(f"{count} cached result(s) could not be written: {shown}")
