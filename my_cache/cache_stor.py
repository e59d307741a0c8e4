"""CacheStor: the one object a program creates, and the decorators it hands out."""

from __future__ import annotations

import functools
import gc
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Literal, ParamSpec, TypeVar, cast

from my_cache._async_decorator import async_wrapper
from my_cache._decorator import FunctionCache, sync_wrapper
from my_cache._fork import keep_unclosed, renew_after_fork
from my_cache._identity import Target, take_apart
from my_cache._joblib_memory import JoblibMemory
from my_cache._storages import BACKENDS
from my_cache._storages.base import Backend, FolderStore
from my_cache._storages.null import NullBackend
from my_cache._threads import StartedPool
from my_cache._types import AsyncCachedFunction, CachedFunction
from my_cache._writer import BackgroundWriter
from my_cache.serialisers import SERIALISERS, Serialise
from my_cache.settings import Settings, TypeStorage, load_settings

P = ParamSpec("P")
R = TypeVar("R")


class CacheStor:
    """A cache: one storage backend, one argument serialiser, and the decorators using them.

    Every argument left as None comes from the settings (``MYCACHE_*`` environment variables,
    then ``mycache.toml``, then defaults). Create one per program and share it: each
    CacheStor keeps its own stores open.

    Args:
        db_file: the catalogue, an SQLite file listing every IN_DISK entry.
        type_storage: ``TypeStorage.IN_MEMORY`` or ``TypeStorage.IN_DISK`` (or their names).
        is_debug_log: log every hit, miss and write through structlog.
        serialiser: a ``Serialise`` instance or subclass, or ``"bin"``, ``"json"``,
            ``"msgpack"``.
        size_limit: bytes each folder may hold (see the ``size_limit`` setting).
        enabled: False turns caching off: every call runs its function, nothing is read or
            written.
    """

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        type_storage: TypeStorage | str | None = None,
        is_debug_log: bool | None = None,
        serialiser: Serialise | type[Serialise] | str | None = None,
        *,
        size_limit: int | None = None,
        enabled: bool | None = None,
    ) -> None:
        chosen_serialiser = _serialiser_instance(serialiser)
        settings = load_settings(
            db_file=None if db_file is None else os.fspath(db_file),
            type_storage=type_storage,
            is_debug_log=is_debug_log,
            serialiser=serialiser if isinstance(serialiser, str) else None,
            size_limit=size_limit,
            enabled=enabled,
        )
        self.db_file: str = settings.db_file
        self.type_storage: TypeStorage = settings.type_storage
        self.is_debug_log: bool = settings.is_debug_log
        self.serialiser: Serialise = chosen_serialiser or SERIALISERS[settings.serialiser]()
        if self.type_storage is TypeStorage.IN_DISK and not self.db_file:
            raise ValueError(
                "CacheStor: db_file is empty, but TypeStorage.IN_DISK needs it for its catalogue"
            )
        self.enabled: bool = settings.enabled
        """False: caching is off (see the ``enabled`` setting)."""
        self._settings = settings
        self._default_expire = settings.expire
        backend = BACKENDS[self.type_storage](settings) if self.enabled else NullBackend()
        self._stores = _OpenStores(backend)
        self._persistent_stores: _OpenStores | None = None
        self._writer = BackgroundWriter(settings.max_workers, lambda: self.is_debug_log)
        # One thread reads large cache_async hits: on two cores, more only fight over the GIL
        # while copying (worst loop pause 11 ms with one, 35 ms with four, same total time).
        self._reader = StartedPool(1, "my_cache-reader")
        # cache_async callers of a shared store take and release its locks here (each a round
        # trip or two): never in the program's own executor, which waiting would starve.
        self._locker = StartedPool(4, "my_cache-locker")
        self._lock = threading.Lock()
        self.redirections = 0
        """How often my_cache.testing pointed this cache at other stores, or back: a value
        computed across a change is not written (it belongs to the stores of its start)."""
        renew_after_fork(self)
        with _live_lock:
            _live.add(self)
            for redirect in _on_create:
                redirect(self)

    def after_fork(self) -> None:
        """A forked child gets its own lock (its pools and stores renew themselves)."""
        self._lock = threading.Lock()

    def cache(
        self,
        folder: str | os.PathLike[str],
        *,
        expire: float | None = None,
        ignore: Iterable[str] = (),
        version: str | int | None = None,
        mmap_mode: Literal["r"] | None = None,
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorate a function so its results are stored under ``folder``.

        A repeat call with equivalent arguments (after defaults are applied; keyword order
        never matters) returns the stored result without running the function. Concurrent
        equivalent calls from several threads run it once. Exceptions are never cached.

        Args:
            expire: seconds an entry lives (an expired entry is a miss); default: the
                ``expire`` setting, which by default is no expiry.
            ignore: names of parameters left out of the key (a verbosity flag, ``self``), or
                of variables a closure captures that never change its result.
            version: pins the function's identity instead of its code: entries stay valid
                across edits of its code until the version changes (see "Which function is
                this?" in docs/identity.md).
            mmap_mode: ``"r"``: on a hit, large arrays in the result are mapped read-only
                from their file (IN_DISK), as joblib's ``mmap_mode="r"``; default: the
                ``mmap_mode`` setting, by default None (read into memory).

        Decorates functions, methods (``self`` is an argument, by value), static and class
        methods, ``functools.partial`` objects, classes, and callable instances.
        """
        path = self._stores.own.folder_name(_folder_path(folder))

        @_through_descriptors
        def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
            target = take_apart(func)
            if _is_async(target):
                raise TypeError(
                    f"{target.name} is a coroutine function: decorate it with cache_async"
                )
            cached = FunctionCache(
                self,
                path,
                target,
                functools.partial(self._stores.open, path),
                expire=expire,
                ignore=ignore,
                version=version,
                process_local=not self._stores.own.persistent,
                mmap_mode=mmap_mode or self._settings.mmap_mode,
            )
            return sync_wrapper(cached, func)

        return decorate

    def cache_async(
        self,
        folder: str | os.PathLike[str],
        *,
        expire: float | None = None,
        ignore: Iterable[str] = (),
        version: str | int | None = None,
        mmap_mode: Literal["r"] | None = None,
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], AsyncCachedFunction[P, R]]:
        """Decorate an ``async def`` function so its results are stored on disk under ``folder``.

        Results always persist (in IN_DISK's stores even when ``type_storage`` is IN_MEMORY)
        and are catalogued in ``db_file``. Concurrent awaits of equivalent calls run the
        coroutine once. The caller gets a result as soon as the coroutine returns: pickling
        and writing happen on a thread pool, and until the write lands the result is served
        from memory. ``await join()`` waits for the writes; they are flushed at exit anyway.
        ``expire``, ``ignore`` and ``version`` are as for ``cache``.
        """
        path = self._open_persistent_stores().own.folder_name(_folder_path(folder))

        @_through_descriptors
        def decorate(func: Callable[P, Coroutine[Any, Any, R]]) -> AsyncCachedFunction[P, R]:
            target = take_apart(func)
            if not _is_async(target):
                raise TypeError(
                    f"{target.name} is not an async function: "
                    "cache_async decorates only `async def` functions; use cache"
                )
            cached = FunctionCache(
                self,
                path,
                target,
                lambda: self._open_persistent_stores().open(path),
                expire=expire,
                ignore=ignore,
                version=version,
                process_local=False,
                mmap_mode=mmap_mode or self._settings.mmap_mode,
            )
            return async_wrapper(cached, func)

        return decorate

    def memory(self, folder: str | os.PathLike[str]) -> JoblibMemory:
        """An object with joblib.Memory's interface (``cache``, ``clear``, ``location``)
        storing under ``folder``, for libraries that take one: scikit-learn's
        ``Pipeline(memory=cache_stor.memory(folder="cache/pipeline"))`` caches its fitted
        transformers here."""
        return JoblibMemory(self, folder)

    def _clear_folder(self, folder: str | os.PathLike[str]) -> None:
        """Delete the entries listed under ``folder`` (a persistent store's)."""
        stores = self._stores
        path = stores.own.folder_name(_folder_path(folder))
        self._writer.flush()
        stores.backend.delete_entries(stores.backend.entries(path))

    async def join(self) -> None:
        """Wait until every cache_async result submitted so far is written.

        May be called any number of times; the cache keeps working afterwards. If writes
        failed, raises one CacheWriteError saying how many and why, once the rest have
        landed (the callers already had their values).
        """
        await self._writer.join()

    def close(self) -> None:
        """Flush pending writes, then close every open store and the catalogue.

        Blocks until the writes land. Later calls open the stores again (an IN_MEMORY
        cache starts empty).
        """
        self._writer.close()
        self._reader.shutdown()
        self._locker.shutdown()
        persistent = self._persistent_stores
        self._stores.close()
        if persistent is not None and persistent is not self._stores:
            persistent.close()

    def __enter__(self) -> CacheStor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> CacheStor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.join()
        finally:
            self.close()

    def _redirect(
        self, make: Callable[[Backend, Settings], Backend], enabled: bool | None
    ) -> Callable[[], None]:
        """For my_cache.testing: use the backends ``make(current, settings)`` gives in place of
        this cache's own (``enabled`` too, unless None) until the returned function is
        called. Writes in flight land first, each where it was meant to."""
        self._writer.flush()
        self.redirections += 1
        try:
            # Made now, not inside, so cache_async never opens the real one meanwhile.
            persistent: _OpenStores | None = self._open_persistent_stores()
        except ValueError:
            persistent = None  # no db_file: cache_async cannot be used anyway
        swapped = (
            [self._stores] if persistent in (None, self._stores) else [self._stores, persistent]
        )
        previous = [stores.use(make(stores.backend, self._settings)) for stores in swapped]
        was_enabled = self.enabled
        if enabled is not None:
            self.enabled = enabled

        def restore() -> None:
            self._writer.flush()
            self.redirections += 1
            for stores, (backend, opened) in zip(swapped, previous, strict=True):
                close_all(*stores.use(backend, opened))
            self.enabled = was_enabled

        return restore

    def _open_persistent_stores(self) -> _OpenStores:
        """The stores that outlive the process: this CacheStor's own when its backend is
        persistent, else IN_DISK's on ``db_file`` (for cache_async and the CLI)."""
        stores = self._persistent_stores
        if stores is None:
            with self._lock:
                stores = self._persistent_stores
                if stores is None:
                    stores = self._persistent_stores = self._make_persistent_stores()
        return stores

    def _make_persistent_stores(self) -> _OpenStores:
        if self._stores.own.persistent:
            return self._stores
        if not self.db_file:
            raise ValueError(
                "CacheStor: db_file is empty, but cache_async and the mycache command use "
                "IN_DISK stores, which need it for their catalogue"
            )
        return _OpenStores(BACKENDS[TypeStorage.IN_DISK](self._settings))

    def __repr__(self) -> str:
        return (
            f"CacheStor(db_file={self.db_file!r}, type_storage={self.type_storage}, "
            f"is_debug_log={self.is_debug_log}, serialiser={type(self.serialiser).__name__})"
        )


# Every CacheStor alive, and what to do with each one made from now on: my_cache.testing
# points them all at other stores for a while.
_live: weakref.WeakSet[CacheStor] = weakref.WeakSet()
_on_create: list[Callable[[CacheStor], None]] = []
_live_lock = threading.RLock()


# Each open IN_DISK store holds SQLite descriptors: three per connection, a connection for
# reads and one per writing thread. A program with a folder per function would run out of
# them (a soft limit of 1024 is common), and its own open() calls would fail. Past this many
# open stores, one not used lately is closed; using it again costs a reconnection.
OPEN_STORES_LIMIT = 32


class _OpenStores:
    """The folder stores of one backend, opened on first use and shared by every function;
    at most OPEN_STORES_LIMIT of a persistent backend's are open at once."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.own = backend
        """The backend the stores are made with, whatever ``use`` puts in its place for a
        while: it names folders as the decorators saw them."""
        self._stores: dict[str, FolderStore] = {}
        self._lock = threading.Lock()
        self._closed_since_collection = 0
        renew_after_fork(self)

    def after_fork(self) -> None:
        """A forked child opens its own persistent stores (see _fork on connections); an
        in-memory one is a copy of the parent's memory, its own already."""
        if self.backend.persistent:
            keep_unclosed(self._stores)
            self._stores = {}
        self._lock = threading.Lock()

    def use(self, backend: Backend, stores: dict[str, FolderStore] | None = None) -> Opened:
        """Open stores from ``backend`` from now on (``stores``: those open already). Returns
        the backend and stores used until now, still open: for ``use`` to put back (an
        in-memory store's values live in its store object), or for the caller to close."""
        with self._lock:
            previous = (self.backend, self._stores)
            self.backend, self._stores = backend, {} if stores is None else stores
        return previous

    def open(self, folder: str) -> FolderStore:
        store = self._stores.get(folder)
        if store is None:
            with self._lock:
                store = self._stores.get(folder)
                if store is None:
                    if self.backend.persistent and len(self._stores) >= OPEN_STORES_LIMIT:
                        self._close_one_not_used_lately()
                    store = self._stores[folder] = self.backend.open_folder(folder)
        store.recently_used = True
        return store

    def _collect_connections(self) -> None:
        """Free the connections of closed stores, now and then.

        Closing a store closes the connections of the thread that closes it; those of other
        threads (diskcache opens one per thread) close when they are freed, and an
        sqlite3.Connection is freed only by the cyclic garbage collector (it references
        itself through its statement cache). Without a collection, a program whose writer
        threads touch many folders runs out of descriptors anyway.
        """
        self._closed_since_collection += 1
        if self._closed_since_collection >= OPEN_STORES_LIMIT:
            self._closed_since_collection = 0
            gc.collect()

    def _close_one_not_used_lately(self) -> None:
        """Close a store not used since the last such search (the "clock" approximation of
        least recently used: a hit only sets a flag). The caller holds the lock.

        A thread still using the closed store finishes with it: it reconnects on its own,
        and its connections close when the store object is dropped.
        """
        while True:
            for folder, store in list(self._stores.items()):
                if store.recently_used:
                    store.recently_used = False
                    continue
                del self._stores[folder]
                store.close()
                self._collect_connections()
                return

    def close(self) -> None:
        with self._lock:
            stores, self._stores = self._stores, {}
        close_all(self.backend, stores)


Opened = tuple[Backend, dict[str, FolderStore]]
"""A backend and its stores open now."""


def close_all(backend: Backend, stores: dict[str, FolderStore]) -> None:
    for store in stores.values():
        store.close()
    backend.close()


def _serialiser_instance(serialiser: object) -> Serialise | None:
    """The Serialise object given as ``serialiser=``, None when it is a name or not given."""
    if serialiser is None or isinstance(serialiser, str):
        return None
    if isinstance(serialiser, Serialise):
        return serialiser
    if isinstance(serialiser, type) and issubclass(serialiser, Serialise):
        return serialiser()
    raise TypeError(
        "CacheStor: serialiser must be a Serialise instance or subclass, or one of "
        f"{', '.join(map(repr, SERIALISERS))}; got {serialiser!r}"
    )


D = TypeVar("D", bound=Callable[..., Any])


def _through_descriptors(decorate: D) -> D:
    """``decorate`` that also takes a staticmethod or classmethod object (``@cache`` written
    above ``@staticmethod``): it decorates the function inside and wraps the result alike."""

    @functools.wraps(decorate)
    def decorate_any(func: Any) -> Any:
        if isinstance(func, staticmethod | classmethod):
            return type(func)(decorate(func.__func__))
        return decorate(func)

    return cast(D, decorate_any)


def _is_async(target: Target) -> bool:
    return inspect.iscoroutinefunction(target.call) or inspect.iscoroutinefunction(
        target.signature_of
    )


def _folder_path(folder: Any) -> str:
    if not isinstance(folder, str | os.PathLike) or not os.fspath(folder):
        raise ValueError(f"cache(folder=...): folder must be a non-empty path, got {folder!r}")
    return os.fspath(folder)
