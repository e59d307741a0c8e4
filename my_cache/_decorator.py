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


class CallKeys:
    """Turns a call of one function into its store key: ``module.qualname:hash``."""

    def __init__(self, stor: CacheStor, func: Callable[..., Any]) -> None:
        self.stor = stor
        self.function = function_id(func)
        self._normalise = make_normaliser(func)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Normalised]:
        call = self._normalise(args, kwargs)
        try:
            digest = self.stor.serialiser._call_hash(*call)
        except TypeError as error:
            raise TypeError(f"cannot cache {self.function}(): {error}") from error
        return f"{self.function}:{digest}", call

    def arg_string(self, call: Normalised) -> str:
        args, kwargs = call
        return self.stor.serialiser.encode(*args, **kwargs)[0]


def store_result(
    keys: CallKeys, store: FolderStore, folder: str, key: str, call: Normalised, value: Any
) -> None:
    """Write a computed value; a value that cannot be stored is warned of and not cached."""
    started = time.perf_counter()
    try:
        store.set(
            key, value, function=keys.function, arg_string=lambda: keys.arg_string(call)
        )
    except UnstorableResult as error:
        _log.warning(
            "my_cache.unstorable_result",
            folder=folder,
            function=keys.function,
            reason=str(error),
        )
        return
    if keys.stor.is_debug_log:
        _log.debug(
            "my_cache.write",
            folder=folder,
            function=keys.function,
            key=_log.short_key(key),
            elapsed_ms=_elapsed_ms(started),
        )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def sync_wrapper(stor: CacheStor, folder: str, func: Callable[P, R]) -> Callable[P, R]:
    keys = CallKeys(stor, func)
    flights: ThreadFlights[R] = ThreadFlights(keys.function)

    def lookup(store: FolderStore, key: str) -> Any:
        if not stor.is_debug_log:
            return store.get(key)
        started = time.perf_counter()
        value = store.get(key)
        if value is not MISSING:
            _log.debug(
                "my_cache.hit",
                folder=folder,
                function=keys.function,
                key=_log.short_key(key),
                elapsed_ms=_elapsed_ms(started),
            )
        return value

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key, call = keys(args, kwargs)
        store = stor._folder_store(folder)
        value = lookup(store, key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]

        def compute() -> R:
            # Another thread may have stored it between our lookup and this flight.
            value = lookup(store, key)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            started = time.perf_counter()
            result = func(*args, **kwargs)
            if stor.is_debug_log:
                _log.debug(
                    "my_cache.miss",
                    folder=folder,
                    function=keys.function,
                    key=_log.short_key(key),
                    elapsed_ms=_elapsed_ms(started),
                )
            store_result(keys, store, folder, key, call, result)
            return result

        return flights.run(key, compute)

    return wrapper
