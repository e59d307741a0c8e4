"""The sync decorator: normalise the call, look it up, and on a miss compute and store it."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from my_cache import _log
from my_cache._flight import ThreadFlights
from my_cache._keys import Normalised, function_id, make_normaliser
from my_cache._storages.base import MISSING, FolderStore, UnstorableResult

if TYPE_CHECKING:
    from my_cache.cache_stor import CacheStor

P = ParamSpec("P")
R = TypeVar("R")


class CachedFunction:
    """One decorated function's part in the cache: its keys, lookups, writes and events."""

    def __init__(self, stor: CacheStor, folder: str, func: Callable[..., Any]) -> None:
        self.stor = stor
        self.folder = folder
        self.function = function_id(func)
        self._normalise = make_normaliser(func)

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Normalised]:
        """The store key of a call, ``module.qualname:hash``, and the normalised call."""
        call = self._normalise(args, kwargs)
        try:
            digest = self.stor.serialiser._call_hash(*call)
        except TypeError as error:
            raise TypeError(f"cannot cache {self.function}(): {error}") from error
        return f"{self.function}:{digest}", call

    def lookup(self, store: FolderStore, key: str) -> Any:
        """The stored value or MISSING; a hit is logged when debug is on."""
        if not self.stor.is_debug_log:
            return store.get(key)
        started = time.perf_counter()
        value = store.get(key)
        if value is not MISSING:
            self.debug("my_cache.hit", key, started)
        return value

    def store_result(
        self, store: FolderStore, key: str, call: Normalised, value: Any, **fields: Any
    ) -> str | None:
        """Write a computed value; None when written, else why not (already warned of).

        A value that cannot be stored is not cached; ``fields`` go into the write event.
        """
        started = time.perf_counter()
        args, kwargs = call
        try:
            store.set(
                key,
                value,
                function=self.function,
                arg_string=lambda: self.stor.serialiser.encode(*args, **kwargs)[0],
            )
        except UnstorableResult as error:
            return self._warn("my_cache.unstorable_result", str(error))
        except Exception as error:
            # The value is computed: a store that fails to write must not take it from the caller.
            return self._warn("my_cache.write_failed", f"{type(error).__name__}: {error}")
        if self.stor.is_debug_log:
            self.debug("my_cache.write", key, started, **fields)
        return None

    def _warn(self, event: str, reason: str) -> str:
        _log.warning(event, folder=self.folder, function=self.function, reason=reason)
        return f"{self.function}: {reason}"

    def debug(self, event: str, key: str, started: float, **fields: Any) -> None:
        """One debug event about ``key``, timed from ``started`` (a perf_counter reading)."""
        _log.debug(
            event,
            folder=self.folder,
            function=self.function,
            key=_log.short_key(key),
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            **fields,
        )


def sync_wrapper(stor: CacheStor, folder: str, func: Callable[P, R]) -> Callable[P, R]:
    cached = CachedFunction(stor, folder, func)
    flights: ThreadFlights[R] = ThreadFlights(cached.function)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key, call = cached.key(args, kwargs)
        store = stor._folder_store(folder)
        value = cached.lookup(store, key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]

        def compute() -> R:
            # Another thread may have stored it between our lookup and this flight.
            value = cached.lookup(store, key)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            started = time.perf_counter()
            result = func(*args, **kwargs)
            if stor.is_debug_log:
                cached.debug("my_cache.miss", key, started)
            cached.store_result(store, key, call, result)
            return result

        return flights.run(key, compute)

    return wrapper
