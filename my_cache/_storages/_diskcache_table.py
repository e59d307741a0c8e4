"""What my_cache reads from diskcache's own ``Cache`` table, by SQL: the one module that knows
its columns. Writes go through diskcache's public API; reads that its API would make slow
(the hit path, listing 100k entries, counting them) are queries here.

Tested against the diskcache releases ``pyproject.toml`` allows (5.6.x): the table has kept
these columns since 4.0.

An entry's description rides in diskcache's ``tag`` column of the same row as its value:
``<function>\\0<argument text>``. So a value and its description are written, replaced,
evicted, expired and deleted in one SQLite transaction, by diskcache itself.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

from my_cache._sqlite import BUSY_TIMEOUT

# str keys are stored raw (raw = 1); a value under min_file_size is the row's bytes, a larger
# one a file whose size diskcache records.
_LIVE = "raw = 1 AND (expire_time IS NULL OR expire_time > :now)"
_SIZE = "(CASE WHEN filename IS NULL THEN length(value) ELSE size END)"

VALUE = (
    "SELECT mode, filename, value FROM Cache"
    " WHERE key = :key AND raw = 1 AND (expire_time IS NULL OR expire_time > :now)"
)
_ENTRIES = (
    f"SELECT key, tag, {_SIZE}, store_time, expire_time FROM Cache WHERE {_LIVE}"
    " ORDER BY store_time, key"
)
_TOTALS = f"SELECT count(*), coalesce(sum({_SIZE}), 0) FROM Cache WHERE {_LIVE}"
_KEYS_FROM = "SELECT key FROM Cache WHERE key >= :low AND key < :high AND raw = 1"


def description(function: str, arg_string: str) -> str:
    """The ``tag`` an entry is written with."""
    return f"{function}\0{arg_string}"


def connect(database: Path) -> sqlite3.Connection | None:
    """A read-only connection to a store's database; None if it does not exist.

    Read-only, so that reading never creates or changes a file: a store can be read on a
    read-only disk, by a process that cannot write it, and by ``mycache ls``.
    """
    if not database.exists():
        return None
    uri = f"file:{urllib.parse.quote(str(database))}?mode=ro"
    return sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )


def _query(connection: sqlite3.Connection, sql: str, parameters: dict[str, Any]) -> list[Any]:
    try:
        return connection.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError as error:
        # A database diskcache has created but not yet given its tables holds nothing.
        if "no such table" in str(error):
            return []
        raise


def value_row(connection: sqlite3.Connection, key: str) -> tuple[int, str | None, Any] | None:
    """``(mode, filename, value)`` of ``key``'s live entry, or None."""
    rows = _query(connection, VALUE, {"key": key, "now": time.time()})
    return rows[0] if rows else None


def entries(connection: sqlite3.Connection) -> list[tuple[str, str, str, int, float, float | None]]:
    """``(function, key, arg_string, size, created, expires)`` of every live entry, oldest
    first; entries without a description (an older my_cache's) have function ''."""
    rows = _query(connection, _ENTRIES, {"now": time.time()})
    described = []
    for key, tag, size, created, expires in rows:
        function, _, arg_string = tag.partition("\0") if isinstance(tag, str) else ("", "", "")
        described.append((function, key, arg_string, size, created, expires))
    return described


def totals(connection: sqlite3.Connection) -> tuple[int, int]:
    """How many live entries there are, and their bytes."""
    rows = _query(connection, _TOTALS, {"now": time.time()})
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def keys_starting(connection: sqlite3.Connection, prefix: str) -> list[str]:
    """Every key that starts with ``prefix`` (a non-empty ASCII string), by the key index."""
    high = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return [key for (key,) in _query(connection, _KEYS_FROM, {"low": prefix, "high": high})]
