"""The registry (``db_file``): one SQLite row per IN_DISK folder, so that ``mycache`` finds
every store. What a store holds is described in the store itself (see _diskcache_table).

A folder is registered before the first entry is written to it, so no entry exists in a
folder the registry does not list. It is opened at a process's first write to a folder,
never on the hit path.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from my_cache import _log
from my_cache._private import Access
from my_cache._sqlite import BUSY_TIMEOUT, is_damage, patiently
from my_cache._storages.base import ForeignPath, StoreUnavailable

T = TypeVar("T")

# SQLite's application_id of a my_cache registry: "mcR1". A file without it is not ours.
APPLICATION_ID = 0x6D635231
_SQLITE_HEADER = b"SQLite format 3\0"
_SCHEMA = "CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY) WITHOUT ROWID"
# The catalogue of my_cache before 0.3 held a row per entry: its folders are kept.
_OLD_CATALOGUE = {"entries"}
_OLD_COLUMNS = ["folder", "function", "key", "arg_string", "size", "created", "expires"]
_COLUMNS = "SELECT name FROM pragma_table_info(?)"


class Registry:
    """The folders of one ``db_file``. Safe to share between threads (one connection behind
    a lock) and processes (SQLite WAL)."""

    def __init__(self, path: Path, access: Access) -> None:
        self.path = path
        self._access = access
        self._refusal: str | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._checked = False
        # Folders this process registered, in the file of this inode: a later write finds
        # it still listed with one stat, or registers it again in a new file.
        self._registered: set[str] = set()
        self._inode: int | None = None

    def check(self) -> None:
        """ForeignPath if ``db_file`` holds anything but a my_cache registry (or nothing)."""
        if not self._checked:
            _kind_of(self.path)
            self._checked = True

    def _trust(self) -> None:
        """StoreUnavailable (warned of once) if others may write ``db_file`` or its folder."""
        if self._refusal is None:
            for path in (self.path.parent, self.path):
                reason = self._access.distrust(path)
                if reason is not None:
                    self._refusal = f"db_file not used: {reason}"
                    self._warn("my_cache.untrusted_catalogue", self._refusal)
                    break
            else:
                self._refusal = ""
        if self._refusal:
            raise StoreUnavailable(self._refusal)

    def lists(self, folder: str) -> bool:
        """Whether ``folder`` is listed."""
        if not self.path.exists():
            return False
        with self._lock:
            return bool(self._execute("SELECT 1 FROM folders WHERE path = ?", (folder,)))

    def register(self, folder: str) -> None:
        """List ``folder``, unless this process did already in the same file: a registry
        removed or rebuilt meanwhile gets it again. Call it after creating the folder (see
        ``forget_missing``)."""
        if folder in self._registered and self._inode == _inode(self.path):
            return
        with self._lock:
            if not self._execute("SELECT 1 FROM folders WHERE path = ?", (folder,)):
                self._execute("INSERT OR IGNORE INTO folders VALUES (?)", (folder,))
            inode = _inode(self.path)
            if inode != self._inode:
                self._registered.clear()
                self._inode = inode
            self._registered.add(folder)

    def folders(self) -> list[str]:
        """The folders listed, in path order; none if ``db_file`` does not exist."""
        self.check()
        if not self.path.exists():
            return []
        with self._lock:
            return [path for (path,) in self._execute("SELECT path FROM folders ORDER BY path")]

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

        if self.path.exists():
            with self._lock:
                self._recovering(lambda: patiently(forget))

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _execute(self, statement: str, parameters: tuple[str, ...] = ()) -> list[tuple[str]]:
        """Run one statement (the caller holds the lock), waiting out other writers' locks."""
        return self._recovering(
            lambda: patiently(lambda: self._connect().execute(statement, parameters).fetchall())
        )

    def _recovering(self, operation: Callable[[], T]) -> T:
        """``operation()``; if the file is damaged, it is set aside and ``operation`` retried
        on a new, empty registry (its folders register again as they are used)."""
        if self._connection is not None and not self.path.exists():
            self._warn("my_cache.missing_catalogue", "it was removed; recreated")
            self._close()
        try:
            return operation()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._set_aside(f"{type(error).__name__}: {error}")
            return operation()

    def _connect(self) -> sqlite3.Connection:
        """The open connection (the caller holds the lock)."""
        if self._connection is None:
            self._connection = patiently(self._new_connection)
        return self._connection

    def _new_connection(self) -> sqlite3.Connection:
        kind = _kind_of(self.path)
        self._checked = True
        self._trust()
        # Created 0600 first: the WAL and shared-memory files SQLite adds take its mode.
        self._access.make_file(self.path)
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
            if kind == "old catalogue":
                connection.execute(
                    "INSERT OR IGNORE INTO folders SELECT DISTINCT folder FROM entries"
                )
                connection.execute("DROP TABLE entries")
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        return connection

    def _set_aside(self, reason: str) -> None:
        """Replace a damaged registry by an empty one, keeping the damaged file (the last
        one only) beside it as ``<db_file>.damaged`` for inspection."""
        self._warn("my_cache.damaged_catalogue", f"{reason}; set aside as {self.path}.damaged")
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, f"{self.path}.damaged")
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.path}{suffix}")

    def _warn(self, event: str, reason: str) -> None:
        _log.warning(event, catalogue=str(self.path), reason=reason)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _kind_of(path: Path) -> str:
    """"new", "registry" or "old catalogue"; ForeignPath for anything else.

    Decided from the file's header and, for an SQLite file without our application id, its
    tables read through an immutable connection: nothing is written, no -wal or -shm appears.
    """
    refused = f"db_file {path} is not a my_cache catalogue"
    remedy = "point db_file (or --db-file) at a new file"
    if path.is_dir():
        raise ForeignPath(f"{refused}: it is a folder; {remedy}")
    try:
        with open(path, "rb") as file:
            head = file.read(100)
    except FileNotFoundError:
        return "new"
    except OSError as error:
        raise ForeignPath(f"{refused}: cannot read it ({error.strerror}); {remedy}") from None
    if not head:
        return "new"
    if not head.startswith(_SQLITE_HEADER):
        raise ForeignPath(f"{refused}: it is not an SQLite database; {remedy}")
    if int.from_bytes(head[68:72], "big") == APPLICATION_ID:
        return "registry"
    tables = _tables(path)
    if not tables:
        return "new"
    if tables.keys() == _OLD_CATALOGUE and tables["entries"] == _OLD_COLUMNS:
        return "old catalogue"
    raise ForeignPath(f"{refused}: it is another application's database; {remedy}")


def _tables(path: Path) -> dict[str, list[str]]:
    uri = f"file:{urllib.parse.quote(str(path))}?immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            names = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]
            return {
                name: [column for (column,) in connection.execute(_COLUMNS, (name,))]
                for name in names
            }
    except sqlite3.DatabaseError as error:
        raise ForeignPath(
            f"db_file {path} is not a my_cache catalogue: SQLite cannot read it ({error}); "
            "point db_file (or --db-file) at a new file"
        ) from None
