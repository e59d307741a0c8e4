"""Per-call controls: is_cached, refresh and store, on every storage, sync and async."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, CacheStoreError, TypeStorage
from tests.helpers import threads_waiting_in_flight, wait_until


@pytest.fixture(params=["memory", "disk", "redis"])
def any_stor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheStor]:
    if request.param == "redis":
        request.getfixturevalue("redis_env")
        stor = CacheStor()
    else:
        stor = CacheStor(db_file=tmp_path / "c.db", type_storage=f"in_{request.param}")
    yield stor
    stor.close()


def test_is_cached_tells_a_hit_from_a_miss_without_running_or_counting(
    any_stor: CacheStor, tmp_path: Path
) -> None:
    runs: list[tuple[int, int]] = []

    @any_stor.cache(folder=str(tmp_path / "area"))
    def area(w: int, h: int = 1) -> int:
        runs.append((w, h))
        return w * h

    assert area.is_cached(3, 2) is False
    assert area(3, 2) == 6
    # Equivalent calls are one entry here too.
    assert area.is_cached(3, 2) is area.is_cached(w=3, h=2) is area.is_cached(h=2, w=3) is True
    assert area.is_cached(3) is False
    assert area(3) == 3
    assert area.is_cached(3, 1) is True
    assert runs == [(3, 2), (3, 1)]
    assert area.cache_info() == (0, 2)
    area.invalidate(3, 2)
    assert area.is_cached(3, 2) is False


def test_refresh_runs_the_function_and_replaces_the_entry(
    any_stor: CacheStor, tmp_path: Path
) -> None:
    version = [1]

    @any_stor.cache(folder=str(tmp_path / "read"))
    def read(name: str) -> str:
        return f"{name} v{version[0]}"

    assert read("a") == "a v1"
    version[0] = 2
    assert read("a") == "a v1"  # cached
    assert read.refresh(name="a") == "a v2"
    assert read("a") == "a v2"
    assert read.cache_info() == (2, 2)  # refresh is a call and a miss
    assert read.refresh("never called before") == "never called before v2"
    assert read.is_cached("never called before")


def test_store_puts_a_value_computed_elsewhere(any_stor: CacheStor, tmp_path: Path) -> None:
    runs = []

    @any_stor.cache(folder=str(tmp_path / "price"))
    def price(item: str, qty: int = 1) -> float:
        runs.append(item)
        return 1.0 * qty

    assert price.store(9.5, "pear", qty=2) is None
    assert price.is_cached("pear", 2)
    assert price(item="pear", qty=2) == 9.5
    price.store(7.0, "pear", 2)  # replaces
    assert price("pear", 2) == 7.0
    assert runs == []
    # store(value, /, ...): a parameter named "value" is the call's, not the stored value.
    assert price.cache_info() == (2, 0)


def test_stored_values_outlive_the_process_on_disk(tmp_path: Path) -> None:
    def make() -> Any:
        stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

        @stor.cache(folder=str(tmp_path / "f"))
        def f(x: int) -> int:
            raise AssertionError("not run: its value was stored")

        return stor, f

    stor, f = make()
    f.store([1, 2], 5)
    stor.close()
    stor, f = make()
    assert f.is_cached(5)
    assert f(5) == [1, 2]
    stor.close()


def test_a_parameter_named_value_stays_the_calls(stor: CacheStor, tmp_path: Path) -> None:
    @stor.cache(folder=str(tmp_path / "v"))
    def f(value: int) -> int:
        return value * 10

    f.store(1, value=2)
    assert f(2) == 1
    assert f(3) == 30


def test_store_says_why_it_cannot(disk_stor: CacheStor, tmp_path: Path) -> None:
    @disk_stor.cache(folder=str(tmp_path / "f"))
    def f(x: int) -> object:
        return x

    with pytest.raises(
        CacheStoreError, match=r"cannot store a value of .*f in .*cannot be pickled"
    ):
        f.store(threading.Lock(), 1)
    assert not f.is_cached(1)
    # Arguments the function would refuse are refused as it would refuse them.
    with pytest.raises(TypeError, match=r"f\(\) got an unexpected keyword argument 'y'"):
        f.store(1, y=2)
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'x'"):
        f.is_cached()


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def scale(self, x: int) -> int:
        return self.factor * x


def test_methods_take_their_instance_through_the_class(
    stor: CacheStor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scale = stor.cache(folder=str(tmp_path / "m"))(Scaler.scale)
    monkeypatch.setattr(Scaler, "scale", scale)
    two = Scaler(2)
    assert two.scale(3) == 6
    assert scale.is_cached(two, 3)
    assert not scale.is_cached(Scaler(5), 3)
    scale.store(100, two, x=4)
    assert two.scale(4) == 100


def test_async_controls_are_coroutine_functions(any_stor: CacheStor, tmp_path: Path) -> None:
    version = [1]

    @any_stor.cache_async(folder=str(tmp_path / "fetch"))
    async def fetch(url: str, retries: int = 3) -> str:
        return f"{url} v{version[0]}"

    for control in (fetch.is_cached, fetch.refresh, fetch.store):
        assert inspect.iscoroutinefunction(control)

    async def scenario() -> None:
        assert await fetch.is_cached("u") is False
        assert await fetch("u") == "u v1"
        assert await fetch.is_cached(url="u", retries=3)  # served from the write buffer or store
        await any_stor.join()
        assert await fetch.is_cached("u")
        version[0] = 2
        assert await fetch.refresh("u") == "u v2"
        assert await fetch("u") == "u v2"
        await fetch.store("stored", "w", retries=1)
        assert await fetch("w", 1) == "stored"
        assert fetch.cache_info() == (2, 2)

    asyncio.run(scenario())


def test_async_store_is_written_when_it_returns(tmp_path: Path) -> None:
    def make(stor: CacheStor) -> Any:
        @stor.cache_async(folder=str(tmp_path / "a"))
        async def double(x: int) -> int:
            return 2 * x

        return double

    stor = CacheStor(db_file=tmp_path / "c.db")
    asyncio.run(make(stor).store(41, 20))
    with pytest.raises(CacheStoreError, match="cannot store"):
        asyncio.run(make(stor).store(threading.Lock(), 1))
    # Another cache on the same files, before join() or close(): the value is there.
    other = CacheStor(db_file=tmp_path / "c.db")
    assert asyncio.run(make(other)(20)) == 41
    assert asyncio.run(make(other).is_cached(1)) is False
    other.close()
    stor.close()


def test_async_refresh_wins_over_a_write_still_queued(tmp_path: Path) -> None:
    db_file = tmp_path / "c.db"
    version = [1]
    gate = threading.Event()

    def make(stor: CacheStor) -> Any:
        @stor.cache_async(folder=str(tmp_path / "a"))
        async def value(x: int) -> str:
            return f"v{version[0]}"

        return value

    stor = CacheStor(db_file=db_file, type_storage=TypeStorage.IN_DISK)
    value = make(stor)
    # Hold the writer's threads, so that the first result's write is queued behind them.
    blockers = [stor._writer.run(gate.wait) for _ in range(stor._settings.max_workers)]

    async def scenario() -> str:
        first = await value(1)
        version[0] = 2
        refresh = asyncio.ensure_future(value.refresh(1))
        await asyncio.sleep(0)
        gate.set()
        return first + " " + await refresh

    assert asyncio.run(scenario()) == "v1 v2"
    assert all(blocker.result() for blocker in blockers)
    stor.close()
    reopened = CacheStor(db_file=db_file, type_storage=TypeStorage.IN_DISK)
    assert asyncio.run(make(reopened)(1)) == "v2"
    reopened.close()


BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1, 2, 3), {}),
    ((1,), {"d": 4}),
    ((1,), {"a": 1}),
    ((1, 2), {"b": 2}),
]


def raised(call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseException:
    with pytest.raises(TypeError) as caught:
        result = call(*args, **kwargs)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    return caught.value


@pytest.mark.parametrize(("args", "kwargs"), BAD_CALLS)
def test_a_refused_call_raises_the_functions_own_type_error(
    stor: CacheStor, tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def plain(a: int, b: int = 1, *, c: int = 2) -> int:
        return a + b + c

    async def plain_async(a: int, /, b: int = 1) -> int:
        return a + b

    class Box:
        def method(self, a: int, b: int = 1) -> int:
            return a + b

    cases = [
        (plain, stor.cache(folder=str(tmp_path / "p"))(plain)),
        (plain_async, stor.cache_async(folder=str(tmp_path / "q"))(plain_async)),
        (Box().method, stor.cache(folder=str(tmp_path / "m"))(Box().method)),
    ]
    for original, decorated in cases:
        expected, got = raised(original, args, kwargs), raised(decorated, args, kwargs)
        assert type(got) is TypeError
        assert str(got) == str(expected)
        assert got.__cause__ is None and got.__suppress_context__  # no cache frames chained
        assert decorated.cache_info() == (0, 0)
        assert str(raised(decorated.refresh, args, kwargs)) == str(expected)


def test_threads_served_by_another_threads_run_log_a_hit(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK, is_debug_log=True)
    release = threading.Event()

    @stor.cache(folder=str(tmp_path / "slow"), ignore=["release"])
    def slow(x: int) -> int:
        release.wait(30)
        return x

    with capture_logs() as events:
        threads = [threading.Thread(target=slow, args=(1,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: threads_waiting_in_flight() == 5)
        release.set()
        for thread in threads:
            thread.join()
    hits = [e for e in events if e["event"] == "my_cache.hit"]
    misses = [e for e in events if e["event"] == "my_cache.miss"]
    assert slow.cache_info() == (5, 1)
    assert (len(hits), len(misses)) == (5, 1)
    assert {e["source"] for e in hits} == {"other thread"}
    stor.close()


def test_tasks_served_by_another_tasks_run_log_a_hit(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", is_debug_log=True)

    @stor.cache_async(folder=str(tmp_path / "slow"))
    async def slow(x: int) -> int:
        await asyncio.sleep(0)  # the other five tasks, scheduled already, start waiting
        return x

    async def scenario() -> None:
        await asyncio.gather(*(slow(1) for _ in range(6)))
        await stor.join()

    with capture_logs() as events:
        asyncio.run(scenario())
    hits = [e for e in events if e["event"] == "my_cache.hit"]
    assert slow.cache_info() == (5, 1)
    assert len(hits) == 5
    assert {e["source"] for e in hits} == {"other task"}
    stor.close()
