"""Caching off (the ``enabled`` setting): a backend that finds nothing and keeps nothing.

No file, folder or connection is made; every call is a miss and runs its function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from my_cache._storages.base import MISSING, Backend, Entry, FolderStore

if TYPE_CHECKING:
    from my_cache._identity import Identity


class NullFolder(FolderStore):
    def get(self, key: str) -> Any:
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
        """Keeps nothing."""

    def delete(self, key: str) -> bool:
        return False

    def delete_function(self, identity: Identity) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""


class NullBackend(Backend):
    # Stands in for any backend, cache_async's persistent one included.
    persistent = True

    def open_folder(self, folder: str) -> FolderStore:
        return NullFolder()

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        return []

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""
