"""IN_MEMORY: a dict per folder, in this process only; no files, no catalogue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from my_cache._storages.base import (
    MISSING,
    Backend,
    Entry,
    FolderStore,
    UnstorableResult,
)
from my_cache.settings import Settings

if TYPE_CHECKING:
    from my_cache._identity import Identity


class _Expiring:
    __slots__ = ("deadline", "value")

    def __init__(self, value: Any, deadline: float) -> None:
        self.value = value
        self.deadline = deadline


class MemoryFolder(FolderStore):
    """Values are kept as the objects themselves, as functools.lru_cache does: a hit returns
    the very object the function returned, so callers must not mutate it."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        value = self._values.get(key, MISSING)
        if type(value) is _Expiring:
            if value.deadline <= time.monotonic():
                self._values.pop(key, None)
                return MISSING
            return value.value
        return value

    def set(
        self,
        key: str,
        value: Any,
        *,
        function: str,
        arg_string: Callable[[], str],
        expire: float | None,
    ) -> None:
        if isinstance(value, Iterator):
            # A cached iterator would be empty on every hit after the first: a wrong value.
            raise UnstorableResult(f"{type(value).__qualname__} is an iterator, usable only once")
        self._values[key] = value if expire is None else _Expiring(value, time.monotonic() + expire)

    def delete(self, key: str) -> bool:
        return self._values.pop(key, MISSING) is not MISSING

    def delete_function(self, identity: Identity) -> int:
        doomed = [key for key in list(self._values) if identity.clears(key)]
        return sum(self._values.pop(key, MISSING) is not MISSING for key in doomed)

    def close(self) -> None:
        """Nothing to release: the values go when the store is dropped."""


class MemoryBackend(Backend):
    persistent = False

    def __init__(self, settings: Settings) -> None:
        """Entries die with the process, so nothing is catalogued and ``db_file`` is unused;
        ``size_limit`` (bytes) applies to disk only: in-memory sizes are not known."""

    def open_folder(self, folder: str) -> FolderStore:
        return MemoryFolder()

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        return []

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""
