"""The interface every storage backend implements."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from my_cache.settings import expand_path

if TYPE_CHECKING:
    from my_cache._identity import Identity


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What ``FolderStore.get`` returns on a miss (a stored None is a hit)."""


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


WAIT: Final = _Wait()
"""What ``FolderStore.attempt`` returns while another process computes the key."""


class Deferred:
    """A stored value whose loading is slow (a large file): call ``load()`` off the event loop."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[], Any]) -> None:
        self.load = load


class UnstorableResult(Exception):
    """A function's result that this backend cannot store; the caller still gets it."""


class StoreUnavailable(Exception):
    """The store cannot be reached for now; the store has warned of it already."""


class ForeignPath(ValueError):
    """A path in the settings or a ``folder`` holds something that is not my_cache's: it is
    refused before anything is written to it. The message names the path and the remedy."""


@dataclass(frozen=True)
class Entry:
    """One catalogued entry, as ``mycache ls`` shows it."""

    folder: str
    function: str
    key: str
    arg_string: str
    size: int
    created: float
    expires: float | None


class FolderTotals(NamedTuple):
    """One folder's use, as ``mycache stats`` shows it."""

    folder: str
    entries: int
    size: int
    """Bytes of its entries' stored values."""
    limit: int | None
    """Its ``size_limit`` in bytes, None when it has none."""


class FolderStore(ABC):
    """The entries of one ``folder``; a key starts with ``<function>:``, naming its function."""

    waits_for_others = False
    """Whether ``acquire`` may wait for another process (async callers then call it off the
    event loop)."""

    recently_used = False
    """Set on each use; the open stores cleared of it first are closed first."""

    @abstractmethod
    def get(self, key: str) -> Any:
        """The stored value, or MISSING. A damaged or expired entry is dropped and a miss."""

    def fetch(self, key: str) -> Any:
        """Like ``get``, but a value that is slow to load may come back as a Deferred."""
        return self.get(key)

    def get_mapped(self, key: str) -> Any:
        """Like ``get``, but large buffers of the value (arrays) may be mapped read-only from
        a file rather than read into memory: stores without files just ``get``."""
        return self.get(key)

    def peek(self, key: str) -> Any:
        """Like ``get``, but not a use of the entry for an eviction policy that counts uses."""
        return self.get(key)

    @abstractmethod
    def set(
        self,
        key: str,
        value: Any,
        *,
        function: str,
        arg_string: Callable[[], str],
        expire: float | None,
    ) -> None:
        """Store ``value`` under ``key``; raises UnstorableResult, storing nothing, if it can't.

        ``arg_string()`` gives the serialiser's description of the arguments, for stores that
        catalogue their entries; it is a callable because building it costs a second encoding.
        ``expire`` is a lifetime in seconds (None: no expiry).
        """

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove one entry; True if it existed."""

    @abstractmethod
    def delete_function(self, identity: Identity) -> int:
        """Remove the entries of the function object ``identity`` names (see
        ``Identity.clears``); how many there were."""

    def acquire(self, key: str) -> Any:
        """Before computing ``key`` on a miss: MISSING when this caller is to compute it, or
        the value another process stored meanwhile.

        A store shared between processes holds a lock for the caller until ``release``, so
        that equivalent calls elsewhere wait for its value instead of computing it too: see
        ``attempt`` and ``pauses``. Others do nothing: threads of one process are
        coordinated by the decorator.
        """
        outcome = self.attempt(key)
        for pause in self.pauses():
            if outcome is not WAIT:
                return outcome
            time.sleep(pause)
            outcome = self.attempt(key)
        return MISSING if outcome is WAIT else outcome

    def attempt(self, key: str) -> Any:
        """One step of ``acquire``: MISSING when the caller is to compute ``key`` now, the
        value if it is stored, or WAIT while another process computes it."""
        return MISSING

    def pauses(self) -> Iterator[float]:
        """The pauses between a WAIT and the next ``attempt``; when they end, the caller
        computes the key itself."""
        return iter(())

    def release(self, key: str) -> None:  # noqa: B027 (only shared stores hold locks)
        """After computing ``key`` and storing its value (or failing to)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds open."""


class Backend(ABC):
    """One kind of storage (TypeStorage), created with the CacheStor's settings."""

    persistent: bool
    """Whether entries outlive the process (cache_async and the CLI use only such backends)."""

    def folder_name(self, folder: str) -> str:
        """The name ``cache(folder=...)`` stores under: by default the absolute path, with
        ``~`` and ``$VARIABLE`` expanded (see ``expand_path``)."""
        return os.path.abspath(expand_path(folder, on_disk=self.persistent))

    @abstractmethod
    def open_folder(self, folder: str) -> FolderStore:
        """The store of ``folder`` (named by ``folder_name``), created if it does not exist."""

    @abstractmethod
    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        """The live entries, optionally of one folder and of one function.

        ``function`` matches a whole ``module:qualname``, that written with a '.' for the ':',
        or its end after a '.' or ':' (``Cls.method``, ``method``).
        Catalogue rows whose data is gone (expired, evicted, deleted) are dropped.
        """

    def totals(self, folder: str | None = None) -> list[FolderTotals]:
        """The use of each folder holding live entries, in path order."""
        return totals_of(self.entries(folder))

    @abstractmethod
    def delete_entries(self, entries: Iterable[Entry]) -> int:
        """Delete these entries (value and description together); how many were deleted."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend itself holds open (its catalogue)."""


def totals_of(
    entries: Iterable[Entry], limits: dict[str, int | None] | None = None
) -> list[FolderTotals]:
    """The use of each folder holding some of ``entries``, in path order; ``limits`` gives
    the folders' size limits (None: unknown, no limit shown)."""
    counted: dict[str, tuple[int, int]] = {}
    for entry in entries:
        count, size = counted.get(entry.folder, (0, 0))
        counted[entry.folder] = (count + 1, size + entry.size)
    limits = limits or {}
    return [FolderTotals(name, *counted[name], limits.get(name)) for name in sorted(counted)]


def names(function: str, name: str) -> bool:
    """Whether ``name`` names ``function`` (see Backend.entries): its whole module:qualname,
    that with the ':' written as '.', or a tail of either after a '.' or ':' (``func``,
    ``Cls.method``)."""
    module, colon, qualname = function.rpartition(":")  # a qualname never holds a ':'
    dotted = f"{module}.{qualname}" if colon else function
    return (
        name in (function, dotted)
        or function.endswith(("." + name, ":" + name))
        or dotted.endswith("." + name)
    )


# Longer descriptions are cut: a catalogue is for reading, and a 100 MB argument must not
# become a 100 MB row.
ARG_STRING_LIMIT = 10_000


def shortened(arg_string: str) -> str:
    """``arg_string`` as a catalogue keeps it: cut after ARG_STRING_LIMIT characters."""
    if len(arg_string) <= ARG_STRING_LIMIT:
        return arg_string
    return f"{arg_string[:ARG_STRING_LIMIT]}… ({len(arg_string)} characters)"
