"""IN_MEMORY: a dict per folder, in this process only; no files, no catalogue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from my_cache._storages.base import MISSING, Backend, FolderStore, UnstorableResult


class MemoryFolder(FolderStore):
    """Values are kept as the objects themselves, as functools.lru_cache does: a hit returns
    the very object the function returned, so callers must not mutate it."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self._values.get(key, MISSING)

    def set(
        self, key: str, value: Any, *, function: str, arg_string: Callable[[], str]
    ) -> None:
        if isinstance(value, Iterator):
            # A cached iterator would be empty on every hit after the first: a wrong value.
            raise UnstorableResult(f"{type(value).__qualname__} is an iterator, usable only once")
        self._values[key] = value

    def close(self) -> None:
        """Nothing to release: the values go when the store is dropped."""


class MemoryBackend(Backend):
    persistent = False

    def __init__(self, db_file: str) -> None:
        """``db_file`` is ignored: entries die with the process, so nothing is catalogued."""

    def open_folder(self, folder: str) -> FolderStore:
        return MemoryFolder()

    def close(self) -> None:
        """Nothing to release."""
