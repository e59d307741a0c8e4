"""What my_cache needs to know about SQLite errors: damage, and locks worth waiting out."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How long a locked database is waited for before the error is let through, in seconds:
# SQLite's own busy timeout on every connection, and the retries of patiently() alike.
BUSY_TIMEOUT = 60.0


def _primary_code(error: sqlite3.Error) -> int | None:
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
