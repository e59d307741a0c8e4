"""The off switch (the ``enabled`` setting) and my_cache.testing's helpers for users' tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage
from my_cache.testing import caching_disabled, fresh_cache


def files_under(path: Path) -> list[str]:
    """The files and folders under ``path``; SQLite's -wal and -shm files, which come and go
    as connections open and close, left out."""
    return sorted(
        str(p.relative_to(path)) for p in path.rglob("*") if not p.name.endswith(("-wal", "-shm"))
    )


@pytest.mark.parametrize("storage", ["in_memory", "in_disk"])
def test_off_every_call_runs_and_nothing_is_written(tmp_path: Path, storage: str) -> None:
    stor = CacheStor(db_file=tmp_path / "c/my.db", type_storage=storage, enabled=False)
    runs: list[int] = []

    @stor.cache(folder=str(tmp_path / "c/f"))
    def f(x: int) -> int:
        runs.append(x)
        return x * 2

    @stor.cache_async(folder=str(tmp_path / "c/a"))
    async def g(x: int) -> int:
        runs.append(-x)
        return x * 3

    assert [f(1), f(1), f.refresh(1)] == [2, 2, 2]
    f.store(99, 1)
    assert f.is_cached(1) is False
    assert f(1) == 2
    assert f.cache_info() == (0, 4)

    async def scenario() -> list[object]:
        values = [await g(1), await g(1), await g.is_cached(1)]
        await g.store(5, 1)
        await stor.join()
        return [*values, await g(1)]

    assert asyncio.run(scenario()) == [3, 3, False, 3]
    assert runs == [1, 1, 1, 1, -1, -1, -1]
    stor.close()
    assert files_under(tmp_path) == []


def test_off_equal_calls_in_threads_all_run(tmp_path: Path) -> None:
    stor = CacheStor(enabled=False)
    together = threading.Barrier(4, timeout=30)  # broken unless all four run at once

    @stor.cache(folder="f", ignore=["together"])
    def f(x: int) -> int:
        together.wait()
        return x

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(f(1))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1, 1, 1, 1]


def test_off_from_the_environment_and_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", "in_disk")
    monkeypatch.setenv("MYCACHE_ENABLED", "false")
    assert CacheStor().enabled is False
    monkeypatch.delenv("MYCACHE_ENABLED")
    (tmp_path / "mycache.toml").write_text("enabled = false\n")
    stor = CacheStor()
    assert stor.enabled is False
    assert CacheStor(enabled=True).enabled is True

    @stor.cache(folder="cache/f")
    def f(x: int) -> int:
        return x

    assert f(1) == f(1) == 1
    assert f.cache_info() == (0, 2)
    assert files_under(tmp_path) == ["mycache.toml"]


def test_off_in_redis_makes_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens there: a connection attempt would be warned of as an outage.
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", "in_redis")
    monkeypatch.setenv("MYCACHE_REDIS_URL", "redis://127.0.0.1:9/0")
    stor = CacheStor(enabled=False)

    @stor.cache(folder="f")
    def f(x: int) -> int:
        return x

    with capture_logs() as events:
        assert f(1) == f(1) == 1
        f.store(2, 1)
        assert not f.is_cached(1)
        f.cache_clear()
    assert events == []
    stor.close()


def make_cached(stor: CacheStor, folder: Path, runs: list[int]) -> Any:
    @stor.cache(folder=str(folder))
    def triple(x: int) -> int:
        runs.append(x)
        return 3 * x

    return triple


@pytest.mark.parametrize("storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_caching_disabled_turns_off_existing_and_new_caches(
    tmp_path: Path, storage: TypeStorage
) -> None:
    stor = CacheStor(db_file=tmp_path / "c/my.db", type_storage=storage)
    runs: list[int] = []
    triple = make_cached(stor, tmp_path / "c/f", runs)
    assert triple(1) == 3
    before = files_under(tmp_path)
    with caching_disabled():
        made_inside = CacheStor(db_file=tmp_path / "inside/my.db", type_storage=storage)
        other = make_cached(made_inside, tmp_path / "inside/f", runs)
        assert [triple(1), triple(1), triple(2), other(5), other(5)] == [3, 3, 6, 15, 15]
        assert triple.is_cached(1) is False
    assert files_under(tmp_path) == before
    assert runs == [1, 1, 1, 2, 5, 5]
    assert triple(1) == 3  # stored before, there again
    assert triple.is_cached(1) and not triple.is_cached(2)
    assert other(5) == other(5) == 15  # caching again
    assert runs == [1, 1, 1, 2, 5, 5, 5]
    stor.close()
    made_inside.close()


def test_fresh_cache_starts_empty_and_leaves_the_real_one_alone(tmp_path: Path) -> None:
    real = tmp_path / "real"
    disk = CacheStor(db_file=real / "my.db", type_storage=TypeStorage.IN_DISK)
    memory = CacheStor(type_storage=TypeStorage.IN_MEMORY)
    runs: list[int] = []
    on_disk = make_cached(disk, real / "f", runs)
    in_memory = make_cached(memory, real / "m", runs)
    assert on_disk(1) == in_memory(1) == 3
    real_files = files_under(real)
    with fresh_cache(tmp_path / "fresh") as root:
        assert root == tmp_path / "fresh"
        assert not on_disk.is_cached(1) and not in_memory.is_cached(1)
        assert on_disk(1) == on_disk(1) == in_memory(1) == in_memory(1) == 3
        on_disk.store(-1, 7)
        assert on_disk(7) == -1
        assert files_under(real) == real_files
        assert any(name.endswith("my.db") for name in files_under(root))
    assert runs == [1, 1, 1, 1]  # one run each outside, one each inside
    assert files_under(real) == real_files
    assert on_disk.is_cached(1) and in_memory.is_cached(1)
    assert not on_disk.is_cached(7)
    disk.close()
    memory.close()


def test_fresh_cache_holds_cache_async_results_too(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "real/my.db")

    @stor.cache_async(folder=str(tmp_path / "real/a"))
    async def square(x: int) -> int:
        return x * x

    async def twice() -> list[bool]:
        first = await square.is_cached(4)
        await square(4)
        await stor.join()
        return [first, await square.is_cached(4)]

    with fresh_cache(tmp_path / "fresh"):
        assert asyncio.run(twice()) == [False, True]
    assert not (tmp_path / "real").exists()
    assert asyncio.run(twice()) == [False, True]
    stor.close()


def test_the_pytest_fixtures_come_with_the_package(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mycache.toml").write_text('type_storage = "in_disk"\ndb_file = "cache/my.db"\n')
    (project / "app.py").write_text(
        textwrap.dedent(
            """
            from my_cache import CacheStor

            stor = CacheStor()
            runs = []

            @stor.cache(folder="cache/squares")
            def square(n):
                runs.append(n)
                return n * n
            """
        )
    )
    (project / "test_app.py").write_text(
        textwrap.dedent(
            """
            import app

            def test_off(mycache_disabled):
                app.runs.clear()
                assert app.square(3) == app.square(3) == 9
                assert app.runs == [3, 3]

            def test_fresh(mycache_fresh):
                app.runs.clear()
                assert app.square(3) == app.square(3) == 9
                assert app.runs == [3]
                assert (mycache_fresh / "cache-1" / "my.db").exists()
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MYCACHE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert not (project / "cache").exists()
