"""The async decorator: like the sync one, but the write happens behind the caller's back."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from my_cache._decorator import CachedFunction
from my_cache._flight import AsyncFlights
from my_cache._storages.base import MISSING, Deferred, FolderStore

if TYPE_CHECKING:
    from my_cache.cache_stor import CacheStor

P = ParamSpec("P")
R = TypeVar("R")


async def load(cached: CachedFunction, store: FolderStore, key: str) -> Any:
    """The stored value or MISSING; a large value is read and unpickled off the event loop."""
    started = time.perf_counter()
    value = store.fetch(key)
    if isinstance(value, Deferred):
        value = await asyncio.wrap_future(cached.stor._reader.submit(value.load))
    if value is not MISSING and cached.stor.is_debug_log:
        cached.debug("my_cache.hit", key, started, source="store")
    return value


def async_wrapper(
    stor: CacheStor, folder: str, func: Callable[P, Coroutine[Any, Any, R]]
) -> Callable[P, Coroutine[Any, Any, R]]:
    cached = CachedFunction(stor, folder, func)
    flights: AsyncFlights[R] = AsyncFlights(cached.function)
    writer = stor._writer

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key, call = cached.key(args, kwargs)
        value = writer.buffered(folder, key)
        if value is not MISSING:
            if stor.is_debug_log:
                cached.debug("my_cache.hit", key, time.perf_counter(), source="buffer")
            return value  # type: ignore[no-any-return]
        store = stor._async_folder_store(folder)

        async def load_or_compute() -> R:
            value = await load(cached, store, key)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            started = time.perf_counter()
            result = await func(*args, **kwargs)
            writer.submit(cached, store, key, call, result)
            if stor.is_debug_log:
                cached.debug("my_cache.miss", key, started, queue_depth=writer.queue_depth)
            return result

        return await flights.run(key, load_or_compute)

    return wrapper
