"""Bad input: a clear error naming the culprit, or a correct result; never a crash or a hang."""

from __future__ import annotations

import gc
import json
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, SerialiseJson, SerialiseMsgpack, TypeStorage
from my_cache._storages.base import ARG_STRING_LIMIT
from tests.helpers import listed


@pytest.mark.parametrize("serialiser", [SerialiseJson, SerialiseMsgpack])
def test_an_argument_the_serialiser_cannot_encode(tmp_path: Path, serialiser: type) -> None:
    stor = CacheStor(serialiser=serialiser)

    @stor.cache(folder="cache/x")
    def handle(request: Any, timeout: float = 1.0) -> str:
        return "done"

    with pytest.raises(TypeError) as raised:
        handle(threading.Lock())
    message = str(raised.value)
    assert f"{__name__}:test_an_argument_the_serialiser_cannot_encode.<locals>.handle()" in message
    assert "argument 'request'" in message
    assert serialiser.__name__ in message
    assert "ignore=['request']" in message


@pytest.mark.parametrize("type_storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_a_generator_result_is_returned_not_cached(tmp_path: Path, type_storage: Any) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=type_storage)
    runs = 0

    @stor.cache(folder="cache/gen")
    def numbers() -> Any:
        nonlocal runs
        runs += 1
        return (n for n in range(3))

    with capture_logs() as events:
        assert list(numbers()) == [0, 1, 2]
        assert list(numbers()) == [0, 1, 2]
    assert runs == 2
    assert [e["event"] for e in events] == ["my_cache.unstorable_result"] * 2
    assert events[0]["function"].endswith("numbers")
    stor.close()


def test_a_lock_result_on_disk_is_returned_not_cached(disk_stor: CacheStor) -> None:
    lock = threading.Lock()

    @disk_stor.cache(folder="cache/lock", ignore=["lock"])
    def get_lock() -> Any:
        return lock

    with capture_logs() as events:
        assert get_lock() is lock
        assert get_lock() is lock
    assert [e["event"] for e in events] == ["my_cache.unstorable_result"] * 2
    assert "get_lock" in events[0]["function"]
    assert "cannot be pickled" in events[0]["reason"]


def test_a_100_mb_argument_is_hashed_without_the_cache_keeping_a_copy(
    disk_stor: CacheStor,
) -> None:
    @disk_stor.cache(folder="cache/big")
    def size(data: bytes) -> int:
        return len(data)

    size(b"warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Made while traced, and dropped after: any copy or reference the cache keeps shows.
        big = b"\x7d" * 100_000_000  # also the pickle opcode byte that triggers the slow path
        assert size(big) == 100_000_000
        assert size(big) == 100_000_000  # a hit
        del big
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"the cache kept {kept} bytes"


def test_the_catalogue_keeps_a_shortened_description_of_huge_arguments(tmp_path: Path) -> None:
    stor = CacheStor(
        db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK, serialiser=SerialiseJson
    )

    @stor.cache(folder="cache/text")
    def words(text: str) -> int:
        return len(text.split())

    assert words("word " * 1_000_000) == 1_000_000
    stor.close()
    (entry,) = listed(tmp_path / "c.db")
    arg_string = entry.arg_string
    assert arg_string.startswith('{"args":[],"kwargs":{"text":"word word')
    assert len(arg_string) < ARG_STRING_LIMIT + 100
    full = json.dumps({"args": [], "kwargs": {"text": "word " * 1_000_000}}, separators=(",", ":"))
    assert arg_string.endswith(f"… ({len(full)} characters)")


def test_recursive_arguments_give_an_error_or_a_correct_key(stor: CacheStor) -> None:
    @stor.cache(folder="cache/rec")
    def first(items: Any) -> Any:
        return items[0]

    looped_list: list[Any] = [1]
    looped_list.append(looped_list)
    assert first(looped_list) == 1  # pickle keys a cycle exactly
    looped_dict: dict[str, Any] = {"a": 1}
    looped_dict["self"] = looped_dict
    with pytest.raises(TypeError, match=r"first\(\).*'items'.*recursive"):
        first([looped_dict])


def test_a_refused_argument_is_not_copied_into_the_error_chain() -> None:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, serialiser=SerialiseJson())

    @stor.cache(folder="cache/x")
    def size(data: Any) -> int:
        return len(data)

    with pytest.raises(TypeError) as raised:
        size(b"\x07" * 1_000_000)
    # A traceback prints every exception of the chain: none may hold the 1 MB value's repr.
    error: BaseException | None = raised.value
    while error is not None:
        assert len(str(error)) < 1000
        error = error.__cause__
