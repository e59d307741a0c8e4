"""Helpers for the test suites of programs that use my_cache.

For the length of a ``with`` block, every CacheStor of the process (those made before and
those made inside) caches nothing, or caches into a fresh, empty, temporary store::

    from my_cache.testing import caching_disabled, fresh_cache

    def test_report_is_computed(tmp_path):
        with fresh_cache(tmp_path):
            assert build_report() == expected

With pytest, the fixtures ``mycache_disabled`` and ``mycache_fresh`` do the same (the
``my_cache`` plugin, registered when my_cache is installed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from my_cache import cache_stor
from my_cache._storages.base import Backend
from my_cache._storages.disk import DiskBackend, DiskFolder
from my_cache._storages.memory import MemoryBackend
from my_cache._storages.null import NullBackend
from my_cache.settings import Settings

__all__ = ["caching_disabled", "fresh_cache"]


@contextmanager
def caching_disabled() -> Iterator[None]:
    """Inside, caching is off everywhere, as with the setting ``enabled = false``: every
    call runs its function; nothing is read or written. Stores are left as they were."""
    with _redirected(lambda backend, settings: NullBackend(), enabled=False):
        yield


@contextmanager
def fresh_cache(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Inside, every cache starts empty: IN_MEMORY ones in memory; IN_DISK, IN_REDIS and
    cache_async ones in IN_DISK stores under ``path`` (a folder of the test's, e.g.
    pytest's ``tmp_path``), with the settings of each cache (size limit included). What
    was stored before is neither seen nor changed, and is there again afterwards."""
    root = Path(path).absolute()
    made = 0

    def fresh(backend: Backend, settings: Settings) -> Backend:
        nonlocal made
        if isinstance(backend, NullBackend):
            return backend  # caching is off: it stays off
        if isinstance(backend, MemoryBackend):
            return MemoryBackend(settings)
        made += 1
        return _TemporaryDisk(settings, root / f"cache-{made}")

    with _redirected(fresh, enabled=None):
        yield root


@contextmanager
def _redirected(
    make: Callable[[Backend, Settings], Backend], enabled: bool | None
) -> Iterator[None]:
    restores: list[Callable[[], None]] = []

    def redirect(stor: cache_stor.CacheStor) -> None:
        restores.append(stor._redirect(make, enabled))

    with cache_stor._live_lock:
        for stor in list(cache_stor._live):
            redirect(stor)
        cache_stor._on_create.append(redirect)
    try:
        yield
    finally:
        with cache_stor._live_lock:
            cache_stor._on_create.remove(redirect)
        for restore in reversed(restores):
            restore()


class _TemporaryDisk(DiskBackend):
    """IN_DISK under ``root``: its catalogue there, and each folder a folder there, named
    after the folder (or IN_REDIS name) it stands in for."""

    def __init__(self, settings: Settings, root: Path) -> None:
        super().__init__(settings.model_copy(update={"db_file": str(root / "my.db")}))
        self._root = root

    def open_folder(self, folder: str) -> DiskFolder:
        if not Path(folder).is_relative_to(self._root):  # listings open registered ones
            digest = hashlib.blake2b(folder.encode(), digest_size=6).hexdigest()
            folder = str(self._root / f"{Path(folder).name[:40]}-{digest}")
        return super().open_folder(folder)
