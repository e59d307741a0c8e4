"""The async decorator: like the sync one, but the write happens behind the caller's back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from my_cache._decorator import FunctionCache, run_refused
from my_cache._flight import AsyncFlights
from my_cache._keys import RefusedCall
from my_cache._storages.base import MISSING, WAIT, Deferred
from my_cache._types import AsyncCachedFunction

P = ParamSpec("P")
R = TypeVar("R")


async def load(cached: FunctionCache, key: str) -> Any:
    """The stored value or MISSING; a large value is read and unpickled off the event loop.

    As for sync lookups, a store that fails is warned of and makes a miss.
    """
    if cached.mapped:  # mapping reads every page once, to check them: off the loop too
        mapped = functools.partial(
            cached.guarded, lambda: cached.store().get_mapped(key), "my_cache.read_failed", MISSING
        )
        return await asyncio.wrap_future(cached.stor._reader.submit(mapped))
    value = cached.guarded(lambda: cached.store().fetch(key), "my_cache.read_failed", MISSING)
    if isinstance(value, Deferred):
        load = functools.partial(cached.guarded, value.load, "my_cache.read_failed", MISSING)
        value = await asyncio.wrap_future(cached.stor._reader.submit(load))
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
) -> AsyncCachedFunction[P, R]:
    stor = cached.stor
    flights: AsyncFlights[R] = AsyncFlights(cached.function)
    writer = stor._writer

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            key = cached.key(args, kwargs)
        except RefusedCall:
            return await run_refused(func, args, kwargs)
        cached.calls += 1
        slot = (cached.folder, key)
        value = writer.buffered(slot)
        if value is not MISSING:
            if stor.is_debug_log:  # the hit path: no clock read, no call, unless logging
                cached.hit(key, time.perf_counter(), "buffer")
            return value  # type: ignore[no-any-return]
        if not stor.enabled:  # caching is off: every call runs, none waits for another
            cached.misses += 1
            return await func(*args, **kwargs)
        started = time.perf_counter()

        async def load_or_compute() -> R:
            value = await load(cached, key)
            if value is not MISSING:
                cached.hit(key, started, "store")
                return value  # type: ignore[no-any-return]
            # A store shared between processes may make the caller wait for another
            # process's computation: that waiting, and the lock's release, happen off the loop.
            shared = cached.waits_for_others()
            if shared:
                value = await acquire(cached, key)
                if value is not MISSING:  # another process computed it meanwhile
                    cached.hit(key, started, "other process")
                    return value  # type: ignore[no-any-return]
            try:
                return await run_and_store(key, args, kwargs, release=shared)
            except BaseException:
                if shared:
                    stor._locker.submit(cached.release, key)
                raise

        return await flights.run(
            key, load_or_compute, lambda: cached.hit(key, started, "other task")
        )

    async def run_and_store(
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        release: bool,
        replacing: bool = False,
    ) -> R:
        """Run the coroutine; its result is written in the background (and the key's lock,
        if ``release``, released once it is stored, for other processes to find it). If
        ``replacing``, writes of the key still queued land first, and a result that cannot
        be stored deletes the entry."""
        since = stor.redirections
        started = time.perf_counter()
        cached.misses += 1
        result = await func(*args, **kwargs)
        if not stor.enabled:  # a refresh while caching is off (or turned off meanwhile)
            if release:
                stor._locker.submit(cached.release, key)
            return result
        if replacing:  # a queued older write would land after ours and undo the refresh
            await writer.settled()

        def write(queue_depth: int) -> str | None:
            try:
                return cached.store_result(
                    key,
                    args,
                    kwargs,
                    result,
                    since=since,
                    replacing=replacing,
                    queue_depth=queue_depth,
                )
            finally:
                if release:
                    cached.release(key)

        writer.submit((cached.folder, key), result, write)
        if stor.is_debug_log:
            cached.debug("my_cache.miss", key, started, queue_depth=writer.queue_depth)
        return result

    async def is_cached(*args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether a call with these arguments would be a hit now (a stored value is read
        and verified; nothing is counted or logged as a hit)."""
        key = cached.key(args, kwargs)
        if writer.buffered((cached.folder, key)) is not MISSING:
            return True
        return await load(cached, key) is not MISSING

    async def refresh(*args: P.args, **kwargs: P.kwargs) -> R:
        """Await the coroutine whatever is stored, store its result in place of the entry
        (in the background, as a miss's), and return it; counted as a call and a miss. Runs
        after a computation of the same call under way in this event loop."""
        try:
            key = cached.key(args, kwargs)
        except RefusedCall:
            return await run_refused(func, args, kwargs)
        cached.calls += 1
        return await flights.run_fresh(
            key, lambda: run_and_store(key, args, kwargs, release=False, replacing=True)
        )

    async def store(value: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as the result of this call, as if the coroutine had returned it;
        written when this returns; CacheStoreError if the store cannot."""

        key = cached.key(args, kwargs)

        async def put() -> R:
            await writer.settled()
            await asyncio.wrap_future(writer.run(lambda: cached.put(key, args, kwargs, value)))
            return value

        await flights.run_fresh(key, put)

    return cast(
        AsyncCachedFunction[P, R],
        cached.controls(wrapper, func, is_cached=is_cached, refresh=refresh, store=store),
    )
