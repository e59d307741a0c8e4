"""What my_cache reads from diskcache's own ``Cache`` table, by SQL: the one module that knows
its columns. Writes go through diskcache's public API; reads that its API would make slow
(the hit path, listing 100k entries, counting them) are queries here.

Tested against the diskcache releases ``pyproject.toml`` allows (5.6.x): the table has kept
these columns since 4.0, and its per-thread connection (``own_connection``) its place.

An entry's argument text rides in diskcache's ``tag`` column of the same row as its value, so
the two are written, replaced, evicted, expired and deleted in one SQLite transaction, by
diskcache itself. Its function's name is found by the generation at the start of its key,
in a table of names in the same database (``mycache_names``, written once per generation
before its first entry, never changed: a dictionary, not state to keep in step).

Keys are stored as 31 bytes instead of 62 characters, and names once per function, not per
entry: a key is kept twice (in the table and its index), and both together made 100k small
entries take 1.8x the disk of diskcache's memoize; now 1.05x.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from my_cache import _key_format as key_format
from my_cache._sqlite import BUSY_TIMEOUT, patiently

_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_GENERATION_BYTES = 8
_PREFIX_BYTES = 14  # generation and variant
_HEX_CALL, _TEXT_CALL = b"\0", b"\1"
_STANDARD_LENGTH = 16 + 1 + 12 + 1 + 32
_STANDARD_BYTES = _PREFIX_BYTES + 1 + 16

_NAMES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mycache_names"
    " (generation BLOB PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID"
)

# str keys are stored raw (raw = 1); a value under min_file_size is the row's bytes, a larger
# one a file whose size diskcache records.
_LIVE = "raw = 1 AND (expire_time IS NULL OR expire_time > :now)"
_SIZE = "(CASE WHEN filename IS NULL THEN length(value) ELSE size END)"


def stored_key(key: str) -> bytes | str:
    """``key`` as the store holds it: my_cache's keys as bytes, anything else as it is."""
    # The hit path's keys, the builtin serialisers' (a 32-digit hash as the call part), in
    # one step: checked by hand and by fromhex itself, at half the cost of a pattern.
    if len(key) == _STANDARD_LENGTH and key[16] == key[29] == ":" and key == key.lower():
        try:
            stored = bytes.fromhex(f"{key[:16]}{key[17:29]}00{key[30:]}")  # 00: _HEX_CALL
        except ValueError:  # not hex
            pass
        else:
            if len(stored) == _STANDARD_BYTES:  # fromhex skips whitespace
                return stored
    parts = key_format.split(key)
    if parts is None:
        return key
    generation, variant, call = parts
    head = bytes.fromhex(generation + variant)
    if _HEX.fullmatch(call):
        return head + _HEX_CALL + bytes.fromhex(call)
    return head + _TEXT_CALL + call.encode("utf-8", "surrogatepass")


def key_of(stored: bytes | str) -> str:
    """The key ``stored_key`` made ``stored`` from."""
    if isinstance(stored, str):
        return stored
    head, kind, call = stored[:_PREFIX_BYTES].hex(), stored[14:15], stored[15:]
    text = call.hex() if kind == _HEX_CALL else call.decode("utf-8", "surrogatepass")
    return key_format.prefix(head[:16], head[16:]) + text


def record_name(database: Path, key: bytes | str, name: str) -> None:
    """Record the function name of ``key``'s generation, before its first entry is written.

    Through a connection of its own, closed at once: it runs once per generation, and keeps
    no descriptor open.
    """
    if isinstance(key, str):
        return  # not a my_cache key: listed without a name

    def write() -> None:
        with contextlib.closing(
            sqlite3.connect(database, timeout=BUSY_TIMEOUT, isolation_level=None)
        ) as connection:
            connection.execute(_NAMES_SCHEMA)
            connection.execute(
                "INSERT OR IGNORE INTO mycache_names VALUES (?, ?)",
                (key[:_GENERATION_BYTES], name),
            )

    patiently(write)


VALUE = (
    "SELECT mode, filename, value FROM Cache"
    " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)
_ENTRIES = (
    f"SELECT key, tag, {_SIZE}, store_time, expire_time FROM Cache WHERE {_LIVE}"
    " ORDER BY store_time, key"
)
_NAMES = "SELECT generation, name FROM mycache_names"
_TOTALS = f"SELECT count(*), coalesce(sum({_SIZE}), 0) FROM Cache WHERE {_LIVE}"
_OLDEST = "SELECT key FROM Cache ORDER BY store_time LIMIT :count"
# diskcache keeps the settings a store was last opened with in its Settings table.
_LIMIT = "SELECT key, value FROM Settings WHERE key IN ('size_limit', 'eviction_policy')"
_KEYS_FROM = "SELECT key FROM Cache WHERE key >= :low AND key < :high AND raw = 1"


def _query(
    connection: sqlite3.Connection, sql: str, parameters: dict[str, Any] | list[str]
) -> list[Any]:
    try:
        return connection.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError as error:
        # A database diskcache has created but not yet given its tables holds nothing.
        if "no such table" in str(error):
            return []
        raise


def own_connection(cache: Any) -> sqlite3.Connection | None:
    """The connection through which the calling thread has written to ``cache`` (a
    diskcache.Cache), or None. diskcache 5.6 keeps one per thread in ``_local.con``; it is
    its process's: a store drops its Cache in a forked child."""
    connection: sqlite3.Connection | None = getattr(cache._local, "con", None)
    return connection


def value_row(
    connection: sqlite3.Connection, key: bytes | str
) -> tuple[int, str | None, Any] | None:
    """``(mode, filename, value)`` of the live entry of ``key`` (as stored), or None."""
    # The hit path: positional parameters and fetchone, about 1 us less than _query.
    try:
        row: tuple[int, str | None, Any] | None = connection.execute(
            VALUE, (key, time.time())
        ).fetchone()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return None
        raise
    return row


EntryRow = tuple[str, str, str, int, float, float | None]


def _older(key: str) -> str:
    """The function of a key an older my_cache stored as text: before generations, its
    ``module.qualname`` began the key; since, until keys were stored as bytes, it was kept in
    the catalogue, which no longer holds entries: unknown (''). Either way no call looks it
    up any more: it is stale (see _identity.stale_keys)."""
    return "" if key_format.split(key) is not None else key.rpartition(":")[0]


def entries(connection: sqlite3.Connection) -> list[EntryRow]:
    """``(function, key, arg_string, size, created, expires)`` of every live entry, oldest
    first; entries without a description (an older my_cache's) have function ''."""
    rows = _query(connection, _ENTRIES, {"now": time.time()})
    names = dict(_query(connection, _NAMES, {})) if rows else {}
    return [
        (
            names.get(key[:_GENERATION_BYTES], "") if isinstance(key, bytes) else _older(key),
            key_of(key),
            tag if isinstance(tag, str) else "",
            size,
            created,
            expires,
        )
        for key, tag, size, created, expires in rows
    ]


def totals(connection: sqlite3.Connection) -> tuple[int, int, int | None]:
    """How many live entries there are, their bytes, and the store's size limit (None when
    it evicts nothing)."""
    rows = _query(connection, _TOTALS, {"now": time.time()})
    settings = dict(_query(connection, _LIMIT, {}))
    limit = settings.get("size_limit")
    if settings.get("eviction_policy", "none") == "none" or not isinstance(limit, int):
        limit = None
    return (int(rows[0][0]), int(rows[0][1]), limit) if rows else (0, 0, limit)


def oldest_keys(connection: sqlite3.Connection, count: int) -> list[bytes | str]:
    """The ``count`` least recently stored keys, oldest first (by diskcache's store_time
    index, made by its least-recently-stored eviction policy)."""
    return [key for (key,) in _query(connection, _OLDEST, {"count": count})]


def stored_as_text(connection: sqlite3.Connection, keys: list[str]) -> list[str]:
    """Which of ``keys`` the store holds as text, as my_cache did before it stored its keys
    as bytes (``stored_key`` finds only the bytes)."""
    found: list[str] = []
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        marks = ", ".join("?" * len(batch))
        query = f"SELECT key FROM Cache WHERE key IN ({marks}) AND raw = 1"
        found += [key for (key,) in _query(connection, query, batch)]
    return found


def keys_starting(connection: sqlite3.Connection, prefix: str) -> list[bytes | str]:
    """Every stored key of an identity's ``prefix`` (generation:variant:), by the key index."""
    parts = key_format.split(prefix)
    assert parts is not None, prefix
    low = bytes.fromhex(parts[0] + parts[1])
    high = (int.from_bytes(low, "big") + 1).to_bytes(_PREFIX_BYTES, "big")
    return [key for (key,) in _query(connection, _KEYS_FROM, {"low": low, "high": high})]
