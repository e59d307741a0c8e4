"""The catalogue (``db_file``): one SQLite row per stored entry, for listing and inspection.

It is written after each store write and never read on the hit path. It is opened on the
first write, never at start-up, and never loaded into memory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    folder     TEXT    NOT NULL,
    function   TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    arg_string TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    created    REAL    NOT NULL,
    PRIMARY KEY (folder, key)
)
"""

# SQLite's own wait for a lock held by another process, in seconds.
_BUSY_TIMEOUT = 60.0


class Catalogue:
    """Rows of ``entries(folder, function, key, arg_string, size, created)`` in one SQLite file.

    Safe to share between threads (one connection behind a lock) and processes (SQLite WAL,
    each row written in its own transaction).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def record(self, folder: str, function: str, key: str, arg_string: str, size: int) -> None:
        """Add or replace the row of ``(folder, key)``, stamped with the current time."""
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (folder, function, key, arg_string, size, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # diskcache's own durability: safe when a process dies; a power loss may drop the
            # latest rows but never corrupts the file. FULL would cost an fsync per entry.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
            self._connection = connection
        return self._connection
