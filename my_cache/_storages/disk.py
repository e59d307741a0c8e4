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
from typing import TYPE_CHECKING, Any, BinaryIO

import diskcache
from diskcache.core import UNKNOWN

from my_cache import _log
from my_cache._catalogue import Catalogue
from my_cache._private import DIRECTORY_MODE, FILE_MODE, private_file
from my_cache._sqlite import BUSY_TIMEOUT, is_damage, is_locked, patiently
from my_cache._storages.base import (
    MISSING,
    Backend,
    DamagedEntry,
    Deferred,
    Entry,
    FolderStore,
    dump_result,
    load_result,
)
from my_cache.settings import Settings

if TYPE_CHECKING:
    from my_cache._identity import Identity

_FILE_MISSING: Any = object()

# Performance chosen over diskcache's API on the hit path: Cache.get spends about 2.7 us
# around this very query (6.6 vs 3.8 us). It reads diskcache's own table (stable across its
# 5.x releases; tests pin it to Cache.get), str keys being stored raw.
_SELECT = (
    "SELECT mode, filename, value FROM Cache"
    " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)
# Expired entries are misses at once; their rows and files go after this many expiring writes.
_EXPIRE_EVERY = 64


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
        self._read_lock = threading.Lock()
        self._expiring_writes = 0
        if not os.path.isdir(folder) and self._catalogued(folder):
            self._warn("my_cache.missing_store", "the folder is gone; it starts empty")
            catalogue.forget_folder(folder)
        self._cache = self._open()
        self._reader, self._reader_pid = self._connect_reader(), os.getpid()

    def _connect_reader(self) -> sqlite3.Connection:
        """A connection of our own for the hit path, shared by threads behind _read_lock."""
        return sqlite3.connect(
            self._database, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )

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
            # diskcache culls on every set: two more statements that only a size limit
            # needs. Expired rows are removed every few expiring writes instead (see set).
            return diskcache.Cache(
                self._folder, disk=PrivateDisk, eviction_policy="none", cull_limit=0
            )
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
                with self._read_lock:
                    self._reader.close()
                    if error is None:
                        self._warn("my_cache.missing_store", "the folder was removed; recreated")
                    else:
                        self._discard(error)
                    self._cache = self._open()
                    self._reader = self._connect_reader()
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
            data = self._stored(key, read)
        except sqlite3.DatabaseError as error:
            if is_damage(error):
                self._rebuild(cache, error)
                return MISSING
            if not is_locked(error):
                raise
            data = patiently(lambda: self._stored(key, read))
        if data is None:
            return MISSING
        if data is _FILE_MISSING:
            return self._drop(key, "its value file is missing")
        if isinstance(data, bytes):
            return self._load(key, data)
        return Deferred(lambda: self._load_file(key, data))

    def _row(self, key: str) -> tuple[int, str | None, bytes | None] | None:
        if self._reader_pid != os.getpid():  # SQLite connections do not survive a fork
            self._reader, self._reader_pid = self._connect_reader(), os.getpid()
        with self._read_lock:
            row: tuple[int, str | None, bytes | None] | None = self._reader.execute(
                _SELECT, (key, time.time())
            ).fetchone()
        return row

    def _stored(self, key: str, read: bool) -> Any:
        """What the store holds for ``key``: bytes, an open file, None, or _FILE_MISSING."""
        for _ in range(2):
            row = self._row(key)
            if row is None:
                return None
            mode, filename, value = row
            if mode == diskcache.core.MODE_RAW and value is not None:
                return value
            if mode != diskcache.core.MODE_BINARY or filename is None:
                return _FILE_MISSING  # not a row my_cache wrote
            try:
                file = open(os.path.join(self._folder, filename), "rb")  # noqa: SIM115
            except FileNotFoundError:
                # Another process may have replaced the entry (removing the old file) between
                # reading the row and opening the file: read the row again, once.
                continue
            if read:
                return file
            with file:
                return file.read()
        return _FILE_MISSING

    def _load_file(self, key: str, file: BinaryIO) -> Any:
        with file:
            return self._load(key, file.read())

    def _load(self, key: str, data: bytes) -> Any:
        try:
            return load_result(data, key)
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
        data = dump_result(value, key)
        cache = self._cache
        if not self._database.exists():
            cache = self._rebuild(cache, None)
        try:
            self._write(cache, key, data, expire)
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            cache = self._rebuild(cache, error)
            self._write(cache, key, data, expire)
        if expire is not None:
            self._expiring_writes += 1
            if self._expiring_writes % _EXPIRE_EVERY == 0:
                cache.expire(retry=True)
                self._catalogue.forget_expired(self._folder)
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

    def delete_function(self, identity: Identity) -> int:
        return self.delete_keys([key for key in self._cache.iterkeys() if identity.clears(key)])

    def live(self, keys: Iterable[str]) -> frozenset[str]:
        """Which of ``keys`` still hold a value (not expired, evicted or deleted)."""
        return frozenset(key for key in keys if key in self._cache)

    def delete_keys(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        deleted = sum(1 for key in keys if self._cache.delete(key, retry=True))
        self._catalogue.forget(self._folder, keys)
        return deleted

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        self._cache.close()


class DiskBackend(Backend):
    persistent = True

    def __init__(self, settings: Settings) -> None:
        self._catalogue = Catalogue(Path(settings.db_file))
        self._size_limit = settings.size_limit

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
