"""The registry (``db_file``): one SQLite row per IN_DISK folder, so that ``mycache`` finds
every store. What a store holds is described in the store itself (see _diskcache_table).

A folder is registered after it is created and before its first entry is written, so no
entry exists in a folder the registry does not list. It is opened at a process's first write
to a folder, never on the hit path, and reading it never creates or changes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from my_cache import _log
from my_cache._fork import keep_unclosed, quiet, renew_after_fork
from my_cache._private import Access
from my_cache._sqlite import BUSY_TIMEOUT, Failure, failure, is_damage, patiently, read_only
from my_cache._storages.base import ForeignPath, StoreUnavailable

T = TypeVar("T")

# SQLite's application_id of a my_cache registry: "mcR1". A file without it is not ours.
APPLICATION_ID = 0x6D635231
_SQLITE_HEADER = b"SQLite format 3\0"
_SCHEMA = "CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY) WITHOUT ROWID"
# The catalogue of my_cache before the registry held a row per entry: its folders are kept.
_OLD_TABLE = "entries"
_OLD_COLUMNS = {"folder", "function", "key", "arg_string", "size", "created"}
# Runs of printable bytes starting with '/': where a damaged registry's paths may be.
_PATH_BYTES = re.compile(rb"/[\x20-\x7e\x80-\xff]+")
_SALVAGE_LIMIT = 64 << 20


class Registry:
    """The folders of one ``db_file``. Safe to share between threads (one connection behind
    a lock) and processes (SQLite WAL)."""

    def __init__(self, path: Path, access: Access) -> None:
        self.path = path
        self._access = access
        self._refusal: str | None = None
        self._checked = False
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        # The file the connection has open (the inode cannot be reused while it is open).
        self._connected_inode: int | None = None
        # Folders this process registered in the file now open: a later write finds its
        # folder still listed with one stat, or registers it again in a new file.
        self._registered: set[str] = set()
        self._failure: str | None = None  # why the last write failed, warned of once
        renew_after_fork(self)

    def check(self) -> None:
        """ForeignPath if ``db_file`` holds anything but a my_cache registry (or nothing).

        Called where no store operation runs (a store being opened), so it is one itself.
        """
        if not self._checked:
            quiet(_kind_of)(self.path)
            self._checked = True

    def lists(self, folder: str) -> bool:
        """Whether ``folder`` is listed."""
        return bool(self._read("SELECT 1 FROM folders WHERE path = ?", (folder,)))

    def register(self, folder: str, *, again: bool = False) -> None:
        """List ``folder``; call it after creating the folder (see ``forget_missing``).

        Skipped when this process listed it already in the file still there, unless
        ``again`` (the folder was just created anew: a clear may have unlisted it).
        StoreUnavailable if ``db_file`` cannot be written (a read-only or full disk),
        warned of once until a write succeeds again.
        """
        if not again and folder in self._registered and self._current_file():
            return
        with self._lock:
            try:
                self._execute("INSERT OR IGNORE INTO folders VALUES (?)", (folder,))
            except _Failed as failed:
                if failed.failure.cause != self._failure:
                    self._failure = failed.failure.cause
                    self._warn("my_cache.catalogue_failed", failed.reason)
                raise StoreUnavailable(f"db_file {self.path}: {failed.reason}") from None
            self._failure = None
            self._registered.add(folder)

    def folders(self) -> list[str]:
        """The folders listed, in path order; none if ``db_file`` is absent or new."""
        self.check()
        return [path for (path,) in self._read("SELECT path FROM folders ORDER BY path")]

    def _read(self, statement: str, parameters: tuple[str, ...] = ()) -> list[tuple[str]]:
        """Rows of a query; through a read-only connection when ``db_file`` cannot be
        written (a read-only disk); none if it is absent or new. Never creates it."""
        if self._new():
            return []
        with self._lock:
            try:
                return self._execute(statement, parameters)
            except _Failed as failed:
                try:
                    connection = read_only(self.path)
                    if connection is None:
                        return []
                    with contextlib.closing(connection):
                        rows: list[tuple[str]] = connection.execute(
                            statement, parameters
                        ).fetchall()
                        return rows
                except sqlite3.Error:
                    raise StoreUnavailable(f"db_file {self.path}: {failed.reason}") from None

    def forget_missing(self) -> None:
        """Unlist folders that no longer exist.

        In one write transaction: a process creates a folder before registering it, so a
        folder created meanwhile is either seen here or registered after this commits.
        """

        def forget() -> None:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                for (path,) in connection.execute("SELECT path FROM folders").fetchall():
                    if not os.path.isdir(path):
                        connection.execute("DELETE FROM folders WHERE path = ?", (path,))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        if not self._new():
            with self._lock:
                try:
                    self._recovering(lambda: patiently(forget))
                except _Failed as failed:
                    raise StoreUnavailable(f"db_file {self.path}: {failed.reason}") from None

    def close(self) -> None:
        with self._lock:
            self._close()

    def after_fork(self) -> None:
        """In a forked child: a connection of its own (see _fork)."""
        keep_unclosed(self._connection)
        self._connection, self._connected_inode = None, None
        self._lock = threading.Lock()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._connected_inode = None, None
        self._registered.clear()

    def _new(self) -> bool:
        """Whether ``db_file`` is absent or empty: nothing to read, nothing to create by
        reading. Probed (an SQLite connection) only while this process has none open to it."""
        return not self._current_file() and _kind_of(self.path) == "new"

    def _current_file(self) -> bool:
        """Whether the file open is still the one at ``path``."""
        return self._connected_inode is not None and self._connected_inode == inode_of(self.path)

    def _execute(self, statement: str, parameters: tuple[str, ...] = ()) -> list[tuple[str]]:
        """Run one statement (the caller holds the lock), waiting out other writers' locks."""
        return self._recovering(
            lambda: patiently(lambda: self._connect().execute(statement, parameters).fetchall())
        )

    def _recovering(self, operation: Callable[[], T]) -> T:
        """``operation()``; if the file is damaged, it is set aside and ``operation`` retried
        on a new registry holding the folders that could be read from the damaged one.

        Any other SQLite error (a read-only or full disk) is raised as _Failed: never
        mistaken for an error of a store.
        """
        if self._connection is not None and not self._current_file():
            self._warn("my_cache.missing_catalogue", "it was removed or replaced; reopened")
            self._close()
        try:
            try:
                return operation()
            except sqlite3.DatabaseError as error:
                if not is_damage(error):
                    raise
                salvaged = self._set_aside(f"{type(error).__name__}: {error}")
                connection = self._connect()
                connection.executemany(
                    "INSERT OR IGNORE INTO folders VALUES (?)", [(path,) for path in salvaged]
                )
                return operation()
        except (sqlite3.Error, OSError) as error:
            self._close()
            raise _Failed(failure(error, self.path.parent)) from None

    def _connect(self) -> sqlite3.Connection:
        """The open connection (the caller holds the lock)."""
        if self._connection is None:
            self._connection = patiently(self._new_connection)
        return self._connection

    def _new_connection(self) -> sqlite3.Connection:
        _kind_of(self.path)
        self._checked = True
        self._trust()
        # Created 0600 first: the WAL and shared-memory files SQLite adds take its mode.
        self._access.make_file(self.path)
        # The file this attempt opens: if it turns out damaged, it is the one set aside.
        self._connected_inode = inode_of(self.path)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # A power loss may drop the latest registration, never corrupt the file; FULL
            # would cost an fsync per folder.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(_SCHEMA)
            # Decided inside the transaction: another process may have converted it first.
            if connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_OLD_TABLE,)
            ).fetchall():
                connection.execute(
                    f"INSERT OR IGNORE INTO folders SELECT DISTINCT folder FROM {_OLD_TABLE}"
                )
                connection.execute(f"DROP TABLE {_OLD_TABLE}")
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        return connection

    def _trust(self) -> None:
        """StoreUnavailable (warned of once) if others may write ``db_file`` or its folder."""
        if self._refusal is None:
            reason = self._access.distrust_database(self.path.parent, self.path)
            if reason is not None:
                self._refusal = f"db_file not used: {reason}"
                self._warn("my_cache.untrusted_catalogue", self._refusal)
            else:
                self._refusal = ""
        if self._refusal:
            raise StoreUnavailable(self._refusal)

    def _set_aside(self, reason: str) -> list[str]:
        """Move a damaged registry to ``<db_file>.damaged`` (the last one only), for
        inspection; the folders found in it. A file another process has set aside and
        replaced meanwhile is left alone."""
        damaged = self._current_file()
        self._close()
        if not damaged:
            return []
        aside = f"{self.path}.damaged"
        self._warn("my_cache.damaged_catalogue", f"{reason}; set aside as {aside}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.path}{suffix}")
        return _salvaged_folders(Path(aside))

    def _warn(self, event: str, reason: str) -> None:
        _log.warning(event, catalogue=str(self.path), reason=reason)


class _Failed(Exception):
    """The registry could not be opened or written; ``failure`` says why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.reason = str(failure)


def inode_of(path: Path) -> int | None:
    """The inode of the file at ``path``, or None if there is none."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _salvaged_folders(damaged: Path) -> list[str]:
    """The stores whose paths can still be read in a damaged registry's bytes: a path is
    kept if it is a folder holding a store's database, so nothing else is ever listed."""
    try:
        with open(damaged, "rb") as file:
            data = file.read(_SALVAGE_LIMIT)
    except OSError:
        return []
    found = set()
    for match in _PATH_BYTES.finditer(data):
        run = match.group()
        # A record's path may be followed by the next record's size bytes, which can look
        # like text: try the run and the run without up to 9 (a varint) bytes at its end.
        for end in range(len(run), max(len(run) - 10, 1), -1):
            path = os.fsdecode(run[:end])
            if os.path.isfile(os.path.join(path, "cache.db")):
                found.add(path)
                break
    return sorted(found)


def _kind_of(path: Path) -> str:
    """ "new" (absent, empty), "registry" or "old catalogue"; ForeignPath for anything else.

    Decided from what SQLite reads of it without writing it: nothing changes, no -wal
    appears. Never through a plain file descriptor: closing one drops every POSIX lock this
    process's SQLite connections hold on the file, and another process could then remove
    the -wal they use.
    """
    refused = f"db_file {path} is not a my_cache catalogue"
    remedy = "point db_file (or --db-file) at a new file"
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "new"
    except OSError as error:
        raise ForeignPath(f"{refused}: cannot read it ({error.strerror}); {remedy}") from None
    if stat.S_ISDIR(status.st_mode):
        raise ForeignPath(f"{refused}: it is a folder; {remedy}")
    if not stat.S_ISREG(status.st_mode):
        raise ForeignPath(f"{refused}: it is not a regular file; {remedy}")
    if status.st_size == 0:
        return "new"
    application_id, schema = _schema(path)
    if application_id == APPLICATION_ID:
        return "registry"
    if application_id != 0:
        raise ForeignPath(f"{refused}: it is another application's database; {remedy}")
    if not schema:
        return "new"
    tables = {name for kind, name, _ in schema if kind == "table"}
    if tables == {_OLD_TABLE} and all(
        name == _OLD_TABLE or table == _OLD_TABLE for _, name, table in schema
    ):
        return "old catalogue"
    raise ForeignPath(f"{refused}: it is another application's database; {remedy}")


def _schema(path: Path) -> tuple[int, list[tuple[str, str, str]]]:
    """An SQLite file's application id, and ``(type, name, table)`` of everything its schema
    holds.

    Read with an immutable connection, which creates no file, unless a -wal beside it holds
    changes (an application still running, or killed): then read-only, which sees them —
    or, where even that cannot open (a read-only folder without the -wal's -shm), immutable.
    """
    wal = Path(f"{path}-wal")
    live = wal.exists() and wal.stat().st_size > 0
    try:
        connection = read_only(path) if live else None
        if connection is None:
            immutable = f"file:{urllib.parse.quote(str(path))}?immutable=1"
            connection = sqlite3.connect(immutable, uri=True)
        with contextlib.closing(connection):
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            rows = connection.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
            if {name for kind, name, _ in rows if kind == "table"} == {_OLD_TABLE}:
                columns = {
                    column
                    for (column,) in connection.execute(
                        "SELECT name FROM pragma_table_info(?)", (_OLD_TABLE,)
                    )
                }
                if not columns >= _OLD_COLUMNS:
                    rows.append(("table", "not the old catalogue's entries", ""))
            return int(application_id), rows
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise  # it could not be read now (no descriptor left, I/O): not a verdict on it
        if _has_our_header(path):
            return APPLICATION_ID, []  # ours, damaged: set aside and rebuilt when opened
        reason = (
            "it is not an SQLite database"
            if error.sqlite_errorcode == sqlite3.SQLITE_NOTADB
            else f"SQLite cannot read it ({error})"
        )
        raise ForeignPath(
            f"db_file {path} is not a my_cache catalogue: {reason}; "
            "point db_file (or --db-file) at a new file"
        ) from None


def _has_our_header(path: Path) -> bool:
    """Whether the header of a file SQLite found damaged says it is a my_cache registry
    (read only then: see _kind_of on plain file descriptors)."""
    try:
        with open(path, "rb") as file:
            head = file.read(100)
    except OSError:
        return False
    return head.startswith(_SQLITE_HEADER) and head[68:72] == APPLICATION_ID.to_bytes(4, "big")
