"""IN_DISK: a diskcache.Cache per folder, and the catalogue in ``db_file``."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import diskcache

from my_cache import _log
from my_cache._catalogue import Catalogue
from my_cache._storages.base import MISSING, Backend, Deferred, FolderStore, dump_result


class DiskFolder(FolderStore):
    """One diskcache directory holding pickled results under string keys.

    diskcache makes each write atomic and the store safe for threads and processes. Nothing
    is evicted: the cache keeps entries until they are deleted.
    """

    def __init__(self, folder: str, catalogue: Catalogue) -> None:
        self._folder = folder
        self._catalogue = catalogue
        self._cache = diskcache.Cache(folder, eviction_policy="none")

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
        self, key: str, value: Any, *, function: str, arg_string: Callable[[], str]
    ) -> None:
        data = dump_result(value)
        if len(data) < self._cache.disk.min_file_size:
            self._cache.set(key, data)
        else:
            # Given bytes, diskcache writes the file one *line* at a time: millions of Python
            # iterations (holding the GIL) for text-like pickles. A file object is copied in
            # 4 MiB chunks instead.
            self._cache.set(key, io.BytesIO(data), read=True)
        self._catalogue.record(self._folder, function, key, arg_string(), len(data))

    def close(self) -> None:
        self._cache.close()


class DiskBackend(Backend):
    persistent = True

    def __init__(self, db_file: str) -> None:
        self._catalogue = Catalogue(Path(db_file))

    def open_folder(self, folder: str) -> FolderStore:
        return DiskFolder(folder, self._catalogue)

    def close(self) -> None:
        self._catalogue.close()
