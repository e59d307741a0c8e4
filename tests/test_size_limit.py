"""size_limit: a bound on each folder's bytes, on disk and in memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage
from my_cache._storages.disk import DiskBackend
from my_cache.settings import load_settings

KB = 1000


def blob_function(stor: CacheStor, folder: Path, runs: list[int]) -> Any:
    @stor.cache(folder=str(folder))
    def blob(n: int, size: int = 40 * KB) -> bytes:
        runs.append(n)
        return os.urandom(size)

    return blob


@pytest.mark.parametrize("storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_a_value_larger_than_the_limit_is_returned_not_stored_and_evicts_nothing(
    tmp_path: Path, storage: TypeStorage
) -> None:
    stor = CacheStor(db_file=tmp_path / "my.db", type_storage=storage, size_limit=200 * KB)
    runs: list[int] = []
    blob = blob_function(stor, tmp_path / "blobs", runs)
    small = [blob(n, 10 * KB) for n in range(3)]
    with capture_logs() as events:
        big = blob(99, 300 * KB)
    assert len(big) == 300 * KB
    (warning,) = events
    assert warning["event"] == "my_cache.unstorable_result"
    assert warning["function"].endswith("blob")
    assert "larger than the folder's size_limit of 200000 bytes" in warning["reason"]
    assert not blob.is_cached(99, 300 * KB)
    assert [blob(n, 10 * KB) for n in range(3)] == small  # all still there
    assert runs == [0, 1, 2, 99]
    stor.close()


def test_on_disk_the_most_recently_stored_stay(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "my.db", type_storage="in_disk", size_limit=250 * KB)
    runs: list[int] = []
    blob = blob_function(stor, tmp_path / "blobs", runs)
    for n in range(12):
        blob(n)
    kept = [n for n in range(12) if blob.is_cached(n)]
    assert 3 <= len(kept) < 7
    assert kept == list(range(12 - len(kept), 12))  # the newest, in one run
    (totals,) = DiskBackend(load_settings(db_file=str(tmp_path / "my.db"))).totals()
    assert totals.limit == 250 * KB
    assert totals.entries == len(kept)
    assert totals.size <= 250 * KB
    stor.close()


def test_in_memory_the_most_recently_used_stay(tmp_path: Path) -> None:
    stor = CacheStor(type_storage="in_memory", size_limit=200 * KB)
    runs: list[int] = []
    blob = blob_function(stor, tmp_path / "blobs", runs)
    for n in range(4):
        blob(n)
    blob(0)  # used again: the least recently used is now 1
    blob(4)
    assert [n for n in range(5) if blob.is_cached(n)] == [0, 2, 3, 4]
    assert runs == [0, 1, 2, 3, 4]
    blob.invalidate(4)
    blob(5)  # fits where 4 was
    assert [n for n in range(6) if blob.is_cached(n)] == [0, 2, 3, 5]


def test_in_memory_a_limit_counts_the_pickled_size_of_objects(tmp_path: Path) -> None:
    stor = CacheStor(type_storage="in_memory", size_limit=50 * KB)

    @stor.cache(folder="rows")
    def rows(n: int) -> list[dict[str, int]]:
        return [{"i": i} for i in range(n)]

    @stor.cache(folder="locks")
    def lock(n: int) -> Any:
        return threading.Lock()  # cannot be pickled: counted by sys.getsizeof

    with capture_logs() as events:
        rows(100_000)  # ~1 MB pickled
    assert [e["event"] for e in events] == ["my_cache.unstorable_result"]
    assert not rows.is_cached(100_000)
    rows(10)
    assert rows.is_cached(10)
    assert lock(1) is lock(1)  # stored: the very object comes back, as in memory it does


def test_without_a_limit_nothing_is_evicted(tmp_path: Path) -> None:
    for storage in ("in_memory", "in_disk"):
        stor = CacheStor(db_file=tmp_path / f"{storage}.db", type_storage=storage)
        runs: list[int] = []
        blob = blob_function(stor, tmp_path / storage, runs)
        for n in range(20):
            blob(n)
        assert all(blob.is_cached(n) for n in range(20))
        stor.close()


def test_size_limit_is_an_argument_and_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CacheStor(size_limit=1000)._settings.size_limit == 1000
    monkeypatch.setenv("MYCACHE_SIZE_LIMIT", "2000")
    assert CacheStor()._settings.size_limit == 2000
    with pytest.raises(ValueError, match="size_limit"):
        CacheStor(size_limit=0)
