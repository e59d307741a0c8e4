"""IN_DISK: a diskcache.Cache per folder, and the catalogue in ``db_file``."""

from __future__ import annotations

import io
import os
import pickle
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import diskcache

from my_cache import _log
from my_cache._catalogue import Catalogue
from my_cache._storages.base import (
    MISSING,
    Backend,
    Deferred,
    Entry,
    FolderStore,
    dump_result,
    key_prefix,
)


class DiskFolder(FolderStore):
    """One diskcache directory holding pickled results under string keys.

    diskcache makes each write atomic and the store safe for threads and processes. Nothing
    is evicted unless a ``size_limit`` (bytes) is set: then the least recently stored go first.
    """

    def __init__(self, folder: str, catalogue: Catalogue, size_limit: int | None) -> None:
        self._folder = folder
        self._catalogue = catalogue
        if size_limit is None:
            self._cache = diskcache.Cache(folder, eviction_policy="none")
        else:
            self._cache = diskcache.Cache(
                folder, eviction_policy="least-recently-stored", size_limit=size_limit
            )

    def get(self, key: str) -> Any:
        data = self._cache.get(key)
        return MISSING if data is None else self._unpickle(key, data)

    def fetch(self, key: str) -> Any:
        # diskcache keeps values under its min_file_size (32 KiB) in SQLite and hands them
        # back as bytes, cheap to unpickle here; larger ones live in files and come back as
        # an open file, read and unpickled later, off the event loop.
        data = self._cache.get(key, read=True)
        if data is None:
            return MISSING
        if isinstance(data, bytes):
            return self._unpickle(key, data)
        return Deferred(lambda: self._unpickle_file(key, data))

    def _unpickle_file(self, key: str, file: BinaryIO) -> Any:
        with file:
            return self._unpickle(key, file.read())

    def _unpickle(self, key: str, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as error:
            _log.warning(
                "my_cache.damaged_entry",
                folder=self._folder,
                key=key,
                reason=f"{type(error).__name__}: {error}",
            )
            self._cache.delete(key)
            return MISSING

    def set(
        self,
        key: str,
        value: Any,
        *,
        function: str,
        arg_string: Callable[[], str],
        expire: float | None,
    ) -> None:
        data = dump_result(value)
        if len(data) < self._cache.disk.min_file_size:
            self._cache.set(key, data, expire=expire)
        else:
            # Given bytes, diskcache writes the file one *line* at a time: millions of Python
            # iterations (holding the GIL) for text-like pickles. A file object is copied in
            # 4 MiB chunks instead.
            self._cache.set(key, io.BytesIO(data), read=True, expire=expire)
        self._catalogue.record(self._folder, function, key, arg_string(), len(data), expire)

    def delete(self, key: str) -> bool:
        existed: bool = self._cache.delete(key)
        self._catalogue.forget(self._folder, [key])
        return existed

    def delete_function(self, function: str) -> int:
        prefix = key_prefix(function)
        doomed = [key for key in self._cache.iterkeys() if key.startswith(prefix)]
        for key in doomed:
            self._cache.delete(key)
        self._catalogue.forget_function(self._folder, function)
        return len(doomed)

    def live(self, keys: Iterable[str]) -> frozenset[str]:
        """Which of ``keys`` still hold a value (not expired, evicted or deleted)."""
        return frozenset(key for key in keys if key in self._cache)

    def delete_keys(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        deleted = sum(1 for key in keys if self._cache.delete(key))
        self._catalogue.forget(self._folder, keys)
        return deleted

    def close(self) -> None:
        self._cache.close()


class DiskBackend(Backend):
    persistent = True

    def __init__(self, db_file: str, size_limit: int | None) -> None:
        self._catalogue = Catalogue(Path(db_file))
        self._size_limit = size_limit

    def open_folder(self, folder: str) -> DiskFolder:
        return DiskFolder(folder, self._catalogue, self._size_limit)

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        rows = self._catalogue.entries(folder, function)
        live: set[tuple[str, str]] = set()
        for path, in_folder in _by_folder(rows).items():
            keys = [entry.key for entry in in_folder]
            alive: frozenset[str] = frozenset()
            if os.path.isdir(path):
                store = self.open_folder(path)
                try:
                    alive = store.live(keys)
                finally:
                    store.close()
            live.update((path, key) for key in alive)
            self._catalogue.forget(path, [key for key in keys if key not in alive])
        return [entry for entry in rows if (entry.folder, entry.key) in live]

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        deleted = 0
        for path, in_folder in _by_folder(list(entries)).items():
            keys = [entry.key for entry in in_folder]
            if not os.path.isdir(path):
                self._catalogue.forget(path, keys)
                continue
            store = self.open_folder(path)
            try:
                deleted += store.delete_keys(keys)
            finally:
                store.close()
        return deleted

    def close(self) -> None:
        self._catalogue.close()


def _by_folder(entries: list[Entry]) -> dict[str, list[Entry]]:
    grouped: defaultdict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.folder].append(entry)
    return grouped
