"""What my_cache needs to know about SQLite errors: damage, and locks worth waiting out."""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from errno import ENOSPC
from pathlib import Path
from typing import NamedTuple, TypeVar

T = TypeVar("T")

# How long a locked database is waited for before the error is let through, in seconds:
# SQLite's own busy timeout on every connection, and the retries of patiently() alike.
BUSY_TIMEOUT = 60.0


def _primary_code(error: Exception) -> int | None:
    # Python reports extended codes (SQLITE_BUSY_SNAPSHOT is 517): the low byte is the primary.
    code: int | None = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_damage(error: sqlite3.Error) -> bool:
    """Whether SQLite says a file is damaged (not busy, not full: those pass)."""
    return _primary_code(error) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def is_locked(error: sqlite3.Error) -> bool:
    return _primary_code(error) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def patiently(operation: Callable[[], T]) -> T:
    """Run ``operation``, again and again while SQLite answers "database is locked".

    In WAL mode SQLite answers BUSY at once, without its busy timeout, in a few cases
    (changing the journal mode, recovering the WAL after a crash, upgrading a read
    snapshot); other processes then hold the lock for milliseconds.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.001
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as error:
            if not is_locked(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def read_only(database: Path) -> sqlite3.Connection | None:
    """A read-only connection to an SQLite file; None if it does not exist.

    Read-only, so that reading never creates or changes a file: a store can be read on a
    read-only disk, by a process that cannot write it, and by ``mycache ls``. Where even the
    shared-memory file a reader of a WAL database needs cannot be created or written (a
    read-only folder: SQLITE_CANTOPEN, or SQLITE_READONLY_DIRECTORY once the database is in
    WAL mode), the file is read as it is, without the changes still in its -wal, if any.
    """
    if not database.exists():
        return None
    quoted = urllib.parse.quote(str(database))
    connection = _connect(f"file:{quoted}?mode=ro")
    try:
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens it now
    except sqlite3.OperationalError as error:
        connection.close()
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            raise
        connection = _connect(f"file:{quoted}?immutable=1")
    return connection


def _connect(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )


class Failure(NamedTuple):
    """Why writing in a folder failed: ``cause`` in words, ``error`` as Python gave it."""

    cause: str
    error: str

    def __str__(self) -> str:
        return f"{self.cause} ({self.error})" if self.cause != self.error else self.error


def failure(error: Exception, folder: Path | str) -> Failure:
    """Why writing in ``folder`` failed: SQLite's own words ("unable to open database file")
    do not say that the folder is read-only or the disk full."""
    reason = f"{type(error).__name__}: {error}"
    if not os.access(folder, os.W_OK):
        return Failure(f"{folder} is read-only", reason)
    if _primary_code(error) == sqlite3.SQLITE_FULL or getattr(error, "errno", None) == ENOSPC:
        return Failure(f"the disk of {folder} is full", reason)
    return Failure(reason, reason)
