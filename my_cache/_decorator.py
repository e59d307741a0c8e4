"""The sync decorator: normalise the call, look it up, and on a miss compute and store it."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from my_cache import _log
from my_cache._describe import MARKER
from my_cache._flight import ThreadFlights
from my_cache._identity import Identity, Target, checked_version, identify
from my_cache._keys import KeyFunction, Normalised, RefusedCall, marshal_keys, read_call_shape
from my_cache._storages.base import (
    MISSING,
    FolderStore,
    ForeignPath,
    StoreUnavailable,
    UnstorableResult,
)
from my_cache._types import CachedFunction, CacheInfo, CacheStoreError
from my_cache.serialisers import ArgumentTypeError, Serialise, SerialiseBin

if TYPE_CHECKING:
    from my_cache.cache_stor import CacheStor

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class FunctionCache:
    """One decorated function's part in the cache: its keys, lookups, writes, events, stats."""

    def __init__(
        self,
        stor: CacheStor,
        folder: str,
        target: Target,
        store: Callable[[], FolderStore],
        *,
        expire: float | None,
        ignore: Iterable[str],
        version: str | int | None,
        process_local: bool,
        mmap_mode: str | None = None,
    ) -> None:
        self.function = target.name
        """The function's name in logs and the catalogue: ``module:qualname``."""
        if expire is not None and not expire > 0:
            raise ValueError(f"{self.function}: expire must be a positive number of seconds")
        self.stor = stor
        self.folder = folder
        self.target = target
        self.store = store
        self.expire = expire
        self._version = checked_version(self.function, version)
        ignored = frozenset([ignore] if isinstance(ignore, str) else ignore)
        code = getattr(target.code_owner, "__code__", None)
        captured = frozenset(getattr(code, "co_freevars", ()))
        self._ignore = ignored
        self._shape = read_call_shape(target.signature_of, ignored - captured, self.function)
        _check_encode_takes(stor.serialiser, target.signature_of, self.function)
        self._normalise = self._shape.normalise
        if target.instance is not None:
            # A bound method's or callable instance's self is an argument, by value.
            instance, unbound = (target.instance,), self._shape.normalise

            def normalise_with_self(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Normalised:
                return unbound(instance + args, kwargs)

            self._normalise = normalise_with_self
        self._process_local = process_local
        if mmap_mode not in (None, "r"):
            raise ValueError(f"{self.function}: mmap_mode must be 'r' or None, got {mmap_mode!r}")
        self.mapped = mmap_mode == "r"
        """Whether hits map large arrays read-only from their files (mmap_mode='r')."""
        self.identity: Identity | None = None
        self.key: KeyFunction = self._first_key
        """The store key of a call: the function's identity prefix and a hash of the call."""
        # Calls that got past key-making, and runs of the function: hits are the difference.
        self.calls = 0
        self.misses = 0

    def _first_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """At the first call, learn the function's identity and make ``key`` for good.

        Not at decoration: a closure's cells (a recursive closure's own name) may be filled
        only after it is decorated.
        """
        identity = self._identify()
        prefix = identity.prefix
        key: KeyFunction = functools.partial(self._hashed_key, prefix)
        if self.target.instance is None and type(self.stor.serialiser) is SerialiseBin:
            # marshal's keys make the same hits as SerialiseBin's in a fraction of the time
            # (see marshal_keys).
            key = marshal_keys(self._shape, prefix, key, local=self._process_local) or key
        if identity.final:
            self.identity, self.key = identity, key
        return key(args, kwargs)

    def _identify(self) -> Identity:
        return identify(
            self.target, version=self._version, ignore=self._ignore, serialiser=self.stor.serialiser
        )

    def _hashed_key(self, prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            digest = self.stor.serialiser._call_hash(*self._normalise(args, kwargs))
        except RefusedCall:
            raise  # the function's own TypeError, as an undecorated call would raise it
        except ArgumentTypeError as error:
            raise TypeError(f"cannot cache {self.function}(): {error}{error.remedy}") from error
        except TypeError as error:
            raise TypeError(f"cannot cache {self.function}(): {error}") from error
        return prefix + digest

    def lookup(self, key: str) -> Any:
        """The stored value or MISSING; a hit is logged when debug is on.

        A store that cannot be opened or read is warned of and makes a miss, never an error;
        a folder or ``db_file`` that is not my_cache's is refused with ForeignPath, before
        the function runs.
        """
        if self.stor.is_debug_log:
            started = time.perf_counter()
            value = self.guarded(lambda: self._get(key), "my_cache.read_failed", MISSING)
            if value is not MISSING:
                self.debug("my_cache.hit", key, started)
            return value
        # The hit path: guarded() inline, without a closure to make per call.
        try:
            return self._get(key)
        except Exception as error:
            return self._failed(error, "my_cache.read_failed", MISSING)

    def _get(self, key: str) -> Any:
        store = self.store()
        return store.get_mapped(key) if self.mapped else store.get(key)

    def peek(self, key: str) -> Any:
        """The stored value or MISSING, as ``lookup`` finds it, but no use of the entry:
        neither logged as a hit nor counted as a use by an eviction policy."""
        return self.guarded(lambda: self.store().peek(key), "my_cache.read_failed", MISSING)

    def write(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """Store ``value`` as the result of the call ``key`` was made from; raises
        UnstorableResult, StoreUnavailable or the store's own error when it cannot."""

        def arg_string() -> str:
            return self.stor.serialiser._describe(*self._normalise(args, kwargs))

        self.store().set(
            key,
            value,
            function=self.function,
            arg_string=arg_string,
            expire=self.stor._default_expire if self.expire is None else self.expire,
        )

    def store_result(
        self,
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        value: Any,
        *,
        since: int,
        replacing: bool = False,
        **fields: Any,
    ) -> str | None:
        """Write the value computed for a call begun when the cache's ``redirections`` was
        ``since``; None when written, else why not (already warned of). A value that cannot
        be stored is not cached; if ``replacing``, the entry it was to replace is deleted
        then, never left to be served. ``fields`` go into the write event.
        """
        if since != self.stor.redirections:
            # my_cache.testing pointed the cache elsewhere meanwhile: not the stores of the call.
            return None
        started = time.perf_counter()
        failure = self._stored_or_why(key, args, kwargs, value)
        if failure is not None:
            if replacing:
                self.guarded(lambda: self.store().delete(key), "my_cache.write_failed", False)
            return failure
        if self.stor.is_debug_log:
            self.debug("my_cache.write", key, started, **fields)
        return None

    def _stored_or_why(
        self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
    ) -> str | None:
        try:
            self.write(key, args, kwargs, value)
        except UnstorableResult as error:
            return self.warn("my_cache.unstorable_result", str(error))
        except StoreUnavailable as error:  # warned of by the store
            return f"{self.function}: {error}"
        except Exception as error:
            # The value is computed: a store that fails to write must not take it from the caller.
            return self.warn("my_cache.write_failed", f"{type(error).__name__}: {error}")
        return None

    def put(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """``f.store(value, *args, **kwargs)``, ``key`` being the call's: an explicit write, so
        a failure raises CacheStoreError rather than being warned of."""
        started = time.perf_counter()
        self.managed("store a value of", lambda: self.write(key, args, kwargs, value))
        if self.stor.is_debug_log:
            self.debug("my_cache.write", key, started, source="store")

    def guarded(self, operation: Callable[[], T], event: str, fallback: T) -> T:
        """``operation()``, a store operation; if the store fails, ``fallback``, warned of as
        ``event`` (unless the store warned already: StoreUnavailable). Store errors become
        misses and skipped writes here (and in ``_failed``), for both decorators. Only
        ForeignPath reaches the caller: a setting to fix, raised before the function runs."""
        try:
            return operation()
        except Exception as error:
            return self._failed(error, event, fallback)

    def _failed(self, error: Exception, event: str, fallback: T) -> T:
        """What ``guarded`` makes of a store's ``error``: ``fallback``, or ForeignPath raised."""
        if isinstance(error, ForeignPath):
            raise error
        if not isinstance(error, StoreUnavailable):
            self.warn(event, f"{type(error).__name__}: {error}")
        return fallback

    def waits_for_others(self) -> bool:
        """Whether ``acquire`` may wait for another process (see FolderStore); a store that
        cannot open is warned of where it is used."""
        return self.guarded(lambda: self.store().waits_for_others, "my_cache.read_failed", False)

    def acquire(self, key: str) -> Any:
        """MISSING when this caller is to compute ``key`` (see FolderStore.acquire), or the
        value another process computed meanwhile; ``release`` must follow a MISSING."""
        return self.guarded(lambda: self.store().acquire(key), "my_cache.read_failed", MISSING)

    def attempt(self, key: str) -> Any:
        """One step of ``acquire`` (see FolderStore.attempt), for callers that wait on their
        own event loop; ``release`` must follow a MISSING."""
        return self.guarded(lambda: self.store().attempt(key), "my_cache.read_failed", MISSING)

    def pauses(self) -> Iterator[float]:
        """The pauses between attempts (see FolderStore.pauses)."""
        return self.guarded(lambda: self.store().pauses(), "my_cache.read_failed", iter(()))

    def release(self, key: str) -> None:
        self.guarded(lambda: self.store().release(key), "my_cache.write_failed", None)

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
        # A cache_clear() between a call's count and its miss's would make hits negative.
        return CacheInfo(max(0, self.calls - self.misses), self.misses)

    def clear(self) -> None:
        # Writes still in flight would land after the deletion and bring entries back.
        self.stor._writer.flush()
        identity = self.identity or self._identify()
        self.managed("clear", lambda: self.store().delete_function(identity))
        self.calls = self.misses = 0

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        key = self.key(args, kwargs)
        self.stor._writer.flush()
        return self.managed("invalidate", lambda: self.store().delete(key))

    def managed(self, action: str, operation: Callable[[], T]) -> T:
        """``operation()``, an explicit management call: a store that fails raises the
        public CacheStoreError, naming the function and the folder."""
        try:
            return operation()
        except ForeignPath:
            raise
        except Exception as error:
            reason = (
                str(error)
                if isinstance(error, StoreUnavailable | UnstorableResult)
                else (f"{type(error).__name__}: {error}")
            )
            raise CacheStoreError(
                f"cannot {action} {self.function} in {self.folder}: {reason}"
            ) from error

    def hit(self, key: str, started: float, source: str) -> None:
        """Log a hit found elsewhere than by ``lookup`` (another thread's or process's
        computation), so that the log agrees with ``cache_info()``."""
        if self.stor.is_debug_log:
            self.debug("my_cache.hit", key, started, source=source)

    def controls(
        self, wrapper: Callable[P, R], func: Callable[P, R], **per_call: Callable[..., Any]
    ) -> CachedFunction[P, R]:
        """``wrapper`` with ``cache_info``, ``cache_clear`` and ``invalidate`` attached, and
        the decorator's own ``per_call`` controls (``is_cached``, ``refresh``, ``store``)."""

        def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            return self.invalidate(args, kwargs)

        # A callable instance's attributes are its state, not the wrapper's.
        copied = () if func is self.target.instance else ("__dict__",)
        functools.update_wrapper(wrapper, func, updated=copied)
        controlled = cast(Any, wrapper)
        setattr(controlled, MARKER, self.target.call)
        controlled.cache_info = self.info
        controlled.cache_clear = self.clear
        controlled.invalidate = invalidate
        for name, control in per_call.items():
            control.__qualname__ = f"{wrapper.__qualname__}.{name}"
            setattr(controlled, name, control)
        return cast(CachedFunction[P, R], controlled)


def run_refused(func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """Run a call that key-making found the function would refuse: Python then raises the
    function's own TypeError, worded as on this Python, as if it were not decorated. (Should
    the function take the call after all, its result is returned, uncached.)"""
    try:
        return func(*args, **kwargs)
    except TypeError as error:
        raise error from None  # not chained to the refusal found while making the key


def _check_encode_takes(serialiser: Serialise, func: Callable[..., Any], name: str) -> None:
    """TypeError at decoration if a parameter of ``func`` would collide with a named parameter
    of a custom serialiser's ``encode`` (``encode(self, *args, **kwargs)`` without the ``/``)."""
    encode = inspect.signature(type(serialiser).encode).parameters.values()
    named = {p.name for p in encode if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    clashes = named & inspect.signature(func).parameters.keys()
    if clashes:
        raise TypeError(
            f"{name}: its parameter {sorted(clashes)[0]!r} collides with "
            f"{type(serialiser).__qualname__}.encode's own; declare it "
            "encode(self, /, *args, **kwargs)"
        )


def sync_wrapper(cached: FunctionCache, func: Callable[P, R]) -> CachedFunction[P, R]:
    stor = cached.stor
    flights: ThreadFlights[R] = ThreadFlights(cached.function)

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            key = cached.key(args, kwargs)
        except RefusedCall:
            return run_refused(func, args, kwargs)
        cached.calls += 1
        landed = flights.landed
        value = cached.lookup(key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        if not stor.enabled:  # caching is off: every call runs, none waits for another
            cached.misses += 1
            return func(*args, **kwargs)
        started = time.perf_counter()

        def compute() -> R:
            # A flight that landed since our lookup may have stored this very key.
            if flights.landed != landed:
                value = cached.lookup(key)
                if value is not MISSING:
                    return value  # type: ignore[no-any-return]
            value = cached.acquire(key)
            if value is not MISSING:  # another process computed it meanwhile
                cached.hit(key, started, "other process")
                return value  # type: ignore[no-any-return]
            try:
                return run_and_store(key, args, kwargs)
            finally:
                cached.release(key)

        return flights.run(key, compute, lambda: cached.hit(key, started, "other thread"))

    def run_and_store(
        key: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, replacing: bool = False
    ) -> R:
        since = stor.redirections
        started = time.perf_counter()
        cached.misses += 1
        result = func(*args, **kwargs)
        if stor.is_debug_log:
            cached.debug("my_cache.miss", key, started)
        cached.store_result(key, args, kwargs, result, since=since, replacing=replacing)
        return result

    def is_cached(*args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether a call with these arguments would be a hit now (the stored value is read
        and verified; nothing is counted or logged as a hit)."""
        return cached.peek(cached.key(args, kwargs)) is not MISSING

    def refresh(*args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function whatever is stored, store its result in place of the entry, and
        return it; counted as a call and a miss. A result that cannot be stored deletes the
        entry. Runs after a computation of the same call under way in this process, so that
        its older value cannot land after this one."""
        try:
            key = cached.key(args, kwargs)
        except RefusedCall:
            return run_refused(func, args, kwargs)
        cached.calls += 1
        return flights.run_fresh(key, lambda: run_and_store(key, args, kwargs, replacing=True))

    def store(value: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store ``value`` as the result of this call, as if the function had returned it;
        CacheStoreError if the store cannot (a value that cannot be pickled included)."""

        key = cached.key(args, kwargs)

        def put() -> R:
            cached.put(key, args, kwargs, value)
            return value

        flights.run_fresh(key, put)

    return cached.controls(wrapper, func, is_cached=is_cached, refresh=refresh, store=store)
