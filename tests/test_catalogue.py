"""What IN_DISK stores: each entry described in its own row, the registry of folders in
db_file, written at a folder's first write and never read on a hit."""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
import time
from pathlib import Path

import diskcache
import pytest

from my_cache import CacheStor, SerialiseJson, TypeStorage
from my_cache._storages._diskcache_table import stored_key
from my_cache._storages.base import names
from tests.helpers import listed as catalogue_rows
from tests.helpers import wait_until


def registered(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as connection:
        return [path for (path,) in connection.execute("SELECT path FROM folders")]


def test_every_stored_entry_is_listed_with_its_description(tmp_path: Path) -> None:
    db_file = tmp_path / "catalogue.db"
    stor = CacheStor(db_file=db_file, type_storage=TypeStorage.IN_DISK, serialiser=SerialiseJson)

    @stor.cache(folder="cache/example")
    def example(param1: str, param2: bool = False, param3: bool = False) -> str:
        return f"result - {param1=},{param2=},{param3=}"

    before = time.time()
    result = example("param2", param3=True, param2=False)
    example("other")
    example("param2", param3=True)  # a hit: no new row
    after = time.time()
    stor.close()

    rows = catalogue_rows(db_file)
    assert len(rows) == 2
    first = rows[0]
    assert first.folder == str(tmp_path / "cache" / "example")
    assert registered(db_file) == [first.folder]
    assert first.function == (
        f"{__name__}:test_every_stored_entry_is_listed_with_its_description.<locals>.example"
    )
    # A hash of the function's name and code, its variant, the call's hash.
    assert re.fullmatch(r"[0-9a-f]{16}:[0-9a-f]{12}:[0-9a-f]{32}", first.key)
    assert json.loads(first.arg_string) == {
        "args": [],
        "kwargs": {"param1": "param2", "param2": False, "param3": True},
    }
    with diskcache.Cache(first.folder) as raw:
        stored, tag = raw.get(stored_key(first.key), tag=True)
    assert first.size == len(stored)
    assert tag == first.arg_string  # the description is in the value's own row
    assert pickle.dumps(result, pickle.HIGHEST_PROTOCOL) in stored
    assert before <= first.created <= after
    assert json.loads(rows[1].arg_string)["kwargs"]["param1"] == "other"


def test_creating_a_cache_does_not_open_the_catalogue(tmp_path: Path) -> None:
    CacheStor(db_file=tmp_path / "catalogue.db", type_storage=TypeStorage.IN_DISK)
    assert not (tmp_path / "catalogue.db").exists()


def test_a_hit_does_not_touch_the_catalogue(tmp_path: Path) -> None:
    db_file = tmp_path / "catalogue.db"
    runs = 0

    def make_stor() -> CacheStor:
        return CacheStor(db_file=db_file, type_storage=TypeStorage.IN_DISK)

    def square(n: int) -> int:
        nonlocal runs
        runs += 1
        return n * n

    # The count of runs it keeps is no part of what it computes.
    writer = make_stor()
    assert writer.cache(folder="cache/sq", ignore=["runs"])(square)(4) == 16
    writer.close()
    db_file.unlink()

    reader = make_stor()
    assert reader.cache(folder="cache/sq", ignore=["runs"])(square)(4) == 16
    reader.close()
    assert runs == 1
    assert not db_file.exists()


def test_expired_entries_are_not_listed_and_go_with_later_expiring_writes(
    tmp_path: Path,
) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder="cache/short", expire=0.05)
    def brief(n: int) -> int:
        return n

    @stor.cache(folder="cache/short", expire=600)
    def lasting(n: int) -> int:
        return n

    def rows() -> int:
        with sqlite3.connect(tmp_path / "cache" / "short" / "cache.db") as store:
            return int(store.execute("SELECT count(*) FROM Cache").fetchone()[0])

    for n in range(63):
        brief(n)
    deadline = time.time() + 0.05
    assert wait_until(lambda: time.time() > deadline)  # every brief entry has expired
    assert catalogue_rows(tmp_path / "c.db") == []
    assert rows() == 63
    for n in range(64):  # the folder's 64th expiring write, the first here, drops them
        lasting(n)
    assert rows() == 64
    assert {row.function.rpartition(".")[2] for row in catalogue_rows(tmp_path / "c.db")} == {
        "lasting"
    }
    stor.close()


# Names as the catalogue holds them (module:qualname; a script's by its path; the last one
# written by an older my_cache), and what `--function NAME` selects of them.
NAMES = (
    "pkg.a:Cls.method",
    "pkg.a:func",
    "pkg.ab:func",
    "tests.test_x:f.<locals>.g",
    "/tmp/x/script_ab12.py:square",
    "C:\\work\\s.py:square",
    "old.mod.func",
)
SELECTED_BY = {
    "pkg.a:Cls.method": {"pkg.a:Cls.method"},
    "pkg.a.Cls.method": {"pkg.a:Cls.method"},  # the ':' written as '.'
    "a.Cls.method": {"pkg.a:Cls.method"},
    "a:Cls.method": {"pkg.a:Cls.method"},
    "Cls.method": {"pkg.a:Cls.method"},
    "method": {"pkg.a:Cls.method"},
    "func": {"pkg.a:func", "pkg.ab:func", "old.mod.func"},
    "pkg.a.func": {"pkg.a:func"},
    "a.func": {"pkg.a:func"},
    "mod.func": {"old.mod.func"},
    "old.mod.func": {"old.mod.func"},
    "f.<locals>.g": {"tests.test_x:f.<locals>.g"},
    "tests.test_x.f.<locals>.g": {"tests.test_x:f.<locals>.g"},
    "g": {"tests.test_x:f.<locals>.g"},
    "square": {"/tmp/x/script_ab12.py:square", "C:\\work\\s.py:square"},
    "/tmp/x/script_ab12.py:square": {"/tmp/x/script_ab12.py:square"},
    "/tmp/x/script_ab12.py.square": {"/tmp/x/script_ab12.py:square"},
    "C:\\work\\s.py.square": {"C:\\work\\s.py:square"},  # only the last ':' separates
    # Never a part of a word, a module alone, or a class alone.
    "unc": set(),
    "b:func": set(),
    "pkg.a": set(),
    "pkg": set(),
    "Cls": set(),
    "": set(),
    "%": set(),
    "_": set(),
}


@pytest.mark.parametrize("name", SELECTED_BY)
def test_a_function_is_selected_by_its_name_or_the_end_of_it(name: str) -> None:
    assert {function for function in NAMES if names(function, name)} == SELECTED_BY[name]
