"""What is not my_cache's is never written: a db_file or folder holding something else is
refused with one line naming it, and the file stays exactly as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from my_cache import CacheStor, TypeStorage
from tests.helpers import listed


def text_file(path: Path) -> None:
    path.write_text("notes I keep\n")


def toml_file(path: Path) -> None:
    path.write_text('type_storage = "in_disk"\n')


def sqlite_of_another_application(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT, balance INTEGER)")
        connection.execute("INSERT INTO accounts VALUES ('alice', 10)")
    connection.close()


def wal_sqlite_of_another_application(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE accounts (name TEXT, balance INTEGER)")
    connection.commit()
    connection.close()


FOREIGN: dict[str, Callable[[Path], None]] = {
    "text": text_file,
    "toml": toml_file,
    "sqlite": sqlite_of_another_application,
    "wal-sqlite": wal_sqlite_of_another_application,
}


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its content's hash and modification time."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in folder.iterdir()
        if path.is_file()
    }


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_db_file_that_is_not_a_catalogue_is_refused_and_left_as_it_was(
    tmp_path: Path, kind: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db_file = data / "notes.db"
    FOREIGN[kind](db_file)
    before = snapshot(data)
    stor = CacheStor(db_file=db_file, type_storage=TypeStorage.IN_DISK)
    runs = 0

    @stor.cache(folder="cache/f")
    def f(x: int) -> int:
        nonlocal runs
        runs += 1
        return x

    with pytest.raises(ValueError, match=f"^db_file {db_file} is not a my_cache catalogue: "):
        f(1)
    stor.close()
    assert runs == 0  # refused before the function ran: nothing computed is lost
    assert snapshot(data) == before  # no byte changed, no -wal, -shm or -journal appeared
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kind", FOREIGN)
@pytest.mark.parametrize("command", [["ls"], ["stats"], ["clear", "--yes"]])
def test_mycache_refuses_a_db_file_that_is_not_a_catalogue(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    # `--db-file mycache.toml`, an easy typo for `--config mycache.toml`.
    db_file = tmp_path / ("mycache.toml" if kind == "toml" else "notes.db")
    FOREIGN[kind](db_file)
    before = snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "my_cache", *command, "--db-file", str(db_file)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: db_file {db_file} is not a my_cache catalogue: ")
    assert len(done.stderr.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_a_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("mine")
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder="results")
    def f(x: int) -> int:
        raise AssertionError("never runs")

    with pytest.raises(ValueError, match=f"^cache folder {tmp_path / 'results'} is a file"):
        f(1)
    stor.close()
    assert (tmp_path / "results").read_text() == "mine"
    assert not (tmp_path / "c.db").exists()


def test_an_old_catalogue_keeps_its_folders(tmp_path: Path) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=TypeStorage.IN_DISK)

    @stor.cache(folder="cache/old")
    def f(x: int) -> int:
        return x * 2

    assert [f(1), f(2)] == [2, 4]
    stor.close()
    # The catalogue as my_cache wrote it before the registry: a row per entry.
    (tmp_path / "c.db").unlink()
    with sqlite3.connect(tmp_path / "c.db") as old:
        old.execute(
            "CREATE TABLE entries (folder TEXT NOT NULL, function TEXT NOT NULL, key TEXT NOT"
            " NULL, arg_string TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL,"
            " expires REAL, PRIMARY KEY (folder, key))"
        )
        old.execute(
            "INSERT INTO entries VALUES (?, 'm:f', 'k', '', 1, 0, NULL)",
            (str(tmp_path / "cache" / "old"),),
        )
    old.close()
    assert len(listed(tmp_path / "c.db")) == 2
    with sqlite3.connect(tmp_path / "c.db") as registry:
        tables = {name for (name,) in registry.execute("SELECT name FROM sqlite_master")}
    registry.close()
    assert "entries" not in tables
