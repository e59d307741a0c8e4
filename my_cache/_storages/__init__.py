"""Storage backends: one module each, registered here by their TypeStorage."""

from __future__ import annotations

from collections.abc import Callable

from my_cache._storages.base import Backend
from my_cache._storages.disk import DiskBackend
from my_cache._storages.memory import MemoryBackend
from my_cache.settings import Settings, TypeStorage


def _redis_backend(settings: Settings) -> Backend:
    # redis-py is an optional dependency (the "redis" extra): imported only when used.
    try:
        from my_cache._storages.redis_store import RedisBackend
    except ImportError as error:
        raise ImportError(
            'TypeStorage.IN_REDIS needs redis-py: pip install "my_cache[redis]"'
        ) from error
    return RedisBackend(settings)


BACKENDS: dict[TypeStorage, Callable[[Settings], Backend]] = {
    TypeStorage.IN_MEMORY: MemoryBackend,
    TypeStorage.IN_DISK: DiskBackend,
    TypeStorage.IN_REDIS: _redis_backend,
}
