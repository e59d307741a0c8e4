"""The interface every storage backend implements."""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What ``FolderStore.get`` returns on a miss (a stored None is a hit)."""


class Deferred:
    """A stored value whose loading is slow (a large file): call ``load()`` off the event loop."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[], Any]) -> None:
        self.load = load


class UnstorableResult(Exception):
    """A function's result that this backend cannot store; the caller still gets it."""


class FolderStore(ABC):
    """The entries of one ``folder``; keys already name the function they belong to."""

    @abstractmethod
    def get(self, key: str) -> Any:
        """The stored value, or MISSING. A damaged entry is dropped, warned of, and a miss."""

    def fetch(self, key: str) -> Any:
        """Like ``get``, but a value that is slow to load may come back as a Deferred."""
        return self.get(key)

    @abstractmethod
    def set(
        self, key: str, value: Any, *, function: str, arg_string: Callable[[], str]
    ) -> None:
        """Store ``value`` under ``key``; raises UnstorableResult, storing nothing, if it can't.

        ``arg_string()`` gives the serialiser's description of the arguments, for stores that
        catalogue their entries; it is a callable because building it costs a second encoding.
        """

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds open."""


class Backend(ABC):
    """One kind of storage (TypeStorage), created with the CacheStor's ``db_file``."""

    persistent: bool
    """Whether entries outlive the process (cache_async uses only such backends)."""

    @abstractmethod
    def open_folder(self, folder: str) -> FolderStore:
        """The store of ``folder`` (an absolute path), created if it does not exist."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend itself holds open (its catalogue)."""


def dump_result(value: Any) -> bytes:
    """A result as pickle bytes, or UnstorableResult saying why it cannot be pickled."""
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as error:
        raise UnstorableResult(f"{type(value).__qualname__} cannot be pickled: {error}") from error
