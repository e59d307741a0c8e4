"""CacheStor: the one object a program creates, and the decorators it hands out."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from my_cache._decorator import sync_wrapper
from my_cache._storages import BACKENDS
from my_cache._storages.base import FolderStore
from my_cache.serialisers import SERIALISERS, Serialise
from my_cache.settings import TypeStorage, load_settings

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
    """

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        type_storage: TypeStorage | str | None = None,
        is_debug_log: bool | None = None,
        serialiser: Serialise | type[Serialise] | str | None = None,
    ) -> None:
        chosen_serialiser = _serialiser_instance(serialiser)
        settings = load_settings(
            db_file=None if db_file is None else os.fspath(db_file),
            type_storage=type_storage,
            is_debug_log=is_debug_log,
            serialiser=serialiser if isinstance(serialiser, str) else None,
        )
        self.db_file: str = settings.db_file
        self.type_storage: TypeStorage = settings.type_storage
        self.is_debug_log: bool = settings.is_debug_log
        self.serialiser: Serialise = chosen_serialiser or SERIALISERS[settings.serialiser]()
        if self.type_storage is TypeStorage.IN_DISK and not self.db_file:
            raise ValueError(
                "CacheStor: db_file is empty, but TypeStorage.IN_DISK needs it for its catalogue"
            )
        self._backend = BACKENDS[self.type_storage](self.db_file)
        self._stores: dict[str, FolderStore] = {}
        self._lock = threading.Lock()

    def cache(self, folder: str | os.PathLike[str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so its results are stored under ``folder``.

        A repeat call with equivalent arguments (after defaults are applied; keyword order
        never matters) returns the stored result without running the function. Concurrent
        equivalent calls from several threads run it once. Exceptions are never cached.
        """
        path = _folder_path(folder)

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{func.__qualname__} is a coroutine function: decorate it with cache_async"
                )
            return sync_wrapper(self, path, func)

        return decorate

    def close(self) -> None:
        """Close every open store and the catalogue; later calls open them again."""
        with self._lock:
            stores, self._stores = self._stores, {}
        for store in stores.values():
            store.close()
        self._backend.close()

    def _folder_store(self, folder: str) -> FolderStore:
        store = self._stores.get(folder)
        if store is None:
            with self._lock:
                store = self._stores.get(folder)
                if store is None:
                    store = self._stores[folder] = self._backend.open_folder(folder)
        return store

    def __repr__(self) -> str:
        return (
            f"CacheStor(db_file={self.db_file!r}, type_storage={self.type_storage}, "
            f"is_debug_log={self.is_debug_log}, serialiser={type(self.serialiser).__name__})"
        )


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


def _folder_path(folder: Any) -> str:
    if not isinstance(folder, str | os.PathLike) or not os.fspath(folder):
        raise ValueError(f"cache(folder=...): folder must be a non-empty path, got {folder!r}")
    return os.path.abspath(os.fspath(folder))
