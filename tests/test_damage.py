"""Damaged storage, provoked for real: the call recomputes the right value, a warning is
logged with debug off, and the store is repaired so that later calls hit again."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage
from tests.helpers import listed

SMALL = b"A" * 100  # kept inside SQLite
LARGE = bytes(range(256)) * 1024  # 256 KiB: kept in a value file


class Counted:
    """A cached function over one folder, counting its runs, reopened as a new program would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = 0
        self.folder = root / "cache" / "values"
        self.db_file = root / "cache" / "catalogue.db"
        self.open()

    def open(self) -> None:
        self.stor = CacheStor(db_file=self.db_file, type_storage=TypeStorage.IN_DISK)
        # self holds the store and a run counter: state, not an argument of the value.
        self.value = self.stor.cache(folder=self.folder, ignore=["self"])(self._value)

    def reopen(self) -> None:
        self.stor.close()
        self.open()

    def _value(self, name: str) -> bytes:
        self.runs += 1
        return SMALL if name == "small" else LARGE


@pytest.fixture
def counted(tmp_path: Path) -> Counted:
    cache = Counted(tmp_path)
    assert cache.value("small") == SMALL
    assert cache.value("large") == LARGE
    assert cache.runs == 2
    return cache


def warnings_of(events: list[dict[str, Any]]) -> list[str]:
    assert all(e["log_level"] == "warning" for e in events), events
    return [e["event"] for e in events]


def check_recovers(
    counted: Counted, name: str, expected_warning: str, reopen: bool = True
) -> None:
    """The call returns the right value, recomputed with a warning; then it hits again."""
    if reopen:
        counted.reopen()
    runs = counted.runs
    with capture_logs() as events:
        assert counted.value(name) == (SMALL if name == "small" else LARGE)
    assert counted.runs == runs + 1
    assert expected_warning in warnings_of(events)
    with capture_logs() as events:
        assert counted.value(name) == (SMALL if name == "small" else LARGE)
    assert counted.runs == runs + 1
    assert events == []


def value_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.val"))


def test_a_garbled_byte_inside_a_stored_value_is_never_returned(counted: Counted) -> None:
    counted.stor.close()
    with diskcache.Cache(str(counted.folder)) as raw:
        (key,) = [k for k in raw.iterkeys() if raw.get(k) is not None and len(raw.get(k)) < 1000]
        stored = bytearray(raw.get(key))
        stored[-20] ^= 0x01  # inside the pickled bytes: it would unpickle, to a wrong value
        raw.set(key, bytes(stored))
    check_recovers(counted, "small", "my_cache.damaged_entry")


def test_a_garbled_value_file(counted: Counted) -> None:
    (file,) = value_files(counted.folder)
    with file.open("r+b") as handle:
        handle.seek(len(LARGE) // 2)
        handle.write(b"garbage")
    check_recovers(counted, "large", "my_cache.damaged_entry")


def test_a_truncated_value_file(counted: Counted) -> None:
    (file,) = value_files(counted.folder)
    os.truncate(file, file.stat().st_size // 2)
    check_recovers(counted, "large", "my_cache.damaged_entry")


def test_a_missing_value_file(counted: Counted) -> None:
    (file,) = value_files(counted.folder)
    file.unlink()
    check_recovers(counted, "large", "my_cache.damaged_entry")


def test_a_garbled_store_database(counted: Counted) -> None:
    counted.stor.close()
    database = counted.folder / "cache.db"
    database.write_bytes(b"this is not an SQLite database" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    check_recovers(counted, "small", "my_cache.damaged_store")
    assert counted.value("large") == LARGE  # rebuilt empty: recomputed once, then kept


def test_a_data_folder_deleted_between_runs(counted: Counted) -> None:
    counted.stor.close()
    shutil.rmtree(counted.folder)
    check_recovers(counted, "small", "my_cache.missing_store")


def test_a_data_folder_deleted_while_the_cache_is_open(counted: Counted, run_python: Any) -> None:
    shutil.rmtree(counted.folder)
    # The open store still answers from the deleted file; the next write notices and rebuilds.
    with capture_logs() as events:
        assert counted.value("small") == SMALL
        assert counted.value("other") == LARGE
    assert "my_cache.missing_store" in warnings_of(events)
    assert (counted.folder / "cache.db").exists()
    # Another program, running the same code, finds what was written after the rebuild.
    program = f"""
        import importlib, pathlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        counted = importlib.import_module({__name__!r}).Counted(pathlib.Path({str(counted.root)!r}))
        print(len(counted.value("other")), counted.runs)
    """
    assert run_python(program).stdout == f"{len(LARGE)} 0\n"


def test_a_data_folder_another_program_removed_and_made_again(
    counted: Counted, run_python: Any
) -> None:
    """What this process writes next goes into the store the others read, not into the
    deleted file it had open."""
    program = f"""
        import importlib, pathlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        counted = importlib.import_module({__name__!r}).Counted(pathlib.Path({str(counted.root)!r}))
        print(len(counted.value(sys.argv[1])), counted.runs)
    """
    shutil.rmtree(counted.folder)
    assert run_python(program, args=("small",)).stdout == f"{len(SMALL)} 1\n"
    with capture_logs() as events:
        assert counted.value("new") == LARGE
    assert warnings_of(events) == ["my_cache.missing_store"]
    assert "made again" in events[0]["reason"]
    assert run_python(program, args=("new",)).stdout == f"{len(LARGE)} 0\n"


def registered(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as registry:
        return [path for (path,) in registry.execute("SELECT path FROM folders")]


def test_a_garbled_catalogue_is_set_aside_rebuilt_and_hits_still_work(counted: Counted) -> None:
    counted.stor.close()
    damaged = bytearray(counted.db_file.read_bytes())
    damaged[100:] = b"garbage!" * ((len(damaged) - 100) // 8) + b"?" * ((len(damaged) - 100) % 8)
    counted.db_file.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        Path(f"{counted.db_file}{suffix}").unlink(missing_ok=True)
    counted.open()
    with capture_logs() as events:
        assert counted.value("small") == SMALL  # a hit: the catalogue is not read
        assert counted.value("new") == LARGE  # a miss: the folder registers in a new one
    assert warnings_of(events) == ["my_cache.damaged_catalogue"]
    assert counted.runs == 3
    assert registered(counted.db_file) == [str(counted.folder)]
    assert Path(f"{counted.db_file}.damaged").read_bytes() == damaged  # kept for inspection
    assert len(listed(counted.db_file)) == 3  # each described in its own store


def test_a_catalogue_deleted_while_open_is_recreated(counted: Counted) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{counted.db_file}{suffix}").unlink(missing_ok=True)
    with capture_logs() as events:
        assert counted.value("new") == LARGE
    assert warnings_of(events) == ["my_cache.missing_catalogue"]
    assert registered(counted.db_file) == [str(counted.folder)]
    assert len(listed(counted.db_file)) == 3


async def test_cache_async_recovers_from_a_garbled_value_file(tmp_path: Path) -> None:
    def make() -> tuple[CacheStor, Callable[[str], Any], list[str]]:
        stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)
        runs: list[str] = []

        async def produce(name: str) -> bytes:
            runs.append(name)
            return LARGE

        return stor, stor.cache_async(folder=tmp_path / "cache" / "a")(produce), runs

    stor, produce, runs = make()
    await produce("x")
    await stor.join()
    stor.close()
    (file,) = value_files(tmp_path / "cache" / "a")
    with file.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 16)
    stor, produce, runs = make()
    with capture_logs() as events:
        assert await produce("x") == LARGE
    assert runs == ["x"]
    assert warnings_of(events) == ["my_cache.damaged_entry"]
    await stor.join()
    assert await produce("x") == LARGE
    assert runs == ["x"]
    stor.close()


def swap_stored_values(folder: Path, large: bool) -> None:
    """Give each of the two entries in ``folder`` the other's stored bytes, as a moved or
    restored value file (or a hand-edited database) would."""
    if large:
        first, second = value_files(folder)
        first.rename(folder / "swap")
        second.rename(first)
        (folder / "swap").rename(second)
        return
    with sqlite3.connect(folder / "cache.db") as database:
        (one, one_value), (two, two_value) = database.execute(
            "SELECT rowid, value FROM Cache ORDER BY rowid"
        ).fetchall()
        database.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (two_value, one))
        database.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (one_value, two))


@pytest.mark.parametrize("size", [100, 300_000], ids=["inline", "value-file"])
def test_swapped_entries_are_never_served_for_each_other(tmp_path: Path, size: int) -> None:
    runs: list[int] = []

    def open_blob() -> tuple[CacheStor, Callable[[int], bytes]]:
        stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

        @stor.cache(folder=tmp_path / "blobs", ignore=["runs"])
        def blob(n: int) -> bytes:
            runs.append(n)
            return bytes([n]) * size

        return stor, blob

    stor, blob = open_blob()
    assert [blob(1), blob(2)] == [b"\x01" * size, b"\x02" * size]
    stor.close()
    swap_stored_values(tmp_path / "blobs", large=size > 32 * 1024)
    stor, blob = open_blob()
    with capture_logs() as events:
        assert [blob(1), blob(2)] == [b"\x01" * size, b"\x02" * size]
    assert runs == [1, 2, 1, 2]
    assert warnings_of(events) == ["my_cache.damaged_entry"] * 2
    assert "another key" in events[0]["reason"]
    assert [blob(1), blob(2)] == [b"\x01" * size, b"\x02" * size] and runs == [1, 2, 1, 2]
    stor.close()


def mycache(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "my_cache", *args, "--db-file", "cache/catalogue.db"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    return done


def garble_pages(database: Path) -> None:
    """Damage every page after the SQLite header, as a torn disk write might."""
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    damaged = bytearray(database.read_bytes())
    damaged[100:] = bytes(range(256)) * ((len(damaged) - 100) // 256) + b"?" * (
        (len(damaged) - 100) % 256
    )
    database.write_bytes(damaged)


def test_mycache_sets_a_garbled_store_aside_and_lists_the_others(counted: Counted) -> None:
    other = counted.stor.cache(folder=counted.root / "cache" / "other")(lambda n: n + 1)
    assert other(1) == 2
    counted.stor.close()
    garble_pages(counted.folder / "cache.db")
    for command in (["ls", "--json"], ["stats"], ["clear", "--yes"]):
        done = mycache(counted.root, *command)
        assert done.returncode == 0, done.stderr
        if command[0] == "ls":
            assert [e["folder"] for e in json.loads(done.stdout)] == [
                str(counted.root / "cache" / "other")
            ]
            assert "my_cache.damaged_store" in done.stderr
            assert str(counted.folder) in done.stderr
    aside = counted.root / "cache" / "values.damaged"
    assert (aside / "cache.db").read_bytes()[100:110] == bytes(range(10))  # kept as it was
    counted.open()
    with capture_logs() as events:
        assert counted.value("small") == SMALL  # recomputed in a rebuilt store, no warning
    assert events == []


def test_a_damaged_catalogue_keeps_the_folders_it_can_still_read(counted: Counted) -> None:
    counted.stor.close()
    before = listed(counted.db_file)
    assert len(before) == 2
    damaged = bytearray(counted.db_file.read_bytes())
    damaged[100:108] = b"\xff" * 8  # the schema page's header: the file cannot be opened
    counted.db_file.write_bytes(damaged)
    done = mycache(counted.root, "ls", "--json")
    assert done.returncode == 0
    assert "my_cache.damaged_catalogue" in done.stderr
    assert [e["key"] for e in json.loads(done.stdout)] == [e.key for e in before]
    assert registered(counted.db_file) == [str(counted.folder)]


def test_a_folder_recreated_after_a_clear_unlisted_it_is_listed_again(counted: Counted) -> None:
    other = counted.root / "cache" / "other"
    assert counted.stor.cache(folder=other)(lambda n: n + 1)(1) == 2
    shutil.rmtree(counted.folder)
    assert mycache(counted.root, "clear", "--yes").stdout.startswith("deleted 1 entries")
    assert registered(counted.db_file) == [str(other)]  # the folder that was gone: unlisted
    assert counted.value("new") == LARGE  # written by the process that had it registered
    assert [e.arg_string for e in listed(counted.db_file)] != []
    assert mycache(counted.root, "clear", "--yes").returncode == 0
    runs = counted.runs
    assert counted.value("new") == LARGE
    assert counted.runs == runs + 1  # the clear found it


def test_a_catalogue_replaced_by_another_process_gets_our_folders(counted: Counted) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{counted.db_file}{suffix}").unlink(missing_ok=True)
    other = CacheStor(db_file=counted.db_file, type_storage=TypeStorage.IN_DISK)
    assert other.cache(folder=counted.root / "cache" / "y")(lambda n: -n)(1) == -1
    other.close()
    with capture_logs() as events:
        assert counted.value("new") == LARGE
        zeta = counted.stor.cache(folder=counted.root / "cache" / "z")(lambda n: n * 3)
        assert zeta(1) == 3
    assert warnings_of(events) == ["my_cache.missing_catalogue"]
    assert registered(counted.db_file) == [
        str(counted.folder),
        str(counted.root / "cache" / "y"),
        str(counted.root / "cache" / "z"),
    ]
