"""Cached pickles are code: all the cache creates is its owner's alone, whatever the umask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

PROGRAM = """
    import asyncio, os
    os.umask({umask})
    from my_cache import CacheStor

    stor = CacheStor(db_file="deep/new/catalogue.db", type_storage="in_disk")

    @stor.cache(folder="data/a/b/store")
    def value(n):
        return bytes([n]) * (100 if n % 2 else 200_000)  # inline and value-file entries

    @stor.cache_async(folder="data/a/async_store")
    async def async_value(n):
        return bytes([n]) * 200_000

    async def main():
        for n in range(6):
            value(n)
            await async_value(n)
        await stor.join()

    asyncio.run(main())
    # While the stores are open, with SQLite's -wal and -shm files beside them:
    for root, folders, files in os.walk("."):
        for name in folders + files:
            path = os.path.join(root, name)
            print(path, oct(os.stat(path).st_mode & 0o777))
    stor.close()
"""


@pytest.mark.parametrize("umask", ["0o000", "0o022", "0o002"])
def test_every_created_folder_is_0700_and_every_file_0600(
    run_python: Any, tmp_path: Path, umask: str
) -> None:
    output = run_python(PROGRAM.format(umask=umask)).stdout
    modes = {
        Path(path): int(mode, 8)
        for path, mode in (line.split() for line in output.splitlines())
        if not path.startswith("./script_")  # the test's own program, not the cache's
    }
    names = {path.name for path in modes}
    assert names >= {"deep", "new", "data", "a", "b", "store", "async_store"}
    assert names >= {"catalogue.db", "catalogue.db-wal", "catalogue.db-shm", "cache.db-wal"}
    assert any(path.suffix == ".val" for path in modes)
    wrong = {
        str(path): oct(mode)
        for path, mode in modes.items()
        if mode != (0o700 if (tmp_path / path).is_dir() else 0o600)
    }
    assert wrong == {}
