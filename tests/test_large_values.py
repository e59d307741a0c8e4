"""Large results: buffers stored out of band, read back into the result's own memory."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from xxhash import xxh3_64

from my_cache import CacheStor, SerialiseBin, TypeStorage
from my_cache._storages import _envelope
from my_cache._storages._envelope import (
    OUT_OF_BAND,
    DamagedEntry,
    dump_result,
    load_result,
    read_result,
)
from tests.conftest import RunPython

KEY = "0123456789abcdef:0123456789ab:" + "0" * 32
OTHER_KEY = "0123456789abcdef:0123456789ab:" + "1" * 32


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.arange(rows, dtype=np.int64),
            "f": np.linspace(0, 1, rows),
            "s": [f"row {n}" for n in range(rows)],
            "c": pd.Categorical(["a", "b", "c"] * (rows // 3) + ["a"] * (rows % 3)),
            "t": pd.date_range("2026-01-01", periods=rows, freq="s", tz="Europe/Paris"),
            "d": pd.to_timedelta(np.arange(rows), unit="ms"),
        }
    )


def results() -> dict[str, Any]:
    random = np.random.default_rng(1)
    big = random.random(100_000)
    readonly = big.copy()
    readonly.flags.writeable = False
    return {
        "array": big,
        "fortran": np.asfortranarray(big.reshape(500, 200)),
        "readonly": readonly,
        "strided": big[::2],  # not contiguous: in band
        "structured": np.zeros(20_000, dtype=[("a", "i4"), ("b", "f8")]),
        "small": np.arange(10),
        "nested": {"x": big, "y": [big, big * 2], "z": "text"},
        "bytes": random.bytes(OUT_OF_BAND + 3),
        "bytearray": bytearray(random.bytes(OUT_OF_BAND * 2)),
        "frame": frame(30_000),
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
            and (a.ndim < 2 or a.flags.f_contiguous == b.flags.f_contiguous)
            and a.flags.writeable == b.flags.writeable
        )
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and (a.dtypes == b.dtypes).all()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


@pytest.mark.parametrize("name", list(results()))
def test_every_kind_of_result_comes_back_equal_in_every_way(name: str, tmp_path: Path) -> None:
    value = results()[name]
    stored = dump_result(value, KEY)
    assert same(load_result(stored.joined(), KEY), value)
    path = tmp_path / "value"
    with path.open("wb") as file:
        assert stored.write_into(file.fileno()) == stored.size
    assert path.stat().st_size == stored.size
    with path.open("rb") as file:
        assert same(read_result(file, KEY), value)


def test_large_buffers_are_stored_out_of_band_and_aligned(tmp_path: Path) -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    stored = dump_result(array, KEY)
    data = bytes(stored.joined())
    assert data[:3] == b"MC\x04"
    assert stored.size == len(data) < array.nbytes + 1000  # the data once, not twice
    offset = data.index(array.tobytes()[:64])
    assert offset % 64 == 0
    path = tmp_path / "value"
    path.write_bytes(data)
    with path.open("rb") as file:
        mapped = read_result(file, KEY, mapped=True)
    assert np.array_equal(mapped, array) and not mapped.flags.writeable
    # Small results keep the one-piece format, so their hits cost no more than before.
    assert bytes(dump_result([1, 2], KEY).joined())[:3] == b"MC\x03"


@pytest.mark.parametrize("where", ["header", "rows", "pickle", "buffer", "end"])
def test_damage_anywhere_is_a_damaged_entry(where: str, tmp_path: Path) -> None:
    array = np.arange(200_000, dtype=np.int64)
    data = bytearray(dump_result({"a": array}, KEY).joined())
    start = data.index(array.tobytes()[:64])
    if where == "end":
        del data[-10:]
    else:
        data[{"header": 20, "rows": 30, "pickle": 60, "buffer": start + 1000}[where]] ^= 0xFF
    with pytest.raises(DamagedEntry):
        load_result(bytes(data), KEY)
    path = tmp_path / "value"
    path.write_bytes(data)
    for mapped in (False, True):
        with path.open("rb") as file, pytest.raises(DamagedEntry):
            read_result(file, KEY, mapped=mapped)


def test_a_value_of_another_key_is_damaged(tmp_path: Path) -> None:
    data = dump_result(np.ones(100_000), KEY).joined()
    with pytest.raises(DamagedEntry, match="another key"):
        load_result(data, OTHER_KEY)


@pytest.mark.parametrize("storage", ["in_disk", "in_redis"])
def test_arrays_and_frames_through_the_decorators(
    storage: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if storage == "in_redis":
        request.getfixturevalue("redis_env")
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=storage)
    runs: list[str] = []

    @stor.cache(folder=str(tmp_path / "r"))
    def make(name: str) -> Any:
        runs.append(name)
        return results()[name]

    @stor.cache_async(folder=str(tmp_path / "a"))
    async def make_async(name: str) -> Any:
        runs.append(name)
        return results()[name]

    async def twice(name: str) -> tuple[Any, Any]:
        first = await make_async(name)
        await stor.join()
        return first, await make_async(name)

    for name in results():
        assert same(make(name), make(name))
        first, again = asyncio.run(twice(name))
        assert same(first, again)
        assert same(again, results()[name])
    assert runs == [name for name in results() for _ in range(2)]
    stor.close()


def test_a_swapped_value_file_is_recomputed(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder=str(tmp_path / "r"))
    def ones(n: int) -> np.ndarray:
        return np.full(200_000, n)

    ones(1), ones(2)
    files = sorted((tmp_path / "r").rglob("*.val"))
    assert len(files) == 2
    first, second = (path.read_bytes() for path in files)
    files[0].write_bytes(second)
    files[1].write_bytes(first)
    assert ones(1)[0] == 1 and ones(2)[0] == 2
    assert ones.cache_info().misses == 4
    stor.close()


# Resident memory, not tracemalloc: large buffers are read into anonymous mappings, which
# tracemalloc does not see. The peak is VmHWM (ru_maxrss would carry over the parent's, the
# test runner's, through fork and exec); the base is what is resident before the call.
MEASURE = """
def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


def resident():
    return status("VmRSS")


def peak():
    return status("VmHWM")
"""

MEMORY_PROGRAM = (
    MEASURE
    + """
import numpy as np
from my_cache import CacheStor

stor = CacheStor(db_file="c.db", type_storage="in_disk")

@stor.cache(folder="arrays", version=1)
def make(n):
    return np.ones(n)

n = 25_000_000  # 200 MB
if make.is_cached(n):
    base = resident()
    hit = make(n)
    print((peak() - base) / hit.nbytes)
else:
    make(n)
"""
)


def test_a_hit_holds_the_array_once(run_python: RunPython) -> None:
    run_python(MEMORY_PROGRAM)  # the miss, in a process of its own
    done = run_python(MEMORY_PROGRAM)
    assert float(done.stdout) < 1.1  # was 2.0: the file's bytes, then the unpickled copy


MISS_PROGRAM = (
    MEASURE
    + """
import numpy as np
from my_cache import CacheStor

stor = CacheStor(db_file="c.db", type_storage="in_disk")
array = np.ones(25_000_000)  # 200 MB, resident
base = resident()

@stor.cache(folder="arrays")
def make(n):
    return array

make(1)
print((peak() - base) / array.nbytes)
"""
)


def test_a_miss_does_not_copy_the_array(run_python: RunPython) -> None:
    done = run_python(MISS_PROGRAM)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 0.25  # was +2.0: a pickle of it, then that joined with a header


def test_array_arguments_hit_on_equal_content_and_miss_on_any_change(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[str] = []

    @stor.cache(folder=str(tmp_path / "f"))
    def total(a: Any) -> float:
        runs.append(type(a).__name__)
        return float(np.sum(a))

    base = np.random.default_rng(2).random((500, 400))  # 1.6 MB: hashed out of band
    total(base)
    total(base.copy())  # equal content, another object: a hit
    assert len(runs) == 1
    changed = base.copy()
    changed[250, 200] += 1
    variants = [
        changed,
        base.astype(np.float32),
        base.view(np.int64),  # the same bytes as another dtype
        base.reshape(400, 500),
        np.asfortranarray(base),
        base[:, ::2],  # strided
        base.view(np.recarray),  # another type
    ]
    for variant in variants:
        total(variant)
    assert len(runs) == 1 + len(variants)
    for variant in variants:  # each again, as an equal copy where it has its own memory
        total(variant if variant.base is not None else variant.copy(order="K"))
    assert len(runs) == 1 + len(variants)
    stor.close()


def test_a_data_frame_argument_runs_its_function_once(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[int] = []

    @stor.cache(folder=str(tmp_path / "f"))
    def rows(df: pd.DataFrame) -> int:
        runs.append(len(df))
        return len(df)

    df = frame(3_000)
    assert rows(df) == rows(df) == rows(frame(3_000)) == 3_000
    assert runs == [3_000]  # describing it for the catalogue changed nothing in it
    (entry,) = listed_entries(tmp_path / "c.db")
    assert entry.arg_string == "df=<DataFrame 3000x6>"
    stor.close()


def listed_entries(db_file: Path) -> list[Any]:
    from tests.helpers import listed

    return listed(db_file)


def test_mapped_hits_are_read_only_arrays_backed_by_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[int] = []

    @stor.cache(folder=str(tmp_path / "m"), mmap_mode="r")
    def make(n: int) -> Any:
        runs.append(n)
        return {"data": np.arange(n, dtype=np.float64), "n": n}

    made = make(1_000_000)
    assert made["data"].flags.writeable  # the miss returns the function's own array
    hit = make(1_000_000)
    assert np.array_equal(hit["data"], made["data"]) and hit["n"] == 1_000_000
    assert not hit["data"].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        hit["data"][0] = 1.0
    make.invalidate(1_000_000)  # the file is deleted; the mapping keeps what it maps
    assert hit["data"][-1] == 999_999.0
    assert make(10)["data"].flags.writeable  # small: kept in the database, read as always
    assert runs == [1_000_000, 10]
    stor.close()

    monkeypatch.setenv("MYCACHE_MMAP_MODE", "r")
    from_setting = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @from_setting.cache_async(folder=str(tmp_path / "a"))
    async def make_async(n: int) -> np.ndarray:
        return np.ones(n)

    async def twice() -> np.ndarray:
        await make_async(500_000)
        await from_setting.join()
        return await make_async(500_000)

    mapped = asyncio.run(twice())
    assert not mapped.flags.writeable and mapped.sum() == 500_000
    from_setting.close()


def test_an_arrays_key_is_its_content_not_its_flags(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[int] = []

    @stor.cache(folder=str(tmp_path / "f"))
    def total(a: np.ndarray) -> float:
        runs.append(a.size)
        return float(a.sum())

    @stor.cache(folder=str(tmp_path / "m"), mmap_mode="r")
    def load(n: int) -> np.ndarray:
        return np.arange(n, dtype=np.float64)

    for n in (10, 100_000):  # in band and out of band
        writable = np.arange(n, dtype=np.float64)
        readonly = writable.copy()
        readonly.flags.writeable = False
        load(n)
        total(writable), total(readonly), total(load(n)), total(np.frombuffer(writable.tobytes()))
    assert runs == [10, 100_000]
    stor.close()


@dataclasses.dataclass
class Params:
    data: Any


Pair = collections.namedtuple("Pair", "name data")


def test_frames_inside_other_containers_are_never_repred(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
    runs: list[str] = []

    @stor.cache(folder=str(tmp_path / "f"))
    def size(x: Any) -> int:
        runs.append(type(x).__name__)
        return 1

    indexed = frame(50).set_index("t")  # a tz-aware index: its repr fills caches in it
    holders = [
        Params(indexed),
        Pair("p", indexed),
        collections.OrderedDict(k=indexed),
        collections.defaultdict(list, k=indexed),
        pd.array([1, None, 3], dtype="Int64"),  # reading its dtype fills a cache in it
    ]
    for holder in holders:
        size(holder), size(holder)
    assert runs == [type(holder).__name__ for holder in holders]
    described = {entry.arg_string for entry in listed_entries(tmp_path / "c.db")}
    assert "x=Params(data=<DataFrame 50x5>)" in described
    stor.close()


HASH_SEED_KEYS = """
import collections, sys
from my_cache import SerialiseBin

class Tags(set):
    pass

class Ordered(dict):
    pass

serialiser = SerialiseBin()
tags = Tags(f"tag{n}" for n in range(50))
print(serialiser.encode(tags)[1], serialiser.encode(Ordered(b=1, a=2))[1])
"""


def test_dict_and_set_subclasses_are_keyed_by_content(run_python: RunPython) -> None:
    keys = {run_python(HASH_SEED_KEYS, env={"PYTHONHASHSEED": seed}).stdout for seed in "0123"}
    assert len(keys) == 1  # whatever the hash seed (set order) and insertion order
    serialiser = SerialiseBin()
    ordered = collections.defaultdict(list, b=1, a=2)
    assert serialiser.encode(ordered) == serialiser.encode(collections.defaultdict(list, a=2, b=1))
    assert (
        serialiser.encode(ordered)[1]
        != serialiser.encode(collections.defaultdict(int, a=2, b=1))[1]
    )


def test_a_damaged_length_is_a_damaged_entry_not_a_huge_allocation(tmp_path: Path) -> None:
    data = bytearray(dump_result(np.ones(100_000), KEY).joined())
    for field in (11, 19, 23):  # the pickle's length, the buffer count, the buffer's length
        damaged = bytearray(data)
        damaged[field] = 0x7F
        path = tmp_path / "value"
        path.write_bytes(damaged)
        with pytest.raises(DamagedEntry):
            load_result(bytes(damaged), KEY)
        for mapped in (False, True):
            with path.open("rb") as file, pytest.raises(DamagedEntry):
                read_result(file, KEY, mapped=mapped)


@pytest.mark.parametrize("threads", [1, 3])
def test_buffers_read_and_written_in_parts_come_back_whole(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the size that several threads write and read, in parts that do not divide it.
    monkeypatch.setattr(_envelope, "_THREADS", threads)
    random = np.random.default_rng(2)
    value = {
        "big": random.random(_envelope._SIDE_BY_SIDE // 8 + 12_345),
        "small": random.random(20_000),
        "bytes": random.bytes(_envelope._SIDE_BY_SIDE + 7),
    }
    stored = dump_result(value, KEY)
    path = tmp_path / "value"
    with path.open("wb") as file:
        assert stored.write_into(file.fileno()) == stored.size
    assert path.read_bytes() == bytes(stored.joined())
    with path.open("rb") as file:
        assert same(read_result(file, KEY), value)

    data = bytearray(path.read_bytes())
    last_part = data.index(value["big"].tobytes()[-64:])  # in the last thread's part
    data[last_part] ^= 0xFF
    path.write_bytes(data)
    with path.open("rb") as file, pytest.raises(DamagedEntry):
        read_result(file, KEY)
    path.write_bytes(data[: last_part - 1000])
    with path.open("rb") as file, pytest.raises(DamagedEntry):
        read_result(file, KEY)  # ends inside the big array's last part


@pytest.mark.parametrize("threads", [1, 3])
def test_a_file_that_ends_inside_a_part_is_read_as_far_as_it_goes(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file cut short after its size was taken (by another program): each part stops at
    # its end, and the count and checksum cover the bytes read in one run from the start.
    monkeypatch.setattr(_envelope, "_THREADS", threads)
    data = np.random.default_rng(4).bytes(3 * _envelope._SIDE_BY_SIDE)
    path = tmp_path / "file"
    path.write_bytes(data[: 2 * _envelope._SIDE_BY_SIDE + 5])
    view = memoryview(bytearray(len(data)))
    checksum = xxh3_64()
    with path.open("rb") as file:
        got = _envelope._read_checked(file, 0, view, checksum)
    assert got == 2 * _envelope._SIDE_BY_SIDE + 5
    assert checksum.intdigest() == xxh3_64(data[:got]).intdigest()


def test_an_interrupted_parallel_write_returns_only_after_its_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The caller closes the file once this returns: a helper writing after that could write
    # into whatever file is opened next under the same number.
    monkeypatch.setattr(_envelope, "_THREADS", 2)
    order: list[str] = []
    own_part_done = threading.Event()

    def part(descriptor: int, index: int, start: int, end: int) -> None:
        if index == 1:
            own_part_done.wait()
            sum(range(2_000_000))  # still writing when the caller is interrupted
            order.append("helper done")

    def interrupted(step: int) -> None:
        own_part_done.set()
        raise KeyboardInterrupt

    with (tmp_path / "file").open("wb") as file, pytest.raises(KeyboardInterrupt):
        _envelope._side_by_side(file.fileno(), _envelope._SIDE_BY_SIDE, part, interrupted)
    order.append("caller resumed")
    assert order == ["helper done", "caller resumed"]


def failing_start(error: BaseException) -> Callable[[Any, str, Any], None]:
    """A profile hook that raises ``error`` as the second helper thread is started."""
    starts = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal starts
        if event == "call" and frame.f_code is threading.Thread.start.__code__:
            starts += 1
            if starts == 2:
                raise error

    return hook


def test_an_interrupt_as_helpers_start_waits_for_those_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_envelope, "_THREADS", 3)
    stored = dump_result(bytes([0xAB]) * (3 * _envelope._SIDE_BY_SIDE), KEY)
    threads, descriptors = threading.active_count(), len(os.listdir("/proc/self/fd"))
    with (tmp_path / "value").open("wb") as file:
        sys.setprofile(failing_start(KeyboardInterrupt()))
        try:
            with pytest.raises(KeyboardInterrupt):
                stored.write_into(file.fileno())
        finally:
            sys.setprofile(None)
        # The first helper was running: it is done, and its own descriptor closed.
        assert threading.active_count() == threads
        assert len(os.listdir("/proc/self/fd")) == descriptors + 1  # this file's


def test_a_part_no_thread_can_be_had_for_runs_in_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_envelope, "_THREADS", 3)
    value = np.random.default_rng(3).bytes(3 * _envelope._SIDE_BY_SIDE)
    stored = dump_result(value, KEY)
    path = tmp_path / "value"
    with path.open("wb") as file:
        sys.setprofile(failing_start(RuntimeError("can't start new thread")))
        try:
            assert stored.write_into(file.fileno()) == stored.size
        finally:
            sys.setprofile(None)
    array = np.frombuffer(value, dtype=np.uint8).copy()  # writable: read in parts
    stored = dump_result(array, KEY)
    with path.open("wb") as file:
        stored.write_into(file.fileno())
    with path.open("rb") as file:
        sys.setprofile(failing_start(RuntimeError("can't start new thread")))
        try:
            assert np.array_equal(read_result(file, KEY), array)
        finally:
            sys.setprofile(None)


AT_EXIT = """
import atexit
import numpy as np
from my_cache import CacheStor
from my_cache._storages import _envelope

_envelope._THREADS = 3
stor = CacheStor(db_file="c.db", type_storage="in_disk")
calls = []

@stor.cache(folder="arrays")
def make(n):
    calls.append(n)
    return np.full(_envelope._SIDE_BY_SIDE, n, dtype=np.uint8)

make(1)

def at_exit():  # Python 3.12 starts no thread here
    assert (make(1) == 1).all() and (make(2) == 2).all() and (make(2) == 2).all()
    print(calls)

atexit.register(at_exit)
"""


def test_large_values_are_read_and_written_at_exit(run_python: RunPython) -> None:
    done = run_python(AT_EXIT)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "[1, 2]\n")
