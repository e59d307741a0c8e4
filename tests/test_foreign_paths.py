"""What is not my_cache's is never written: a db_file or folder holding something else is
refused with one line naming it, and the file stays exactly as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def running_wal_sqlite_of_another_application(path: Path) -> None:
    """Its tables still in its -wal: the application runs, or was killed before a checkpoint."""
    program = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('PRAGMA journal_mode=WAL')\n"
        "c.execute('CREATE TABLE orders (id INTEGER)')\n"
        "c.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", program, str(path)], check=True)
    assert Path(f"{path}-wal").stat().st_size > 0


def application_id_of_another_application(path: Path) -> None:
    with sqlite3.connect(path) as connection:  # a GeoPackage before its first table
        connection.execute("PRAGMA application_id = 1196444487")
    connection.close()


def sqlite_holding_a_view(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE VIEW answer AS SELECT 42")
    connection.close()


FOREIGN: dict[str, Callable[[Path], None]] = {
    "text": text_file,
    "toml": toml_file,
    "sqlite": sqlite_of_another_application,
    "wal-sqlite": wal_sqlite_of_another_application,
    "running-wal-sqlite": running_wal_sqlite_of_another_application,
    "application-id": application_id_of_another_application,
    "view": sqlite_holding_a_view,
    "fifo": os.mkfifo,
    "folder": Path.mkdir,
}


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every entry of ``folder``: a file's content hash, and its modification time.

    Not the content of a -shm file: SQLite's shared-memory index of a -wal, which whoever
    reads the -wal (as a refusal must, to see what the database holds) updates.
    """
    return {
        path.name: (
            hashlib.sha256(path.read_bytes()).hexdigest()
            if path.is_file() and not path.name.endswith("-shm")
            else "",
            0 if path.name.endswith("-shm") else path.stat().st_mtime_ns,
        )
        for path in folder.iterdir()
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
        timeout=60,  # a FIFO must not be opened: that would wait for a writer forever
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


def test_mycache_ls_on_an_empty_db_file_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    done = subprocess.run(
        [sys.executable, "-m", "my_cache", "ls", "--db-file", "empty.db"],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (
        0,
        f"no entries in catalogue {tmp_path / 'empty.db'}\n",
    )
    assert [path.name for path in tmp_path.iterdir()] == ["empty.db"]
    assert (tmp_path / "empty.db").stat().st_size == 0


OLD_SCHEMA = (
    "CREATE TABLE entries (folder TEXT NOT NULL, function TEXT NOT NULL, key TEXT NOT NULL,"
    " arg_string TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL{expires},"
    " PRIMARY KEY (folder, key))"
)


@pytest.mark.parametrize("expires", [", expires REAL", ""], ids=["with-expiry", "oldest"])
def test_an_old_catalogue_keeps_its_folders_whoever_opens_it_first(
    tmp_path: Path, expires: str, run_python: Any
) -> None:
    folders = [tmp_path / "cache" / name for name in "abc"]
    for folder in folders:
        folder.mkdir(parents=True)
    with sqlite3.connect(tmp_path / "old.db") as old:
        old.execute(OLD_SCHEMA.format(expires=expires))
        old.executemany(
            f"INSERT INTO entries VALUES (?, 'm:f', ?, '', 1, 0{', NULL' if expires else ''})",
            [(str(folder), str(n)) for n, folder in enumerate(folders)],
        )
    old.close()
    # Four processes open it at once: one converts it, none fails.
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "my_cache", "stats", "--db-file", "old.db"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in started:
        _, err = process.communicate(timeout=60)
        assert (process.returncode, err) == (0, f"no entries in catalogue {tmp_path / 'old.db'}\n")
    with sqlite3.connect(tmp_path / "old.db") as registry:
        listed_folders = [path for (path,) in registry.execute("SELECT path FROM folders")]
        tables = {name for (name,) in registry.execute("SELECT name FROM sqlite_master")}
    registry.close()
    assert listed_folders == [str(folder) for folder in folders]
    assert "entries" not in tables


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
