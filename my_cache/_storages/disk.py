"""IN_DISK: a diskcache.Cache per folder, and the catalogue in ``db_file``."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import diskcache
from diskcache.core import UNKNOWN

from my_cache import _log
from my_cache._catalogue import Catalogue
from my_cache._private import DIRECTORY_MODE, FILE_MODE, private_file
from my_cache._sqlite import is_damage, is_locked, patiently
from my_cache._storages.base import (
    MISSING,
    Backend,
    DamagedEntry,
    Deferred,
    Entry,
    FolderStore,
    dump_result,
    key_prefix,
    load_result,
)

_FILE_MISSING: Any = object()


class PrivateDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's file handling, making value files 0600 in 0700 sub-folders.

    diskcache creates the two levels of sub-folders itself, and retries when another process
    removes an emptied one meanwhile; the modes are set once the file is written. Until then
    nothing is reachable by others: the store's own folder is 0700.
    """

    def __init__(self, directory: str, **settings: Any) -> None:
        super().__init__(directory, **settings)
        self._root = directory

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[Any, ...]:
        size, mode, filename, db_value = super().store(value, read, key=key)
        if filename is not None:
            file = Path(self._root, filename)
            # If another process replaced this entry meanwhile, the file is gone: nothing to do.
            with contextlib.suppress(FileNotFoundError):
                os.chmod(file, FILE_MODE)
                os.chmod(file.parent, DIRECTORY_MODE)
                os.chmod(file.parent.parent, DIRECTORY_MODE)
        return size, mode, filename, db_value


class DiskFolder(FolderStore):
    """One diskcache directory holding checksummed pickles under string keys.

    diskcache makes each write atomic and the store safe for threads and processes. Nothing
    is evicted unless a ``size_limit`` (bytes) is set: then the least recently stored go first.
    A damaged entry is deleted and a miss; a damaged or vanished store is rebuilt empty; each
    is warned of.
    """

    def __init__(self, folder: str, catalogue: Catalogue, size_limit: int | None) -> None:
        self._folder = folder
        self._catalogue = catalogue
        self._size_limit = size_limit
        self._database = Path(folder) / diskcache.core.DBNAME
        self._lock = threading.Lock()
        if not os.path.isdir(folder) and self._catalogued(folder):
            self._warn("my_cache.missing_store", "the folder is gone; it starts empty")
            catalogue.forget_folder(folder)
        self._cache = self._open()

    def _catalogued(self, folder: str) -> bool:
        # Only to tell "deleted" from "new": a catalogue that cannot be read (warned of when
        # it is written) must not keep the store itself from opening.
        try:
            return self._catalogue.has_folder(folder)
        except sqlite3.Error:
            return False

    def _open(self) -> diskcache.Cache:
        private_file(self._database)
        try:
            return self._new_cache()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._discard(error)
            private_file(self._database)
            return self._new_cache()

    def _new_cache(self) -> diskcache.Cache:
        if self._size_limit is None:
            return diskcache.Cache(self._folder, disk=PrivateDisk, eviction_policy="none")
        return diskcache.Cache(
            self._folder,
            disk=PrivateDisk,
            eviction_policy="least-recently-stored",
            size_limit=self._size_limit,
        )

    def _discard(self, error: Exception) -> None:
        """Remove a damaged store (and its catalogue rows)."""
        self._warn("my_cache.damaged_store", f"{type(error).__name__}: {error}; rebuilt empty")
        # Renamed first, so that another process never opens a half-deleted store.
        aside = f"{self._folder}.damaged-{os.getpid()}-{time.monotonic_ns()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
        self._catalogue.forget_folder(self._folder)

    def _rebuild(self, broken: diskcache.Cache, error: Exception | None) -> diskcache.Cache:
        """Replace the store ``broken`` was (once per breakage, whatever the threads)."""
        with self._lock:
            if self._cache is broken:
                with contextlib.suppress(Exception):
                    broken.close()
                if error is None:
                    self._warn("my_cache.missing_store", "the folder was removed; recreated")
                else:
                    self._discard(error)
                self._cache = self._open()
            return self._cache

    def _warn(self, event: str, reason: str) -> None:
        _log.warning(event, folder=self._folder, reason=reason)

    def get(self, key: str) -> Any:
        return self._read(key, read=False)

    def fetch(self, key: str) -> Any:
        # diskcache keeps values under its min_file_size (32 KiB) in SQLite and hands them
        # back as bytes, cheap to check and unpickle here; larger ones live in files and come
        # back as an open file, read and unpickled later, off the event loop.
        return self._read(key, read=True)

    def _read(self, key: str, *, read: bool) -> Any:
        cache = self._cache
        try:
            data = self._stored(cache, key, read)
        except sqlite3.DatabaseError as error:
            if is_damage(error):
                self._rebuild(cache, error)
                return MISSING
            if not is_locked(error):
                raise
            data = patiently(lambda: self._stored(cache, key, read))
        if data is None:
            return MISSING
        if data is _FILE_MISSING:
            return self._drop(key, "its value file is missing")
        if isinstance(data, bytes):
            return self._load(key, data)
        return Deferred(lambda: self._load_file(key, data))

    @staticmethod
    def _stored(cache: diskcache.Cache, key: str, read: bool) -> Any:
        """What diskcache holds for ``key``: bytes, an open file, None, or _FILE_MISSING."""
        data = cache.get(key, read=read)
        if data is None and key in cache:
            # A row without its value file: another process may have replaced the entry
            # (and removed the old file) between reading the row and opening the file.
            data = cache.get(key, read=read)
            if data is None and key in cache:
                return _FILE_MISSING
        return data

    def _load_file(self, key: str, file: BinaryIO) -> Any:
        with file:
            return self._load(key, file.read())

    def _load(self, key: str, data: bytes) -> Any:
        try:
            return load_result(data)
        except DamagedEntry as error:
            return self._drop(key, str(error))

    def _drop(self, key: str, reason: str) -> Any:
        _log.warning("my_cache.damaged_entry", folder=self._folder, key=key, reason=reason)
        self._cache.delete(key, retry=True)
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
        cache = self._cache
        if not self._database.exists():
            cache = self._rebuild(cache, None)
        try:
            self._write(cache, key, data, expire)
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._write(self._rebuild(cache, error), key, data, expire)
        self._catalogue.record(self._folder, function, key, arg_string(), len(data), expire)

    @staticmethod
    def _write(cache: diskcache.Cache, key: str, data: bytes, expire: float | None) -> None:
        if len(data) < cache.disk.min_file_size:
            cache.set(key, data, expire=expire, retry=True)
        else:
            # Given bytes, diskcache writes the file one *line* at a time: millions of Python
            # iterations (holding the GIL) for text-like pickles. A file object is copied in
            # 4 MiB chunks instead.
            cache.set(key, io.BytesIO(data), read=True, expire=expire, retry=True)

    def delete(self, key: str) -> bool:
        existed: bool = self._cache.delete(key, retry=True)
        self._catalogue.forget(self._folder, [key])
        return existed

    def delete_function(self, function: str) -> int:
        prefix = key_prefix(function)
        doomed = [key for key in self._cache.iterkeys() if key.startswith(prefix)]
        for key in doomed:
            self._cache.delete(key, retry=True)
        self._catalogue.forget_function(self._folder, function)
        return len(doomed)

    def live(self, keys: Iterable[str]) -> frozenset[str]:
        """Which of ``keys`` still hold a value (not expired, evicted or deleted)."""
        return frozenset(key for key in keys if key in self._cache)

    def delete_keys(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        deleted = sum(1 for key in keys if self._cache.delete(key, retry=True))
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
