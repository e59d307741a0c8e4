"""The async decorator: like the sync one, but the write happens behind the caller's back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from my_cache._decorator import FunctionCache
from my_cache._flight import AsyncFlights
from my_cache._storages.base import MISSING, WAIT, Deferred
from my_cache._types import CachedFunction

P = ParamSpec("P")
R = TypeVar("R")


async def load(cached: FunctionCache, key: str) -> Any:
    """The stored value or MISSING; a large value is read and unpickled off the event loop.

    As for sync lookups, a store that fails is warned of and makes a miss.
    """
    started = time.perf_counter()
    value = cached.guarded(lambda: cached.store().fetch(key), "my_cache.read_failed", MISSING)
    if isinstance(value, Deferred):
        load = functools.partial(cached.guarded, value.load, "my_cache.read_failed", MISSING)
        value = await asyncio.wrap_future(cached.stor._reader.submit(load))
    if value is not MISSING and cached.stor.is_debug_log:
        cached.debug("my_cache.hit", key, started, source="store")
    return value


async def acquire(cached: FunctionCache, key: str) -> Any:
    """``FunctionCache.acquire`` for a coroutine: each attempt runs in the library's own
    locker threads (quick: one or two round trips), and the waits between them on the event
    loop, so waiting for another process occupies no thread, and no executor of the program's.
    A caller cancelled meanwhile never keeps the lock: an attempt that took it releases it."""
    pool = cached.stor._locker
    pauses = cached.pauses()
    while True:
        attempt = pool.submit(cached.attempt, key)
        try:
            outcome = await asyncio.wrap_future(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda done: _release_if_taken(cached, key, done))
            raise
        if outcome is not WAIT:
            return outcome
        pause = next(pauses, None)
        if pause is None:
            return MISSING  # waited long enough: compute it, unlocked
        await asyncio.sleep(pause)


def _release_if_taken(
    cached: FunctionCache, key: str, attempt: concurrent.futures.Future[Any]
) -> None:
    if not attempt.cancelled() and attempt.exception() is None and attempt.result() is MISSING:
        cached.release(key)  # a no-op unless the attempt took the lock


def async_wrapper(
    cached: FunctionCache, func: Callable[P, Coroutine[Any, Any, R]]
) -> CachedFunction[P, Coroutine[Any, Any, R]]:
    stor = cached.stor
    flights: AsyncFlights[R] = AsyncFlights(cached.function)
    writer = stor._writer

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key = cached.key(args, kwargs)
        cached.calls += 1
        slot = (cached.folder, key)
        value = writer.buffered(slot)
        if value is not MISSING:
            if stor.is_debug_log:
                cached.debug("my_cache.hit", key, time.perf_counter(), source="buffer")
            return value  # type: ignore[no-any-return]

        async def load_or_compute() -> R:
            value = await load(cached, key)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            # A store shared between processes may make the caller wait for another
            # process's computation: that waiting, and the lock's release, happen off the loop.
            shared = cached.waits_for_others()
            if shared:
                value = await acquire(cached, key)
                if value is not MISSING:  # another process computed it meanwhile
                    return value  # type: ignore[no-any-return]
            started = time.perf_counter()
            cached.misses += 1
            try:
                result = await func(*args, **kwargs)
            except BaseException:
                if shared:
                    stor._locker.submit(cached.release, key)
                raise

            def write(queue_depth: int) -> str | None:
                try:
                    return cached.store_result(key, args, kwargs, result, queue_depth=queue_depth)
                finally:
                    if shared:  # once the value is stored, for other processes to find
                        cached.release(key)

            writer.submit(slot, result, write)
            if stor.is_debug_log:
                cached.debug("my_cache.miss", key, started, queue_depth=writer.queue_depth)
            return result

        return await flights.run(key, load_or_compute)

    return cached.controls(wrapper, func)
