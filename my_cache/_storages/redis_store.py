"""IN_REDIS: one Redis server shared by many processes and machines; nothing on local disk.

Keys, all under ``mycache:``: ``value:<folder>:<key>`` holds a stored result (the bytes of
``dump_result``, with a TTL when the entry expires); ``rows:<folder>`` is the folder's
catalogue, a hash of one JSON row per key; ``folders`` is the set of folders catalogued;
``expiring:<folder>`` orders the keys of expiring entries by expiry, so that their rows can
be dropped once Redis has dropped their values; ``lock:<folder>:<key>`` is held by the one
process computing that key. A value and its row are written in one MULTI/EXEC transaction,
so a listed entry always has its data.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from my_cache import _log
from my_cache._storages.base import (
    MISSING,
    Backend,
    DamagedEntry,
    Deferred,
    Entry,
    FolderStore,
    StoreUnavailable,
    dump_result,
    load_result,
    names,
    shortened,
)
from my_cache.settings import Settings

if TYPE_CHECKING:
    from my_cache._identity import Identity

T = TypeVar("T")

NAMESPACE = "mycache:"
FOLDERS = NAMESPACE + "folders"
# An unreachable server is left alone this long before the next call tries it again, so a
# dead server costs callers nothing but the warning, and a revived one is used within it.
RETRY_AFTER = 1.0
# Every this many expiring writes, a folder drops up to _PRUNE_BATCH rows of expired entries.
_PRUNE_EVERY = 64
_PRUNE_BATCH = 1000
# A caller waiting for another process's computation looks for its value this often at most.
_LONGEST_POLL = 0.1
# Deletes the lock only if it is still ours: it may have expired and been taken by another.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class _Server:
    """The client of one Redis server, and whether it answered lately; shared by folders."""

    def __init__(self, settings: Settings) -> None:
        self.shown_url = _without_password(settings.redis_url)
        self.lock_timeout = settings.redis_lock_timeout
        self.client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_connect_timeout,
            socket_timeout=settings.redis_read_timeout,
            # One immediate retry: a pooled connection the server closed (a restart) fails
            # once, and the retry connects afresh.
            retry=Retry(NoBackoff(), 1),
        )
        self._release = self.client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._down_until: float | None = None

    def call(self, operation: Callable[[redis.Redis], T]) -> T:
        """``operation(client)``; StoreUnavailable (warned of once per outage) if it fails."""
        down_until = self._down_until
        if down_until is not None and time.monotonic() < down_until:
            raise StoreUnavailable(f"the shared cache at {self.shown_url} is unreachable")
        try:
            result = operation(self.client)
        except redis.RedisError as error:
            self._failed(error)
            raise StoreUnavailable(
                f"the shared cache at {self.shown_url} is unreachable: {error}"
            ) from error
        if down_until is not None:
            self._answered()
        return result

    def release(self, lock: str, token: str) -> None:
        self.call(lambda client: self._release(keys=[lock], args=[token], client=client))

    def _failed(self, error: Exception) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + RETRY_AFTER
        if first:
            _log.warning(
                "my_cache.shared_cache_unreachable",
                url=self.shown_url,
                reason=f"{type(error).__name__}: {error}",
                action=f"calls compute without the cache; retrying every {RETRY_AFTER:g} s",
            )

    def _answered(self) -> None:
        with self._lock:
            back, self._down_until = self._down_until is not None, None
        if back:
            _log.warning("my_cache.shared_cache_reachable", url=self.shown_url)

    def close(self) -> None:
        self.client.close()


class RedisFolder(FolderStore):
    """The entries of one folder (a namespace) in Redis.

    Process-safe and machine-safe: every write is one transaction, and equivalent calls in
    different processes compute once (``acquire``), others waiting up to the lock timeout.
    """

    waits_for_others = True

    def __init__(self, folder: str, server: _Server) -> None:
        self._folder = folder
        self._server = server
        self._rows = f"{NAMESPACE}rows:{folder}"
        self._expiring = f"{NAMESPACE}expiring:{folder}"
        self._held: dict[str, str] = {}
        self._expiring_writes = 0

    def _value(self, key: str) -> str:
        return f"{NAMESPACE}value:{self._folder}:{key}"

    def _lock_of(self, key: str) -> str:
        return f"{NAMESPACE}lock:{self._folder}:{key}"

    def get(self, key: str) -> Any:
        data = cast(bytes | None, self._server.call(lambda client: client.get(self._value(key))))
        if data is None:
            return MISSING
        try:
            return load_result(data, key)
        except DamagedEntry as error:
            _log.warning("my_cache.damaged_entry", folder=self._folder, key=key, reason=str(error))
            self.delete(key)
            return MISSING

    def fetch(self, key: str) -> Deferred:
        """Always deferred: a network round trip must not hold up an event loop."""
        return Deferred(functools.partial(self.get, key))

    def set(
        self,
        key: str,
        value: Any,
        *,
        function: str,
        arg_string: Callable[[], str],
        expire: float | None,
    ) -> None:
        data = dump_result(value, key)
        now = time.time()
        row = {
            "function": function,
            "arg_string": shortened(arg_string()),
            "size": len(data),
            "created": now,
            "expires": None if expire is None else now + expire,
        }

        def write(client: redis.Redis) -> None:
            with client.pipeline(transaction=True) as transaction:
                transaction.set(
                    self._value(key),
                    data,
                    px=None if expire is None else max(1, int(expire * 1000)),
                )
                transaction.hset(self._rows, key, json.dumps(row))
                if expire is None:
                    transaction.zrem(self._expiring, key)
                else:
                    transaction.zadd(self._expiring, {key: now + expire})
                transaction.sadd(FOLDERS, self._folder)
                transaction.execute()

        self._server.call(write)
        if expire is not None:
            self._expiring_writes += 1
            if self._expiring_writes % _PRUNE_EVERY == 0:
                self._prune()

    def _prune(self) -> None:
        """Drop the rows of entries whose TTL ran out: Redis deletes their values, not rows."""
        due = cast(
            list[bytes],
            self._server.call(
                lambda client: client.zrangebyscore(
                    self._expiring, "-inf", time.time(), start=0, num=_PRUNE_BATCH
                )
            ),
        )
        # Clocks differ between machines: a row goes only once Redis has dropped its value.
        self._forget_gone([key.decode() for key in due])

    def delete(self, key: str) -> bool:
        return self.delete_keys([key]) > 0

    def delete_function(self, identity: Identity) -> int:
        return self.delete_keys([key for key, _ in self._scan_rows() if identity.clears(key)])

    def delete_keys(self, keys: list[str]) -> int:
        if not keys:
            return 0

        def remove(client: redis.Redis) -> int:
            with client.pipeline(transaction=True) as transaction:
                transaction.delete(*map(self._value, keys))
                transaction.hdel(self._rows, *keys)
                transaction.zrem(self._expiring, *keys)
                deleted, _, _ = transaction.execute()
            return int(deleted)

        return self._server.call(remove)

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Catalogue rows of live entries; rows whose value expired or was evicted are dropped."""
        rows = list(self._scan_rows())
        for start in range(0, len(rows), 500):
            batch = rows[start : start + 500]
            alive = self._forget_gone([key for key, _ in batch])
            yield from (row for row, live in zip(batch, alive, strict=True) if live)

    def _forget_gone(self, keys: list[str]) -> list[bool]:
        """Which of ``keys`` still have a value; the rows of the others are deleted."""

        def exists(client: redis.Redis) -> list[bool]:
            with client.pipeline(transaction=False) as pipeline:
                for key in keys:
                    pipeline.exists(self._value(key))
                return [bool(count) for count in pipeline.execute()]

        alive = self._server.call(exists)
        self.delete_keys([key for key, live in zip(keys, alive, strict=True) if not live])
        return alive

    def _scan_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        found = self._server.call(lambda client: list(client.hscan_iter(self._rows, count=500)))
        for key, row in found:
            yield key.decode(), json.loads(row)

    def acquire(self, key: str) -> Any:
        """Take the key's lock, or wait for the process holding it: see FolderStore.acquire.

        A waiter looks for the value every 5-100 ms. If the holder dies, its lock expires
        after ``redis_lock_timeout`` and a waiter takes over; a waiter never waits longer.
        An unreachable server makes every caller compute, unlocked.
        """
        lock, token = self._lock_of(key), uuid.uuid4().hex
        timeout_ms = max(1, int(self._server.lock_timeout * 1000))
        deadline = time.monotonic() + self._server.lock_timeout
        pause = 0.005
        try:
            while True:
                if self._server.call(
                    lambda client: client.set(lock, token, nx=True, px=timeout_ms)
                ):
                    # The last holder may have stored the value since the caller's lookup.
                    value = self.get(key)
                    if value is MISSING:
                        self._held[key] = token
                    else:
                        self._server.release(lock, token)
                    return value
                value = self.get(key)
                if value is not MISSING or time.monotonic() >= deadline:
                    return value
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_POLL)
        except StoreUnavailable:
            return MISSING

    def release(self, key: str) -> None:
        token = self._held.pop(key, None)
        if token is not None:
            with contextlib.suppress(StoreUnavailable):  # the lock expires by itself
                self._server.release(self._lock_of(key), token)

    def close(self) -> None:
        """Nothing to release: the server's client is the backend's."""


class RedisBackend(Backend):
    """Every folder in one Redis server; ``folder`` is a namespace, the same on every machine."""

    persistent = True

    def __init__(self, settings: Settings) -> None:
        self._server = _Server(settings)

    def folder_name(self, folder: str) -> str:
        """The folder as written, normalised (``./a//b`` is ``a/b``), not made absolute: so
        every machine sharing the server shares the entries of ``cache(folder="a/b")``."""
        return os.path.normpath(folder).replace(os.sep, "/")

    def open_folder(self, folder: str) -> RedisFolder:
        return RedisFolder(folder, self._server)

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        if folder is None:
            members = cast(set[bytes], self._server.call(lambda client: client.smembers(FOLDERS)))
            folders = sorted(member.decode() for member in members)
        else:
            folders = [folder]
        return [
            Entry(
                folder=name,
                function=row["function"],
                key=key,
                arg_string=row["arg_string"],
                size=row["size"],
                created=row["created"],
                expires=row["expires"],
            )
            for name in folders
            for key, row in RedisFolder(name, self._server).rows()
            if function is None or names(row["function"], function)
        ]

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        keys_by_folder: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            keys_by_folder[entry.folder].append(entry.key)
        return sum(
            RedisFolder(folder, self._server).delete_keys(keys)
            for folder, keys in keys_by_folder.items()
        )

    def close(self) -> None:
        self._server.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
