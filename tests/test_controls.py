"""Per-function controls and decorator options: cache_info, cache_clear, invalidate,
expire, ignore, version, and the size_limit setting."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest

from my_cache import CacheInfo, CacheStor, TypeStorage
from tests.helpers import listed


class Clock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.time)
    monkeypatch.setattr(time, "monotonic", fake.time)
    yield fake


def catalogue_functions(db_file: Path) -> list[str]:
    return sorted(entry.function for entry in listed(db_file))


def test_cache_info_counts_hits_and_misses(stor: CacheStor) -> None:
    @stor.cache(folder="cache/info")
    def double(n: int) -> int:
        return 2 * n

    assert double.cache_info() == CacheInfo(hits=0, misses=0)
    double(1)
    double(1)
    double(2)
    double(n=1)
    assert double.cache_info() == CacheInfo(hits=2, misses=2)
    assert double.cache_info().hits == 2


async def test_cache_info_for_async_counts_flight_waiters_as_hits(stor: CacheStor) -> None:
    @stor.cache_async(folder="cache/info_async")
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    assert await asyncio.gather(*(double(1) for _ in range(10))) == [2] * 10
    assert double.cache_info() == CacheInfo(hits=9, misses=1)


def test_cache_clear_removes_this_functions_entries_only(stor: CacheStor, tmp_path: Path) -> None:
    runs: list[str] = []

    @stor.cache(folder="cache/shared")
    def first(n: int) -> int:
        runs.append(f"first{n}")
        return n

    @stor.cache(folder="cache/shared")
    def second(n: int) -> int:
        runs.append(f"second{n}")
        return n

    first(1), first(2), second(1)
    first.cache_clear()
    assert first.cache_info() == CacheInfo(0, 0)
    first(1), second(1)
    assert runs == ["first1", "first2", "second1", "first1"]
    if stor.type_storage is TypeStorage.IN_DISK:
        functions = catalogue_functions(tmp_path / "catalogue.db")
        assert [f.rpartition(".")[2] for f in functions] == ["first", "second"]


def test_cache_clear_spares_a_function_of_the_same_name(stor: CacheStor) -> None:
    # Two lambdas of one scope share module and qualname; only their code tells them apart.
    square = stor.cache(folder="cache/lambdas")(lambda n: n * n)
    cube = stor.cache(folder="cache/lambdas")(lambda n: n * n * n)
    assert (square(3), cube(3)) == (9, 27)
    square.cache_clear()
    assert cube.invalidate(3) is True
    assert square.invalidate(3) is False


async def test_cache_clear_on_async_waits_for_writes_in_flight(stor: CacheStor) -> None:
    runs = 0

    @stor.cache_async(folder="cache/clear_async")
    async def produce(n: int) -> bytes:
        nonlocal runs
        runs += 1
        return bytes(100_000)

    await asyncio.gather(*(produce(n) for n in range(20)))
    produce.cache_clear()  # the writes land first, then are deleted: none comes back
    await stor.join()
    await produce(3)
    assert runs == 21


def test_invalidate_removes_one_entry(stor: CacheStor, tmp_path: Path) -> None:
    runs: list[tuple[int, int]] = []

    @stor.cache(folder="cache/inv")
    def add(a: int, b: int = 10) -> int:
        runs.append((a, b))
        return a + b

    add(1), add(2)
    assert add.invalidate(a=1, b=10) is True  # any equivalent form of the call
    assert add.invalidate(1) is False  # already gone
    assert add.invalidate(3) is False  # never stored
    add(1), add(2)
    assert runs == [(1, 10), (2, 10), (1, 10)]
    if stor.type_storage is TypeStorage.IN_DISK:
        assert len(catalogue_functions(tmp_path / "catalogue.db")) == 2


async def test_invalidate_on_async(stor: CacheStor) -> None:
    runs = 0

    @stor.cache_async(folder="cache/inv_async")
    async def value(n: int) -> int:
        nonlocal runs
        runs += 1
        return n

    await value(1)
    assert value.invalidate(1) is True
    await value(1)
    assert runs == 2


def test_expired_entries_are_misses(stor: CacheStor, clock: Clock) -> None:
    runs = 0

    @stor.cache(folder="cache/expiring", expire=60)
    def fetch() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert fetch() == 1
    clock.advance(59)
    assert fetch() == 1
    clock.advance(2)
    assert fetch() == 2
    assert fetch() == 2


async def test_expire_applies_to_async_too(tmp_path: Path, clock: Clock) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db")
    runs = 0

    @stor.cache_async(folder="cache/expiring_async", expire=60)
    async def fetch() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert await fetch() == 1
    await stor.join()
    clock.advance(61)
    assert await fetch() == 2
    stor.close()


def test_the_expire_setting_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    monkeypatch.setenv("MYCACHE_EXPIRE", "10")
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs = 0

    @stor.cache(folder="cache/default")
    def default() -> int:
        nonlocal runs
        runs += 1
        return runs

    @stor.cache(folder="cache/own", expire=100)
    def own() -> int:
        nonlocal runs
        runs += 1
        return runs

    default(), own()
    clock.advance(11)
    assert default() == 3  # expired after the setting's 10 s
    assert own() == 2  # its own 100 s still run
    stor.close()


@pytest.mark.parametrize("expire", [0, -1])
def test_expire_must_be_positive(stor: CacheStor, expire: float) -> None:
    with pytest.raises(ValueError, match="f: expire must be a positive number of seconds"):

        @stor.cache(folder="cache/x", expire=expire)
        def f() -> None: ...


def test_ignored_parameters_are_left_out_of_the_key(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/ignore", ignore=["verbose", "log"])
    def load(path: str, verbose: bool = False, *, log: Any = None) -> str:
        nonlocal runs
        runs += 1
        return path.upper()

    assert load("a") == load("a", True) == load("a", verbose=True, log=print) == "A"
    assert runs == 1
    assert load("b", True) == "B"
    assert runs == 2


def test_ignoring_self_shares_entries_between_instances(stor: CacheStor) -> None:
    runs = 0

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        @stor.cache(folder="cache/methods", ignore="self")
        def get(self, url: str) -> str:
            nonlocal runs
            runs += 1
            return f"body of {url}"

    assert Client("a").get("/x") == Client("b").get("/x") == "body of /x"
    assert runs == 1
    assert Client.get.invalidate(Client("c"), "/x") is True


def test_ignoring_an_unknown_parameter_is_an_error(stor: CacheStor) -> None:
    with pytest.raises(
        ValueError, match=r"g\(\) has no parameter or captured variable 'verbos' to ignore"
    ):

        @stor.cache(folder="cache/x", ignore=["verbos"])
        def g(verbose: bool) -> None: ...


def test_changing_version_invalidates_old_entries(stor: CacheStor) -> None:
    results = iter(["v1 result", "v2 result", "unexpected"])

    def compute(n: int) -> str:
        return next(results)

    v1 = stor.cache(folder="cache/versions", version=1)(compute)
    v2 = stor.cache(folder="cache/versions", version="2")(compute)
    assert v1(1) == "v1 result"
    assert v2(1) == "v2 result"  # a new version computes again
    assert v1(1) == "v1 result"  # going back finds the old entry
    v2.cache_clear()  # its own version's entries only
    assert v2.invalidate(1) is False
    assert v1.invalidate(1) is True


def test_without_a_size_limit_nothing_is_evicted(disk_stor: CacheStor, tmp_path: Path) -> None:
    @disk_stor.cache(folder="cache/all")
    def blob(n: int) -> bytes:
        return bytes([n]) * 10_000

    for n in range(200):
        blob(n)
    with diskcache.Cache(str(tmp_path / "cache" / "all")) as raw:
        assert len(raw) == 200


def test_a_size_limit_evicts_the_oldest_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYCACHE_SIZE_LIMIT", "200000")
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[int] = []

    @stor.cache(folder="cache/limited")
    def blob(n: int) -> bytes:
        runs.append(n)
        return bytes([n]) * 10_000

    for n in range(100):
        blob(n)
    with diskcache.Cache(str(tmp_path / "cache" / "limited")) as raw:
        assert len(raw) < 100
        assert raw.volume() < 400_000
    blob(99)  # the newest is still there
    blob(0)  # the oldest was evicted
    assert runs == [*range(100), 0]
    stor.close()


def test_expired_entries_are_removed_from_disk_as_writes_go_on(
    disk_stor: CacheStor, tmp_path: Path, clock: Clock
) -> None:
    @disk_stor.cache(folder="cache/short", expire=10)
    def short(n: int) -> bytes:
        return bytes([n]) * 100

    for n in range(64):
        short(n)
    clock.advance(11)
    for n in range(64, 128):
        short(n)
    with diskcache.Cache(str(tmp_path / "cache" / "short")) as raw:
        assert sorted(raw.get(key) is not None for key in raw.iterkeys()) == [True] * 64


@pytest.fixture
def threads_switch_often() -> Iterator[None]:
    """Threads switch every microsecond: a control and the callers interleave inside it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("threads_switch_often")
@pytest.mark.parametrize("control", ["cache_clear", "invalidate", "close"])
def test_in_memory_controls_under_concurrent_calls(control: str) -> None:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY)

    @stor.cache(folder="cache/busy")
    def triple(n: int) -> int:
        return 3 * n

    failures: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    controls_done = threading.Event()

    def call_until_done(offset: int) -> None:
        n = offset
        while not controls_done.is_set():
            n = (n + 1) % 20_000
            try:
                result = triple(n)
            except BaseException as error:  # anything raised into a caller is a failure
                failures.append(error)
                return
            if result != 3 * n:
                wrong.append((n, result))

    callers = [threading.Thread(target=call_until_done, args=(i * 5000,)) for i in range(4)]
    for caller in callers:
        caller.start()
    try:
        for round_ in range(8):
            for n in range(5000):  # a large store: the control takes long enough to be cut into
                triple(n)
            if control == "cache_clear":
                triple.cache_clear()
            elif control == "invalidate":
                triple.invalidate(round_)
            else:
                stor.close()
    finally:
        controls_done.set()
        for caller in callers:
            caller.join()
    assert failures == []
    assert wrong == []
    assert triple(7) == 21
    stor.close()
