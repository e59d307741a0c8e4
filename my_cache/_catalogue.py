"""The catalogue (``db_file``): one SQLite row per stored entry, for listing and inspection.

It is written after each store write and never read on the hit path. It is opened on the
first write or listing, never at start-up, and never loaded into memory whole.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from my_cache import _log
from my_cache._private import private_file
from my_cache._sqlite import BUSY_TIMEOUT, is_damage, patiently
from my_cache._storages.base import Entry, shortened

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    folder     TEXT    NOT NULL,
    function   TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    arg_string TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    created    REAL    NOT NULL,
    expires    REAL,
    PRIMARY KEY (folder, key)
)
"""

EXPIRY_INDEX = """
CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (folder, expires)
WHERE expires IS NOT NULL
"""

# ``function`` up to and including its last ':' (rtrim drops every other character from
# the end), the ':' between module and qualname; '' if it has none (an older my_cache's).
_HEAD = "rtrim(function, replace(function, ':', ''))"
# ``function`` with that ':' written as '.', as in module.qualname.
_DOTTED = (
    f"(CASE {_HEAD} WHEN '' THEN function ELSE substr({_HEAD}, 1, length({_HEAD}) - 1)"
    f" || '.' || substr(function, length({_HEAD}) + 1) END)"
)
# A function given by name (see Backend.entries) matches its whole module:qualname, that with
# the ':' written as '.', or a tail of either after a '.' or ':' (``func``, ``Cls.method``).
# The same rule as redis_store._names.
_FUNCTION_MATCHES = f"""(
    :function IN (function, {_DOTTED})
    OR substr(function, -length(:function) - 1) IN ('.' || :function, ':' || :function)
    OR substr({_DOTTED}, -length(:function) - 1) = '.' || :function
)"""


class Catalogue:
    """Rows of ``entries(folder, function, key, arg_string, size, created, expires)``.

    Safe to share between threads (one connection behind a lock) and processes (SQLite WAL,
    each statement its own transaction).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def record(
        self,
        folder: str,
        function: str,
        key: str,
        arg_string: str,
        size: int,
        expire: float | None,
    ) -> None:
        """Add or replace the row of ``(folder, key)``, stamped with the current time."""
        now = time.time()
        expires = None if expire is None else now + expire
        row = (folder, function, key, shortened(arg_string), size, now, expires)
        with self._lock:
            if self._connection is not None and not self.path.exists():
                self._warn("my_cache.missing_catalogue", "it was removed; recreated")
                self._close()
            try:
                self._execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.DatabaseError as error:
                if not is_damage(error):
                    raise
                self._discard(error)
                self._execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def has_folder(self, folder: str) -> bool:
        """Whether any row belongs to ``folder``."""
        if not self.path.exists():
            return False
        with self._lock:
            rows = self._execute("SELECT 1 FROM entries WHERE folder = ? LIMIT 1", (folder,))
            return bool(rows)

    def forget_folder(self, folder: str) -> None:
        """Delete every row of ``folder``."""
        if not self.path.exists():
            return
        with self._lock:
            self._execute("DELETE FROM entries WHERE folder = ?", (folder,))

    def entries(self, folder: str | None, function: str | None) -> list[Entry]:
        """The rows, oldest first, optionally of one folder and one function (see Backend)."""
        if not self.path.exists():
            return []
        conditions, parameters = ["1"], {"folder": folder, "function": function}
        if folder is not None:
            conditions.append("folder = :folder")
        if function is not None:
            conditions.append(_FUNCTION_MATCHES)
        with self._lock:
            rows = self._execute(
                "SELECT folder, function, key, arg_string, size, created, expires FROM entries"
                f" WHERE {' AND '.join(conditions)} ORDER BY created, folder, key",
                parameters,
            )
        return [Entry(*row) for row in rows]

    def forget(self, folder: str, keys: Iterable[str]) -> None:
        """Delete the rows of these keys in ``folder``."""
        if not self.path.exists():
            return
        rows = [(folder, key) for key in keys]

        def delete() -> None:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("DELETE FROM entries WHERE folder = ? AND key = ?", rows)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        with self._lock:
            patiently(delete)

    def forget_expired(self, folder: str) -> None:
        """Delete the rows of ``folder``'s expired entries (whose data expired first: a row's
        expiry is stamped after its entry's)."""
        if not self.path.exists():
            return
        with self._lock:
            self._execute(
                "DELETE FROM entries WHERE folder = ? AND expires < ?", (folder, time.time())
            )

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _execute(self, statement: str, parameters: Any = ()) -> list[tuple[Any, ...]]:
        """Run one statement (the caller holds the lock), waiting out other writers' locks."""
        return patiently(lambda: self._connect().execute(statement, parameters).fetchall())

    def _connect(self) -> sqlite3.Connection:
        """The open connection (the caller holds the lock); a damaged file is rebuilt empty."""
        if self._connection is None:
            try:
                self._connection = patiently(self._new_connection)
            except sqlite3.DatabaseError as error:
                if not is_damage(error):
                    raise
                self._discard(error)
                self._connection = patiently(self._new_connection)
        return self._connection

    def _new_connection(self) -> sqlite3.Connection:
        # Created 0600 first: the WAL and shared-memory files SQLite adds take its mode.
        private_file(self.path)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # diskcache's own durability: safe when a process dies; a power loss may drop the
            # latest rows but never corrupts the file. FULL would cost an fsync per entry.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
            connection.execute(EXPIRY_INDEX)
        except BaseException:
            connection.close()
            raise
        return connection

    def _discard(self, error: Exception) -> None:
        """Replace a damaged catalogue by an empty one (the entries themselves are intact)."""
        self._warn("my_cache.damaged_catalogue", f"{type(error).__name__}: {error}; rebuilt empty")
        self._close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.path}{suffix}")

    def _warn(self, event: str, reason: str) -> None:
        _log.warning(event, catalogue=str(self.path), reason=reason)
