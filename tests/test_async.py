"""cache_async: single flight, write-behind, join(), close(), seen as a user sees them."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import diskcache
import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, CacheWriteError, TypeStorage
from my_cache._storages._diskcache_table import key_of
from tests.helpers import listed

from helpers import wait_until

WRITE_GATE = threading.Event()


class SlowToPickle:
    """A result whose pickling waits for WRITE_GATE, holding its background write in flight."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __reduce__(self) -> tuple[type[SlowToPickle], tuple[str]]:
        assert WRITE_GATE.wait(timeout=60)
        return (SlowToPickle, (self.label,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlowToPickle) and other.label == self.label

    __hash__ = None  # type: ignore[assignment]


class RecordsWhereItIsLoaded:
    """A large result that notes which thread unpickled it."""

    loaded_in: ClassVar[list[str]] = []

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __setstate__(self, state: dict[str, Any]) -> None:
        RecordsWhereItIsLoaded.loaded_in.append(threading.current_thread().name)
        self.__dict__.update(state)


def stored_keys(folder: Path) -> list[str]:
    """The keys on disk in a folder's store, read with a separate diskcache handle."""
    with diskcache.Cache(str(folder)) as raw:
        return [key_of(key) for key in raw.iterkeys()]


def test_only_async_functions_can_be_decorated(stor: CacheStor) -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"plain.*is not an async function"):
        stor.cache_async(folder="cache/p")(plain)  # type: ignore[arg-type]


async def test_results_persist_on_disk_and_in_the_catalogue_whatever_the_storage(
    stor: CacheStor, tmp_path: Path
) -> None:
    runs = 0

    # runs is a counter, not part of what square computes.
    @stor.cache_async(folder="cache/squares", ignore=["runs"])
    async def square(n: int) -> int:
        nonlocal runs
        runs += 1
        return n * n

    assert [await square(n) for n in (2, 3, 2)] == [4, 9, 4]
    await stor.join()
    assert runs == 2
    assert len(stored_keys(tmp_path / "cache" / "squares")) == 2
    functions = [entry.function for entry in listed(tmp_path / "catalogue.db")]
    assert [f.endswith(".square") for f in functions] == [True, True]

    reader = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=stor.type_storage)
    read_square = reader.cache_async(folder="cache/squares", ignore=["runs"])(square.__wrapped__)
    assert await read_square(3) == 9
    assert runs == 2
    reader.close()


def test_cache_async_needs_a_db_file_even_for_in_memory() -> None:
    stor = CacheStor(db_file="", type_storage=TypeStorage.IN_MEMORY)

    async def f() -> int:
        return 1

    with pytest.raises(ValueError, match="db_file is empty, but cache_async"):
        stor.cache_async(folder="cache/f")(f)


async def test_sync_and_async_functions_share_the_store_and_key_format(
    disk_stor: CacheStor, tmp_path: Path
) -> None:
    @disk_stor.cache(folder="cache/both")
    def sync_double(n: int) -> int:
        return 2 * n

    @disk_stor.cache_async(folder="cache/both")
    async def async_double(n: int) -> int:
        return -2 * n  # a different function: its entries must never be confused

    assert sync_double(5) == 10
    assert await async_double(5) == -10
    await disk_stor.join()
    assert sync_double(5) == 10
    assert await async_double(5) == -10
    keys = stored_keys(tmp_path / "cache" / "both")
    # <generation (name and code)>:<variant>:<call hash>, one format for both
    assert all(re.fullmatch(r"[0-9a-f]{16}:[0-9a-f]{12}:[0-9a-f]{32}", key) for key in keys)
    assert len({key.rpartition(":")[0] for key in keys}) == 2
    assert keys[0].rpartition(":")[2] == keys[1].rpartition(":")[2]  # same arguments, same hash


async def test_one_execution_per_key_and_different_keys_run_concurrently(stor: CacheStor) -> None:
    keys = 100
    executions: Counter[int] = Counter()
    running = 0
    every_key_started = asyncio.Event()

    @stor.cache_async(folder="cache/stampede", ignore=["every_key_started", "executions"])
    async def fetch(key: int) -> dict[str, int]:
        nonlocal running
        executions[key] += 1
        running += 1
        if running == keys:
            every_key_started.set()
        # Returns only once all 100 keys are running at the same time.
        await asyncio.wait_for(every_key_started.wait(), timeout=30)
        return {"key": key}

    results = await asyncio.gather(*(fetch(i % keys) for i in range(1200)))
    assert results == [{"key": i % keys} for i in range(1200)]
    assert executions == Counter(range(keys))


async def test_exceptions_are_neither_cached_nor_shared(stor: CacheStor) -> None:
    attempts = 0
    first_started = asyncio.Event()
    release = asyncio.Event()

    @stor.cache_async(folder="cache/flaky", ignore=["first_started", "release"])
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            first_started.set()
            await release.wait()
            raise ConnectionError("first attempt fails")
        return "ok"

    first = asyncio.create_task(flaky())
    await first_started.wait()
    waiter = asyncio.create_task(flaky())
    await asyncio.sleep(0)  # let the waiter reach the flight
    release.set()
    with pytest.raises(ConnectionError):
        await first
    assert await waiter == "ok"
    assert await flaky() == "ok"
    assert attempts == 2


async def test_a_cancelled_waiter_does_not_cancel_the_computation(stor: CacheStor) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    @stor.cache_async(folder="cache/slow", ignore=["started", "release"])
    async def slow() -> int:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return 7

    leader = asyncio.create_task(slow())
    await started.wait()
    impatient = asyncio.create_task(slow())
    patient = asyncio.create_task(slow())
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await leader == 7
    assert await patient == 7
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert runs == 1


async def test_a_coroutine_awaiting_itself_with_the_same_arguments_is_an_error(
    stor: CacheStor,
) -> None:
    @stor.cache_async(folder="cache/loop")
    async def again(n: int) -> int:
        return await again(n)

    with pytest.raises(RecursionError, match="awaits itself with the same arguments"):
        await again(1)


async def test_the_caller_gets_the_value_before_the_write_and_hits_use_the_buffer(
    disk_stor: CacheStor, tmp_path: Path
) -> None:
    WRITE_GATE.clear()
    runs = 0

    @disk_stor.cache_async(folder="cache/behind")
    async def produce(label: str) -> SlowToPickle:
        nonlocal runs
        runs += 1
        return SlowToPickle(label)

    try:
        first = await produce("a")  # returns although its write is held
        again = await produce("a")  # a hit during the write: the buffered value
        assert first.label == "a"
        assert again is first
        assert runs == 1
        assert stored_keys(tmp_path / "cache" / "behind") == []
    finally:
        WRITE_GATE.set()
    await disk_stor.join()
    assert len(stored_keys(tmp_path / "cache" / "behind")) == 1
    after = await produce("a")
    assert after == first
    assert after is not first  # read back from disk: the buffer let go once written
    assert runs == 1


async def test_join_reports_failed_writes_once_after_the_rest_have_landed(
    disk_stor: CacheStor, tmp_path: Path
) -> None:
    WRITE_GATE.clear()

    @disk_stor.cache_async(folder="cache/mixed")
    async def produce(kind: str) -> Any:
        return threading.Lock() if kind == "lock" else SlowToPickle(kind)

    with capture_logs() as events:
        assert await produce("held") == SlowToPickle("held")
        lock = await produce("lock")
        assert isinstance(lock, type(threading.Lock()))  # the caller has its value
        assert wait_until(lambda: any(e["event"] == "my_cache.unstorable_result" for e in events))
    joining = asyncio.create_task(disk_stor.join())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not joining.done()  # the failure is known, but a write is still in flight
    WRITE_GATE.set()
    expected = r"1 cached result\(s\) could not be written"
    with pytest.raises(CacheWriteError, match=expected) as raised:
        await joining
    assert "produce" in str(raised.value)
    assert "lock" in str(raised.value)
    assert len(stored_keys(tmp_path / "cache" / "mixed")) == 1  # the held write landed first

    await disk_stor.join()  # reported once; the cache keeps working
    assert await produce("later") == SlowToPickle("later")
    await disk_stor.join()
    assert len(stored_keys(tmp_path / "cache" / "mixed")) == 2


async def test_join_counts_every_failure_but_names_only_the_first_few(stor: CacheStor) -> None:
    @stor.cache_async(folder="cache/locks")
    async def lock(n: int) -> Any:
        return threading.Lock()

    # Writer threads warn while the writes fail: capture from before they start, as
    # structlog's capture_logs swaps the configuration in a way other threads can trip over.
    with capture_logs(), pytest.raises(CacheWriteError) as raised:
        await asyncio.gather(*(lock(n) for n in range(7)))
        await stor.join()
    message = str(raised.value)
    assert message.startswith("7 cached result(s) could not be written: ")
    assert message.count("lock: ") == 5
    assert message.endswith("; …")


async def test_close_flushes_pending_writes(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "catalogue.db")

    @stor.cache_async(folder="cache/flush")
    async def payload(n: int) -> bytes:
        return bytes([n]) * 200_000

    await asyncio.gather(*(payload(n) for n in range(30)))
    stor.close()
    assert len(stored_keys(tmp_path / "cache" / "flush")) == 30
    assert await payload(3) == bytes([3]) * 200_000  # usable after close


async def test_async_with_joins_and_closes(tmp_path: Path) -> None:
    async with CacheStor(db_file=tmp_path / "catalogue.db") as stor:

        @stor.cache_async(folder="cache/ctx")
        async def payload(n: int) -> bytes:
            return bytes([n]) * 100_000

        await asyncio.gather(*(payload(n) for n in range(10)))
    assert len(stored_keys(tmp_path / "cache" / "ctx")) == 10


def test_with_closes_and_flushes(tmp_path: Path) -> None:
    with CacheStor(db_file=tmp_path / "catalogue.db") as stor:

        @stor.cache_async(folder="cache/ctx")
        async def payload(n: int) -> bytes:
            return bytes([n]) * 100_000

        async def main() -> None:
            await asyncio.gather(*(payload(n) for n in range(10)))

        asyncio.run(main())
    assert len(stored_keys(tmp_path / "cache" / "ctx")) == 10


def test_works_across_successive_event_loops(stor: CacheStor) -> None:
    runs = 0

    @stor.cache_async(folder="cache/loops")
    async def value(n: int) -> int:
        nonlocal runs
        runs += 1
        return n

    assert asyncio.run(value(1)) == 1
    assert asyncio.run(value(1)) == 1
    assert runs == 1


PROGRAM = """
    import asyncio, sys
    from my_cache import CacheStor

    cache_stor = CacheStor(db_file="cache/my.db")
    executions = 0

    @cache_stor.cache_async(folder="cache/shared")
    async def fetch(key):
        global executions
        executions += 1
        await asyncio.sleep(0)
        return {"key": key, "blob": bytes([key % 256]) * 50_000}

    async def main():
        results = await asyncio.gather(*(fetch(i % 200) for i in range(600)))
        assert all(r["key"] == i % 200 for i, r in enumerate(results))
        if sys.argv[1:] == ["join"]:
            await cache_stor.join()
        print(executions)

    asyncio.run(main())
"""


def test_a_second_process_finds_every_result_after_join(run_python: Any) -> None:
    assert run_python(PROGRAM, args=("join",)).stdout == "200\n"
    assert run_python(PROGRAM).stdout == "0\n"


def test_a_process_that_forgot_join_left_every_result_on_disk(
    run_python: Any, tmp_path: Path
) -> None:
    assert run_python(PROGRAM).stdout == "200\n"
    assert len(stored_keys(tmp_path / "cache" / "shared")) == 200
    assert run_python(PROGRAM).stdout == "0\n"


async def test_large_results_written_through_cache_async_are_read_back_by_a_new_stor(
    tmp_path: Path,
) -> None:
    size = 16 * 1024 * 1024
    # One is 16 MB of newlines: diskcache given bytes would write it line by line.
    payloads = [bytes([i]) * size for i in (0, 1, 10, 255)]
    runs: list[int] = []

    def make_stor() -> CacheStor:
        return CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)

    writer = make_stor()

    # Neither changes a result: left out of the identity (64 MB is not hashed at the first call).
    @writer.cache_async(folder=tmp_path / "large", ignore=["payloads", "runs"])
    async def large(i: int) -> bytes:
        runs.append(i)
        return payloads[i]

    written = await asyncio.gather(*(large(i) for i in range(len(payloads))))
    await writer.join()
    writer.close()
    reader = make_stor()
    read_large = reader.cache_async(folder=tmp_path / "large", ignore=["payloads", "runs"])(
        large.__wrapped__
    )
    read_back = await asyncio.gather(*(read_large(i) for i in range(len(payloads))))
    reader.close()
    assert written == payloads
    assert read_back == payloads
    assert sorted(runs) == [0, 1, 2, 3]  # every value read back was read, none recomputed


async def test_a_large_hit_is_unpickled_off_the_event_loop(tmp_path: Path) -> None:
    def make_stor() -> CacheStor:
        return CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)

    writer = make_stor()

    async def produce(size: int) -> RecordsWhereItIsLoaded:
        return RecordsWhereItIsLoaded(b"x" * size)

    await writer.cache_async(folder="cache/where")(produce)(1_000_000)
    await writer.join()
    writer.close()
    RecordsWhereItIsLoaded.loaded_in.clear()
    reader = make_stor()
    hit = await reader.cache_async(folder="cache/where")(produce)(1_000_000)
    reader.close()
    assert len(hit.payload) == 1_000_000
    assert len(RecordsWhereItIsLoaded.loaded_in) == 1
    assert RecordsWhereItIsLoaded.loaded_in[0] != threading.current_thread().name


async def test_debug_events_for_async_hit_miss_write_and_flush(
    disk_stor: CacheStor,
) -> None:
    disk_stor.is_debug_log = True
    WRITE_GATE.clear()

    @disk_stor.cache_async(folder="cache/events")
    async def produce(label: str) -> SlowToPickle:
        return SlowToPickle(label)

    with capture_logs() as events:
        try:
            await produce("a")  # miss; its write is held by the gate
            await produce("a")  # hit, from the buffer
        finally:
            WRITE_GATE.set()
        await disk_stor.join()  # the write, then the flush
        await produce("a")  # hit, from the store
    assert [(e["event"], e.get("source")) for e in events] == [
        ("my_cache.miss", None),
        ("my_cache.hit", "buffer"),
        ("my_cache.write", None),
        ("my_cache.flush", None),
        ("my_cache.hit", "store"),
    ]
    miss, _, write, flush, _ = events
    assert miss["queue_depth"] == 1
    assert write["queue_depth"] == 0
    assert flush["writes"] == 1
    assert all(e["log_level"] == "debug" for e in events)
    assert all(e["function"].endswith("produce") for e in events if e["event"] != "my_cache.flush")
