"""The sync decorator: normalise the call, look it up, and on a miss compute and store it."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from my_cache import _log
from my_cache._flight import ThreadFlights
from my_cache._keys import KeyFunction, function_id, local_keys, read_call_shape
from my_cache._storages.base import MISSING, FolderStore, StoreUnavailable, UnstorableResult
from my_cache._types import CachedFunction, CacheInfo
from my_cache.serialisers import SerialiseBin

if TYPE_CHECKING:
    from my_cache.cache_stor import CacheStor

P = ParamSpec("P")
R = TypeVar("R")


class FunctionCache:
    """One decorated function's part in the cache: its keys, lookups, writes, events, stats."""

    def __init__(
        self,
        stor: CacheStor,
        folder: str,
        func: Callable[..., Any],
        store: Callable[[], FolderStore],
        *,
        expire: float | None,
        ignore: Iterable[str],
        version: str | int | None,
        process_local: bool,
    ) -> None:
        if expire is not None and not expire > 0:
            raise ValueError(f"{func.__qualname__}: expire must be a positive number of seconds")
        self.stor = stor
        self.folder = folder
        self.function = function_id(func)
        self.store = store
        self.expire = expire
        shape = read_call_shape(func, ignore)
        self._normalise = shape.normalise
        # A version is part of every key, so entries of other versions are never found.
        self._prefix = f"{self.function}:" if version is None else f"{self.function}:v{version}:"
        self.key: KeyFunction = self._hashed_key
        """The store key of a call: ``module.qualname:[vVERSION:]`` and a hash of the call."""
        if process_local and type(stor.serialiser) is SerialiseBin:
            # marshal's keys make the same hits as SerialiseBin's in a fraction of the time,
            # but are valid in this process only (see local_keys).
            self.key = local_keys(shape, self._prefix, self._hashed_key) or self.key
        # Calls that got past key-making, and runs of the function: hits are the difference.
        self.calls = 0
        self.misses = 0

    def _hashed_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            digest = self.stor.serialiser._call_hash(*self._normalise(args, kwargs))
        except TypeError as error:
            raise TypeError(f"cannot cache {self.function}(): {error}") from error
        return self._prefix + digest

    def lookup(self, key: str) -> Any:
        """The stored value or MISSING; a hit is logged when debug is on.

        A store that cannot be opened or read is warned of and makes a miss, never an error.
        """
        started = time.perf_counter() if self.stor.is_debug_log else 0.0
        try:
            value = self.store().get(key)
        except StoreUnavailable:
            return MISSING
        except Exception as error:
            self.warn("my_cache.read_failed", f"{type(error).__name__}: {error}")
            return MISSING
        if value is not MISSING and self.stor.is_debug_log:
            self.debug("my_cache.hit", key, started)
        return value

    def store_result(
        self,
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        value: Any,
        **fields: Any,
    ) -> str | None:
        """Write the value computed for a call; None when written, else why not (already
        warned of). A value that cannot be stored is not cached; ``fields`` go into the write
        event.
        """
        started = time.perf_counter()

        def arg_string() -> str:
            call_args, call_kwargs = self._normalise(args, kwargs)
            return self.stor.serialiser.encode(*call_args, **call_kwargs)[0]

        try:
            self.store().set(
                key,
                value,
                function=self.function,
                arg_string=arg_string,
                expire=self.stor._default_expire if self.expire is None else self.expire,
            )
        except UnstorableResult as error:
            return self.warn("my_cache.unstorable_result", str(error))
        except StoreUnavailable as error:
            return f"{self.function}: {error}"
        except Exception as error:
            # The value is computed: a store that fails to write must not take it from the caller.
            return self.warn("my_cache.write_failed", f"{type(error).__name__}: {error}")
        if self.stor.is_debug_log:
            self.debug("my_cache.write", key, started, **fields)
        return None

    def waits_for_others(self) -> bool:
        """Whether ``acquire`` may wait for another process (see FolderStore)."""
        try:
            return self.store().waits_for_others
        except Exception:  # a store that cannot open is warned of where it is used
            return False

    def acquire(self, key: str) -> Any:
        """MISSING when this caller is to compute ``key`` (see FolderStore.acquire), or the
        value another process computed meanwhile; ``release`` must follow a MISSING."""
        try:
            return self.store().acquire(key)
        except Exception as error:
            self.warn("my_cache.read_failed", f"{type(error).__name__}: {error}")
            return MISSING

    def release(self, key: str) -> None:
        try:
            self.store().release(key)
        except Exception as error:
            self.warn("my_cache.write_failed", f"{type(error).__name__}: {error}")

    def warn(self, event: str, reason: str) -> str:
        """A warning about this function; returns the reason, naming the function."""
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

    def info(self) -> CacheInfo:
        return CacheInfo(self.calls - self.misses, self.misses)

    def clear(self) -> None:
        # Writes still in flight would land after the deletion and bring entries back.
        self.stor._writer.flush()
        self.store().delete_function(self.function)
        self.calls = self.misses = 0

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        key = self.key(args, kwargs)
        self.stor._writer.flush()
        return self.store().delete(key)

    def controls(self, wrapper: Callable[P, R], func: Callable[P, R]) -> CachedFunction[P, R]:
        """``wrapper`` with ``cache_info``, ``cache_clear`` and ``invalidate`` attached."""

        def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            return self.invalidate(args, kwargs)

        functools.update_wrapper(wrapper, func)
        controlled = cast(Any, wrapper)
        controlled.cache_info = self.info
        controlled.cache_clear = self.clear
        controlled.invalidate = invalidate
        return cast(CachedFunction[P, R], controlled)


def sync_wrapper(cached: FunctionCache, func: Callable[P, R]) -> CachedFunction[P, R]:
    stor = cached.stor
    flights: ThreadFlights[R] = ThreadFlights(cached.function)

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key = cached.key(args, kwargs)
        cached.calls += 1
        landed = flights.landed
        value = cached.lookup(key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]

        def compute() -> R:
            # A flight that landed since our lookup may have stored this very key.
            if flights.landed != landed:
                value = cached.lookup(key)
                if value is not MISSING:
                    return value  # type: ignore[no-any-return]
            value = cached.acquire(key)
            if value is not MISSING:  # another process computed it meanwhile
                return value  # type: ignore[no-any-return]
            try:
                started = time.perf_counter()
                cached.misses += 1
                result = func(*args, **kwargs)
                if stor.is_debug_log:
                    cached.debug("my_cache.miss", key, started)
                cached.store_result(key, args, kwargs, result)
            finally:
                cached.release(key)
            return result

        return flights.run(key, compute)

    return cached.controls(wrapper, func)
