"""IN_MEMORY: a dict per folder, in this process only; no files, no catalogue."""

from __future__ import annotations

import pickle
import sys
import threading
import time
from collections import OrderedDict
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
        self._values[key] = _kept(value, expire)

    def delete(self, key: str) -> bool:
        return self._values.pop(key, MISSING) is not MISSING

    def delete_function(self, identity: Identity) -> int:
        doomed = [key for key in list(self._values) if identity.clears(key)]
        return sum(self._values.pop(key, MISSING) is not MISSING for key in doomed)

    def close(self) -> None:
        """Nothing to release: the values go when the store is dropped."""


def _kept(value: Any, expire: float | None) -> Any:
    """``value`` as a folder keeps it; UnstorableResult for an iterator."""
    if isinstance(value, Iterator):
        # A cached iterator would be empty on every hit after the first: a wrong value.
        raise UnstorableResult(f"{type(value).__qualname__} is an iterator, usable only once")
    return value if expire is None else _Expiring(value, time.monotonic() + expire)


class BoundedMemoryFolder(FolderStore):
    """A MemoryFolder of at most ``limit`` bytes, each value counted by the size of its
    pickle (``sys.getsizeof`` if it cannot be pickled: an underestimate for containers).
    Past the limit the least recently used entries go first; a value larger than the limit
    is not stored.

    A separate class, so that an unbounded folder's hit stays one dict lookup; here a hit
    also moves its entry to the end of the order, under a lock.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        return self._find(key, use=True)

    def peek(self, key: str) -> Any:
        return self._find(key, use=False)

    def _find(self, key: str, *, use: bool) -> Any:
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return MISSING
            value = found[0]
            if type(value) is _Expiring:
                if value.deadline <= time.monotonic():
                    self._remove(key)
                    return MISSING
                value = value.value
            if use:
                self._values.move_to_end(key)
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
        kept = _kept(value, expire)
        size = _pickled_size(value)
        if size > self._limit:
            raise UnstorableResult(
                f"the result ({type(value).__qualname__}, {size} bytes pickled) is larger "
                f"than the folder's size_limit of {self._limit} bytes: returned, not stored"
            )
        with self._lock:
            self._remove(key)
            self._values[key] = (kept, size)
            self._used += size
            while self._used > self._limit:
                self._remove(next(iter(self._values)))

    def _remove(self, key: str) -> bool:
        found = self._values.pop(key, None)
        if found is None:
            return False
        self._used -= found[1]
        return True

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._remove(key)

    def delete_function(self, identity: Identity) -> int:
        with self._lock:
            return sum(self._remove(key) for key in list(self._values) if identity.clears(key))

    def close(self) -> None:
        """Nothing to release: the values go when the store is dropped."""


class _ByteCounter:
    """A file that keeps nothing and counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> None:
        self.size += memoryview(data).nbytes


def _pickled_size(value: Any) -> int:
    """The size of ``value``'s pickle, without holding the pickle in memory."""
    counter = _ByteCounter()
    try:
        pickle.Pickler(counter, pickle.HIGHEST_PROTOCOL).dump(value)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return sys.getsizeof(value)
    return counter.size


class MemoryBackend(Backend):
    persistent = False

    def __init__(self, settings: Settings) -> None:
        """Entries die with the process, so nothing is catalogued and ``db_file`` is unused."""
        self._size_limit = settings.size_limit

    def open_folder(self, folder: str) -> FolderStore:
        if self._size_limit is None:
            return MemoryFolder()
        return BoundedMemoryFolder(self._size_limit)

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        return []

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""
