"""Storage backends: one module each, registered here by their TypeStorage."""

from __future__ import annotations

from collections.abc import Callable

from my_cache._storages.base import Backend
from my_cache._storages.disk import DiskBackend
from my_cache._storages.memory import MemoryBackend
from my_cache.settings import TypeStorage

# Each is created with the settings' db_file and size_limit.
BACKENDS: dict[TypeStorage, Callable[[str, int | None], Backend]] = {
    TypeStorage.IN_MEMORY: MemoryBackend,
    TypeStorage.IN_DISK: DiskBackend,
}
