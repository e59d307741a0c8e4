"""The IN_DISK hit path reads diskcache's table itself: it must agree with Cache.get; and what
it reads is a result only for its own key, intact."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pickle
import sqlite3
import struct
import threading
import time
import zlib
from pathlib import Path

import diskcache
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from my_cache._private import Access
from my_cache._storages._diskcache_table import key_of, own_connection, stored_key
from my_cache._storages._envelope import DamagedEntry, dump_result, load_result
from my_cache._storages._registry import Registry
from my_cache._storages.base import MISSING
from my_cache._storages.disk import DiskFolder

VALUES = {"small": b"s" * 100, "large": b"L" * 300_000, "none": None, "text": "x" * 50_000}


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Wall time, moved by the test: diskcache and the store both read time.time()."""
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    return clock


@pytest.fixture
def folder(tmp_path: Path, now: list[float]) -> DiskFolder:
    registry = Registry(tmp_path / "c.db", Access())
    store = DiskFolder(str(tmp_path / "store"), registry, size_limit=None, access=Access())
    for key, value in VALUES.items():
        store.set(key, value, function="f", arg_string=lambda: "", expire=None)
    store.set("short-lived", 1, function="f", arg_string=lambda: "", expire=10)
    return store


def test_reads_agree_with_diskcache(folder: DiskFolder, tmp_path: Path, now: list[float]) -> None:
    with diskcache.Cache(str(tmp_path / "store")) as raw:
        for key, value in VALUES.items():
            assert folder.get(key) == value == load_result(raw.get(key), key)
        assert folder.get("absent") is MISSING
        assert raw.get("absent") is None
        assert folder.get("short-lived") == 1
        now[0] += 11
        assert folder.get("short-lived") is MISSING
        assert raw.get("short-lived") is None
        assert folder.delete("small") is True
        assert folder.get("small") is MISSING
        assert raw.get("small") is None
    folder.close()


def test_fetch_hands_large_values_over_as_a_deferred_load(folder: DiskFolder) -> None:
    small, large = folder.fetch("small"), folder.fetch("large")
    assert small == VALUES["small"]
    assert large.load() == VALUES["large"]
    folder.close()


HEX = "0123456789abcdef"
KEYS = st.one_of(
    st.text(),  # not my_cache's format: kept as it is
    st.builds(
        lambda generation, variant, call: f"{generation}:{variant}:{call}",
        st.text(HEX, min_size=16, max_size=16),
        st.text(HEX, min_size=12, max_size=12),
        st.one_of(st.text(HEX), st.text(HEX + "ABCDEF :g"), st.text()),
    ),
)


@given(KEYS, KEYS)
def test_keys_are_stored_compactly_and_told_apart(first: str, second: str) -> None:
    assert key_of(stored_key(first)) == first
    assert (stored_key(first) == stored_key(second)) == (first == second)


# The stored form of a result, as a value file or row holds it.

OLD_KEY, OTHER_KEY = f"{HEX}:{HEX[:12]}:{'a' * 32}", f"{HEX}:{HEX[:12]}:{'b' * 32}"


def test_a_result_comes_back_only_for_its_own_key() -> None:
    data = dump_result({"n": [1, 2]}, OLD_KEY).joined()
    assert load_result(data, OLD_KEY) == {"n": [1, 2]}
    with pytest.raises(DamagedEntry, match="belong to another key"):
        load_result(data, OTHER_KEY)


@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=2000), position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_any_changed_byte_makes_a_damaged_entry(value: bytes, position: int, flip: int) -> None:
    data = bytearray(dump_result(value, OLD_KEY).joined())
    data[position % len(data)] ^= flip
    with pytest.raises(DamagedEntry):
        load_result(bytes(data), OLD_KEY)


def test_any_cut_makes_a_damaged_entry() -> None:
    data = dump_result(b"v" * 100, OLD_KEY).joined()
    for length in range(len(data)):
        with pytest.raises(DamagedEntry):
            load_result(data[:length], OLD_KEY)


def test_entries_of_the_crc_format_are_still_read() -> None:
    """my_cache before XXH3 wrote b"MC\\x02", a CRC-32 of key and pickle, then the pickle: an
    upgrade keeps those entries, and still tells whose they are."""
    pickled = pickle.dumps([1, "two"], pickle.HIGHEST_PROTOCOL)
    crc = zlib.crc32(pickled, zlib.crc32(OLD_KEY.encode()))
    data = b"MC\x02" + struct.pack(">I", crc) + pickled
    assert load_result(data, OLD_KEY) == [1, "two"]
    with pytest.raises(DamagedEntry, match="another key"):
        load_result(data, OTHER_KEY)
    with pytest.raises(DamagedEntry, match="without its key"):
        load_result(b"MC\x01" + data[3:], OLD_KEY)


def test_reads_keep_no_snapshot_open(folder: DiskFolder, tmp_path: Path) -> None:
    """A read left open would hold its snapshot: SQLite could not checkpoint past it, and the
    store's -wal file would grow for as long as the process lives."""

    def reads() -> None:
        assert len(folder.entries()) == 5 and folder.totals()[0] == 5
        assert folder.get("large") == VALUES["large"]
        assert folder.get("absent") is MISSING
        assert folder.get("small") == VALUES["small"]

    reads()  # through the connection this thread wrote with
    with concurrent.futures.ThreadPoolExecutor(1) as other:
        other.submit(reads).result()  # through the reader
    folder.set("later", 2, function="f", arg_string=lambda: "", expire=None)
    database = tmp_path / "store" / diskcache.core.DBNAME
    with contextlib.closing(sqlite3.connect(database)) as other_process:
        busy, _, _ = other_process.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    assert Path(f"{database}-wal").stat().st_size == 0
    assert folder.get("later") == 2
    folder.close()


def test_a_thread_that_wrote_reads_through_its_own_connection(folder: DiskFolder) -> None:
    """diskcache keeps a connection per thread in a private attribute: own_connection must
    find the one it writes with (a diskcache release that moves it fails here), and none
    for a thread that has not written, which reads through the store's reader."""
    cache = folder._cache
    assert cache is not None
    own = own_connection(cache)
    assert own is not None and own is cache._con
    assert folder.get("small") == VALUES["small"] and folder._reader is None
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(own_connection(cache)))
    thread.start()
    thread.join()
    assert found == [None]
    values: list[object] = []
    thread = threading.Thread(target=lambda: values.append(folder.get("small")))
    thread.start()
    thread.join()
    assert values == [VALUES["small"]] and folder._reader is not None
    folder.close()


def test_a_store_caught_before_diskcache_made_its_tables_holds_nothing(tmp_path: Path) -> None:
    """diskcache creates the database file, then its tables: a delete, listing or read by
    another thread or process in between finds no entries, and raises nothing."""
    (tmp_path / "store").mkdir(mode=0o700)
    sqlite3.connect(tmp_path / "store" / diskcache.core.DBNAME).close()
    registry = Registry(tmp_path / "c.db", Access())
    store = DiskFolder(str(tmp_path / "store"), registry, size_limit=None, access=Access())
    key = key_of(bytes(range(31)))  # a key as my_cache makes them
    assert store.delete(key) is False
    assert store.get(key) is MISSING
    assert store.entries() == [] and store.totals() == (0, 0, None)
    store.close()


def test_damage_found_by_a_writer_leaves_a_store_rebuilt_meanwhile_alone(
    folder: DiskFolder, tmp_path: Path
) -> None:
    """A thread that has written reads through its own connection: when that read finds
    damage, the store set aside is the one it read, not one another process rebuilt since."""
    assert folder.get("small") == VALUES["small"]  # through the writer's connection
    os.rename(tmp_path / "store", tmp_path / "set-aside-by-another")
    rebuilt = DiskFolder(str(tmp_path / "store"), folder._registry, None, Access())
    rebuilt.set("fresh", 1, function="f", arg_string=lambda: "", expire=None)
    with capture_logs() as events:
        folder._recover(sqlite3.DatabaseError("database disk image is malformed"))
    assert events == []
    assert not (tmp_path / "store.damaged").exists()
    assert rebuilt.get("fresh") == 1
    rebuilt.close()
    folder.close()
