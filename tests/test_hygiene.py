"""Opening, using and closing a CacheStor leaks nothing: threads, file descriptors, SQLite."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

from my_cache import CacheStor, TypeStorage


def open_files() -> list[str]:
    """What this process's file descriptors point at."""
    targets = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
    return targets


def sqlite_files(targets: list[str]) -> list[str]:
    return [t for t in targets if t.endswith((".db", ".db-wal", ".db-shm"))]


def cycle(tmp_path: Path, n: int) -> None:
    stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder=tmp_path / "sync")
    def value(i: int) -> bytes:
        return bytes([i % 256]) * (100 if i % 2 else 50_000)

    @stor.cache_async(folder=tmp_path / "async")
    async def async_value(i: int) -> bytes:
        return bytes([i % 256]) * 50_000

    async def use() -> None:
        assert await async_value(n % 7) == bytes([n % 7]) * 50_000
        await stor.join()

    i = n % 5
    assert value(i) == bytes([i]) * (100 if i % 2 else 50_000)
    asyncio.run(use())
    stor.close()


def test_a_thousand_open_use_close_cycles_leak_nothing(tmp_path: Path) -> None:
    for n in range(10):  # first use: imports, the event loop policy, caches
        cycle(tmp_path, n)
    gc.collect()
    threads, files = threading.active_count(), open_files()
    for n in range(1000):
        cycle(tmp_path, n)
    gc.collect()
    assert threading.active_count() == threads
    assert sqlite_files(open_files()) == sqlite_files(files) == []
    assert len(open_files()) == len(files)
