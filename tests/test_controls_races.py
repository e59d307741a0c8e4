"""The per-call controls and the test helpers against what runs beside them: calls in flight,
queued writes, close(), a full folder."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage
from my_cache.testing import caching_disabled, fresh_cache
from tests.helpers import threads_waiting_in_flight, wait_until


@pytest.mark.parametrize("storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_refresh_waits_for_a_call_in_flight_and_is_not_undone(
    tmp_path: Path, storage: TypeStorage
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=storage)
    source = {"value": "old"}
    computing, go = threading.Event(), threading.Event()

    @stor.cache(folder=str(tmp_path / "f"), ignore=["computing", "go"])
    def f(x: int) -> str:
        value = source["value"]
        if threading.current_thread().name == "slow":
            computing.set()
            go.wait(30)
        return value

    slow = threading.Thread(target=f, args=(1,), name="slow")
    slow.start()
    computing.wait(30)
    source["value"] = "new"
    refreshed: list[str] = []
    refresher = threading.Thread(target=lambda: refreshed.append(f.refresh(1)))
    refresher.start()
    assert wait_until(lambda: threads_waiting_in_flight() == 1)  # the refresh waits
    go.set()
    slow.join()
    refresher.join()
    assert refreshed == ["new"]
    assert f(1) == "new"
    stor.close()


def test_async_refresh_waits_for_a_task_in_flight_and_is_not_undone(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db")
    source = {"value": "old"}

    async def scenario() -> tuple[str, str]:
        gate = asyncio.Event()

        @stor.cache_async(folder=str(tmp_path / "a"), ignore=["gate"])
        async def g(x: int) -> str:
            value = source["value"]
            if asyncio.current_task().get_name() == "slow":  # type: ignore[union-attr]
                await gate.wait()
            return value

        slow = asyncio.create_task(g(1), name="slow")
        await asyncio.sleep(0)  # the slow task starts computing
        source["value"] = "new"
        refresh = asyncio.create_task(g.refresh(1))
        await asyncio.sleep(0)
        gate.set()
        await slow
        refreshed = await refresh
        await stor.join()
        return refreshed, await g(1)

    assert asyncio.run(scenario()) == ("new", "new")
    stor.close()


def test_async_refreshes_land_in_their_order(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db")
    values = iter(["first " + "x" * 5_000_000, "second"])

    @stor.cache_async(folder=str(tmp_path / "a"))
    async def g(x: int) -> str:
        return next(values)

    async def scenario() -> str:
        await asyncio.gather(g.refresh(1), g.refresh(1))
        await stor.join()
        return await g(1)

    assert asyncio.run(scenario()) == "second"
    stor.close()


@pytest.mark.parametrize(
    ("storage", "limit", "result"),
    [
        (TypeStorage.IN_MEMORY, 100_000, "big"),
        (TypeStorage.IN_DISK, 100_000, "big"),
        (TypeStorage.IN_DISK, None, "lock"),
    ],
)
def test_a_refresh_that_cannot_be_stored_removes_the_old_entry(
    tmp_path: Path, storage: TypeStorage, limit: int | None, result: str
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=storage, size_limit=limit)
    kind = ["small"]

    @stor.cache(folder=str(tmp_path / "f"))
    def f(x: int) -> Any:
        if kind[0] == "small":
            return "old"
        return "N" * 200_000 if result == "big" else threading.Lock()

    assert f(1) == "old"
    kind[0] = result
    with capture_logs():
        f.refresh(1)
    assert not f.is_cached(1)  # never the old value again
    stor.close()


def test_async_refresh_with_caching_off_caches_nothing(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db")
    runs: list[int] = []

    @stor.cache_async(folder=str(tmp_path / "a"))
    async def g(x: int) -> int:
        runs.append(x)
        return x

    async def scenario() -> bool:
        await g.refresh(1)
        await g(1)
        return await g.is_cached(1)

    with caching_disabled():
        assert asyncio.run(scenario()) is False
    assert runs == [1, 1]
    stor.close()


def test_close_inside_a_block_keeps_cache_async_in_the_blocks_stores(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "real/my.db")  # IN_MEMORY: cache_async on disk
    runs: list[int] = []

    @stor.cache_async(folder=str(tmp_path / "real/a"))
    async def g(x: int) -> int:
        runs.append(x)
        return x

    async def call(x: int) -> None:
        await g(x)
        await stor.join()

    asyncio.run(call(1))
    with fresh_cache(tmp_path / "fresh"):
        stor.close()
        asyncio.run(call(1))  # the block's store is empty: it runs
        asyncio.run(call(2))
    assert runs == [1, 1, 2]
    assert not asyncio.run(g.is_cached(2))  # written in the block's store only
    with caching_disabled():
        stor.close()
    asyncio.run(call(3))
    stor.close()
    assert asyncio.run(g.is_cached(3))  # written to disk again, not to memory


def test_functions_decorated_in_a_block_keep_their_redis_folder(
    redis_env: dict[str, str], tmp_path: Path
) -> None:
    stor = CacheStor()
    with caching_disabled():

        @stor.cache(folder="shared/ns")
        def inside(x: int) -> int:
            return x

    with fresh_cache(tmp_path / "fresh"):

        @stor.cache(folder="shared/ns")
        def inside_fresh(x: int) -> int:
            return x

    inside(1), inside_fresh(2)
    names = redis.Redis.from_url(redis_env["MYCACHE_REDIS_URL"]).keys("mycache:e:*")
    assert len(names) == 2
    assert all(name.startswith(b"mycache:e:{shared/ns:") for name in names)
    stor.close()


@pytest.mark.parametrize("storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_a_call_in_flight_when_a_block_ends_is_not_written_where_it_did_not_start(
    tmp_path: Path, storage: TypeStorage
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=storage)
    source = {"value": "real"}
    computing, go = threading.Event(), threading.Event()

    @stor.cache(folder=str(tmp_path / "f"), ignore=["computing", "go"])
    def f(x: int) -> str:
        value = source["value"]
        computing.set()
        go.wait(30)
        return value

    with fresh_cache(tmp_path / "fresh"):
        source["value"] = "mocked"
        started = threading.Thread(target=f, args=(1,))
        started.start()
        computing.wait(30)
    source["value"] = "real"
    go.set()
    started.join()
    assert f(1) == "real"
    stor.close()


def test_a_value_that_can_never_fit_beside_the_database_evicts_nothing(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage="in_disk", size_limit=60_000)

    @stor.cache(folder=str(tmp_path / "f"))
    def blob(n: int) -> bytes:
        return bytes(n)

    for n in range(5):
        blob(n)
    with capture_logs() as events:
        blob(58_000)  # under the limit, but not beside an empty store's 32 kB database
    assert [e["event"] for e in events] == ["my_cache.unstorable_result"]
    assert all(blob.is_cached(n) for n in range(5))
    stor.close()


CLEARING: list[Any] = []


def clear_and_fail() -> None:
    CLEARING[0].cache_clear()
    raise ValueError("gone")


class ClearsWhenLoaded:
    def __reduce__(self) -> tuple[Any, ...]:
        return clear_and_fail, ()


def test_hits_never_go_negative_when_cleared_during_a_call(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage="in_disk")

    @stor.cache(folder=str(tmp_path / "f"))
    def f(x: int) -> object:
        return ClearsWhenLoaded() if x == 1 else x

    CLEARING[:] = [f]
    f(1)
    with capture_logs():  # loading it clears f, after this call was counted, then misses
        f(1)
    assert f.cache_info() == (0, 1)
    stor.close()


def test_is_cached_is_no_use_for_least_recently_used_eviction() -> None:
    stor = CacheStor(type_storage="in_memory", size_limit=250_000)

    @stor.cache(folder="f")
    def blob(name: str) -> bytes:
        return bytes(100_000)

    blob("a"), blob("b")
    assert blob.is_cached("a")  # a look, not a use: "a" is still the least recently used
    blob("c")
    assert (blob.is_cached("a"), blob.is_cached("b"), blob.is_cached("c")) == (False, True, True)
