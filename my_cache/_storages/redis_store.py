"""IN_REDIS: one Redis server (or cluster) shared by many processes and machines.

An entry is one Redis key, a hash holding the stored result (``d``: the bytes of
``dump_result``) beside its description (``f`` function, ``a`` argument text, ``c`` created,
``x`` expires); an expiring entry is the key's TTL. Whatever Redis evicts or expires, it
takes a value with its description: there is no catalogue to keep in step. Listings, stats
and clears find entries by ``SCAN`` over the key pattern, on every node of a cluster.

Key names, all under ``mycache:``: ``e:{<folder>:<key>}`` an entry, ``l:{<folder>:<key>}`` the
lock of the process computing it; the folder is percent-encoded (it never holds ``:``, a glob
character or a brace), and the braces are a cluster hash tag: an entry and its lock share a
slot. Keys in the namespace that are not a hash of ours are left alone, and cost only their
own calls.

Locks are leases: ``LEASE`` seconds, renewed by a thread while the holder computes, so a
holder killed with kill -9 frees its key within one lease.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, unquote

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from my_cache import _log
from my_cache._fork import keep_unclosed, renew_after_fork
from my_cache._secrets import masked, masked_url
from my_cache._storages import _redis_legacy as _legacy
from my_cache._storages._envelope import DamagedEntry, dump_result, is_ours, load_result
from my_cache._storages.base import (
    MISSING,
    WAIT,
    Backend,
    Deferred,
    Entry,
    FolderStore,
    StoreUnavailable,
    UnstorableResult,
    names,
    shortened,
)
from my_cache.settings import Settings

if TYPE_CHECKING:
    from my_cache._identity import Identity

T = TypeVar("T")

NAMESPACE = "mycache:"
_ENTRY, _LOCK = NAMESPACE + "e:{", NAMESPACE + "l:{"
# An unreachable server is probed this often by a thread of ours; callers meanwhile go
# straight to the function, never waiting on it.
RETRY_AFTER = 1.0
# A lock lives this long unless its holder renews it (every third of it, while computing).
LEASE = 5.0
# The largest stored result sent to Redis: its bulk strings stop at 512 MiB.
MAX_VALUE = 500 * 2**20
# Warnings about writes a server refuses (out of memory) repeat at most this often per folder.
_WARN_EVERY = 60.0
# A caller waiting for another process's computation looks for its value this often at most.
_LONGEST_POLL = 0.1
_SCAN_BATCH = 500
_FIELDS = ("f", "a", "c", "x")
# Deletes a lock only if it is still ours: it may have expired and been taken by another.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Whether a key is an entry of ours: a hash of exactly an entry's fields (x is optional).
_IS_ENTRY = """
local function is_entry(key)
  if redis.call('type', key).ok ~= 'hash' then return false end
  local count = redis.call('hlen', key)
  if count == 5 and redis.call('hexists', key, 'x') == 0 then return false end
  if count ~= 4 and count ~= 5 then return false end
  for _, field in ipairs({'d', 'f', 'a', 'c'}) do
    if redis.call('hexists', key, field) == 0 then return false end
  end
  return true
end
"""
# Deletes a key only if it is an entry of ours.
_DELETE_ENTRY = (
    _IS_ENTRY
    + """
if is_entry(KEYS[1]) then return redis.call('del', KEYS[1]) end
return 0
"""
)
# Writes an entry in one step (a script runs alone): its value and description, and its TTL.
# A key there that is not an entry of ours is another application's: left as it is.
_WRITE_ENTRY = (
    _IS_ENTRY
    + """
if redis.call('exists', KEYS[1]) == 1 and not is_entry(KEYS[1]) then return 0 end
-- HSET first: on a full server Redis refuses a script's first write only (OOM).
redis.call('hset', KEYS[1], 'd', ARGV[1], 'f', ARGV[2], 'a', ARGV[3], 'c', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('hset', KEYS[1], 'x', ARGV[5])
  redis.call('pexpire', KEYS[1], ARGV[6])
else
  redis.call('hdel', KEYS[1], 'x')
  redis.call('persist', KEYS[1])
end
return 1
"""
)
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


# Errors that mean the server or cluster cannot serve now (not a reply about one key).
_UNREACHABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,
)
# The scripts, bound to no client: each call passes the client (or pipeline) that runs it.
_RELEASE_SCRIPT, _RENEW_SCRIPT, _WRITE_SCRIPT = (
    Script(cast(Any, None), text.encode()) for text in (_RELEASE, _RENEW, _WRITE_ENTRY)
)


class _Server:
    """The client of one Redis server or cluster, shared by folders: whether it answers
    (probed in the background while it does not), and the leases this process holds."""

    def __init__(self, settings: Settings) -> None:
        self.shown_url = masked_url(settings.redis_url)
        self._url = settings.redis_url
        self.lock_timeout = settings.redis_lock_timeout
        self.lease = min(LEASE, settings.redis_lock_timeout)
        self._cluster = settings.redis_cluster
        self._options: dict[str, Any] = {
            "socket_connect_timeout": settings.redis_connect_timeout,
            "socket_timeout": settings.redis_read_timeout,
        }
        self._client: Any = None  # connected at first use: see client
        self.down = False  # unreachable: probed in the background, calls skip it
        self._warned: dict[tuple[str, str], float] = {}
        self._held: dict[str, str] = {}  # lock key -> token, renewed while held
        self._orphans: list[tuple[str, str]] = []  # see maybe_taken
        self._reset()
        renew_after_fork(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._renewer: threading.Thread | None = None

    def after_fork(self) -> None:
        """In a forked child: its own client, threads and view of the server, no leases
        (they are the parent's). The parent's client is left untouched: its pool's lock may
        have been held by a parent thread at the fork, and closing it would wait forever."""
        keep_unclosed(self._client)
        self._client = None
        self._reset()
        self._held, self._orphans = {}, []
        self.down = False  # the parent's probe does not run here: the child finds out itself

    @property
    def client(self) -> Any:
        """The client, made at first use: a cluster's connects to learn its nodes, and a
        server that is away then must make a miss, not an error from CacheStor()."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def _connect(self) -> Any:
        if self._cluster:
            # No retries of its own (it retries a timeout, doubling a call's wait): a cluster
            # whose nodes moved is learned again at the next call.
            return redis.cluster.RedisCluster.from_url(
                self._url, retry=Retry(NoBackoff(), 0), **self._options
            )
        # One immediate retry of a connection error: a pooled connection the server closed
        # (a restart) fails once, and the retry connects afresh. Timeouts are not retried:
        # a call waits at most redis_read_timeout for a reply.
        return redis.Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            **self._options,
        )

    def call(self, operation: Callable[[Any], T]) -> T:
        """``operation(client)``; StoreUnavailable if the server does not answer (warned of
        once per outage) or is being waited for. A reply that is an error (a full server, a
        key of the wrong type) is the operation's to handle: redis.ResponseError."""
        if self.down:
            raise StoreUnavailable(f"the shared cache at {self.shown_url} is unreachable")
        try:
            return operation(self.client)
        except _UNREACHABLE as error:
            self._failed(error)
            raise StoreUnavailable(
                f"the shared cache at {self.shown_url} is unreachable: {self.said(error)}"
            ) from None  # redis-py's own exception may quote the password
        except redis.ResponseError:
            raise
        except redis.RedisError as error:  # the cluster's own errors (no node for a slot)
            raise StoreUnavailable(
                f"the shared cache at {self.shown_url}: {self.said(error)}"
            ) from None

    def said(self, error: Exception) -> str:
        """What ``error`` says, without the password."""
        return masked(str(error), self._url)

    def warn_once_a_while(self, folder: str, event: str, **fields: Any) -> None:
        """A warning about ``folder``, at most once per _WARN_EVERY seconds per event."""
        now = time.monotonic()
        with self._lock:
            last = self._warned.get((folder, event))
            if last is not None and now - last < _WARN_EVERY:
                return
            self._warned[folder, event] = now
        _log.warning(event, folder=folder, url=self.shown_url, **fields)

    def _failed(self, error: Exception) -> None:
        with self._lock:
            if self.down:
                return
            self.down = True
            threading.Thread(target=self._probe, name="my_cache-redis-probe", daemon=True).start()
        _log.warning(
            "my_cache.shared_cache_unreachable",
            url=self.shown_url,
            reason=f"{type(error).__name__}: {self.said(error)}",
            action=f"calls compute without the cache; retrying every {RETRY_AFTER:g} s",
        )

    def _probe(self) -> None:
        while not self._wake.wait(RETRY_AFTER):
            try:
                self.client.ping()
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                continue
            with self._lock:
                self.down = False
                orphans, self._orphans = self._orphans, []
            for lock, token in orphans:
                with contextlib.suppress(redis.RedisError, *_UNREACHABLE):
                    _RELEASE_SCRIPT(keys=[lock], args=[token], client=self.client)
            _log.warning("my_cache.shared_cache_reachable", url=self.shown_url)
            return

    # --- leases -----------------------------------------------------------------------------

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def hold(self, lock: str, token: str) -> None:
        """Renew ``lock``, taken with ``token``, until ``unlock``."""
        with self._lock:
            self._held[lock] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(
                    target=self._renew_leases, name="my_cache-redis-leases", daemon=True
                )
                self._renewer.start()

    def maybe_taken(self, lock: str, token: str) -> None:
        """A request to take ``lock`` that got no reply may still run on the server: the
        probe releases it once the server answers (its lease ends it otherwise)."""
        with self._lock:
            self._orphans.append((lock, token))

    def unlock(self, lock: str) -> None:
        with self._lock:
            token = self._held.pop(lock, None)
        if token is not None:
            self.unlock_token(lock, token)

    def unlock_token(self, lock: str, token: str) -> None:
        # Not released (the server is away): the lease ends it.
        with contextlib.suppress(StoreUnavailable, redis.ResponseError):
            self.call(lambda client: _RELEASE_SCRIPT(keys=[lock], args=[token], client=client))

    def _renew_leases(self) -> None:
        lease_ms = self.lease_ms
        while not self._wake.wait(self.lease / 3):
            with self._lock:
                held = list(self._held.items())
                if not held:
                    self._renewer = None
                    return
            for lock, token in held:
                self._renew_one(lock, token, lease_ms)

    def _renew_one(self, lock: str, token: str, lease_ms: int) -> None:
        # Not renewed (the server is away or full): the lease may run out, and another
        # process compute the key too; never a wrong value.
        with contextlib.suppress(StoreUnavailable, redis.ResponseError):
            self.call(
                lambda client: _RENEW_SCRIPT(keys=[lock], args=[token, lease_ms], client=client)
            )

    # --- many keys ----------------------------------------------------------------------------

    def scan(self, pattern: str) -> Iterator[str]:
        """Names of the keys matching ``pattern``, on every node of a cluster."""
        found = self.call(lambda client: list(client.scan_iter(match=pattern, count=_SCAN_BATCH)))
        for name in found:
            try:
                yield name.decode()
            except UnicodeDecodeError:  # not a name of ours: ours are text
                continue

    def describe(self, names: list[str]) -> list[Entry]:
        """The entries these keys hold; keys that are not an entry of ours, or are gone, are
        left out."""

        def read(client: Any) -> list[Any]:
            with client.pipeline(transaction=False) as pipeline:
                for name in names:
                    pipeline.hmget(name, *_FIELDS)
                    pipeline.hstrlen(name, "d")
                    pipeline.hlen(name)
                return cast(list[Any], pipeline.execute(raise_on_error=False))

        replies = self.call(read) if names else []
        entries = []
        for name, fields, size, count in zip(
            names, replies[::3], replies[1::3], replies[2::3], strict=True
        ):
            parsed = _parse_entry_name(name)
            if parsed is None or isinstance(fields, Exception) or not isinstance(size, int):
                continue  # a key of another type: not ours
            if count != 4 + (fields[-1] is not None):
                continue  # more fields than an entry's: not ours (as _IS_ENTRY says)
            entry = _entry(parsed, fields, size)
            if entry is not None:
                entries.append(entry)
        return entries

    def delete_names(self, names: list[str]) -> int:
        """Delete the entries of ours among these keys: plain commands, which a full server
        still accepts, one key each, so a cluster routes them."""
        if not names:
            return 0

        def remove(client: Any) -> int:
            with client.pipeline(transaction=False) as pipeline:
                for name in names:
                    # Not pipeline.eval: redis-py's cluster pipelines refuse it.
                    pipeline.execute_command("EVAL", _DELETE_ENTRY, 1, name)
                return sum(int(n) for n in pipeline.execute(raise_on_error=False) if n == 1)

        return self.call(remove)

    def close(self) -> None:
        self._wake.set()
        if self._client is not None:
            self._client.close()


def _entry(parsed: tuple[str, str], fields: list[bytes | None], size: int) -> Entry | None:
    """The Entry of a hash's fields, None if they are not an entry of ours."""
    function, arg_string, created, expires = fields
    # An entry always names its function: one that does not is not ours (and would pass for
    # an entry of the older layout, whose function is unknown).
    if not function or arg_string is None or created is None or size == 0:
        return None
    try:
        return Entry(
            folder=parsed[0],
            function=function.decode("utf-8", "replace"),
            key=parsed[1],
            arg_string=arg_string.decode("utf-8", "replace"),
            size=size,
            created=float(created),
            expires=None if expires is None else float(expires),
        )
    except ValueError:
        return None


def _folder_part(folder: str) -> str:
    # Percent-encoded: no ':' (it ends the folder), no glob character, no brace.
    return quote(folder, safe="/._-~")


def _parse_entry_name(name: str) -> tuple[str, str] | None:
    """``(folder, key)`` of an entry's Redis key, None if it is not one."""
    if not (name.startswith(_ENTRY) and name.endswith("}")):
        return None
    folder, colon, key = name[len(_ENTRY) : -1].partition(":")
    return (unquote(folder), key) if colon else None


class RedisFolder(FolderStore):
    """The entries of one folder (a namespace) in Redis.

    Process-safe and machine-safe: an entry is written by one script, and equivalent calls
    in different processes compute once (``acquire``), others waiting up to the lock timeout.
    """

    waits_for_others = True

    def __init__(self, folder: str, server: _Server) -> None:
        self._folder = folder
        self._server = server
        self._part = _folder_part(folder)

    def _entry(self, key: str) -> str:
        return f"{_ENTRY}{self._part}:{key}}}"

    def _lock_of(self, key: str) -> str:
        return f"{_LOCK}{self._part}:{key}}}"

    def get(self, key: str) -> Any:
        name = self._entry(key)
        try:
            data = self._server.call(lambda client: client.hget(name, "d"))
        except redis.ResponseError as error:
            data = error
        return self._loaded(key, name, data)

    def _loaded(self, key: str, name: str, data: Any) -> Any:
        """The value of ``data``, the reply to HGET ``name`` d; MISSING if there is none."""
        if data is None:
            return MISSING
        if isinstance(data, redis.ResponseError) or not is_ours(data):
            # Another application's key (not a hash, or a hash of other data): left alone.
            reason = self._server.said(data) if isinstance(data, Exception) else "not ours"
            self._server.warn_once_a_while(
                self._folder, "my_cache.foreign_key", key=name, reason=reason
            )
            return MISSING
        try:
            return load_result(data, key)
        except DamagedEntry as error:
            _log.warning("my_cache.damaged_entry", folder=self._folder, key=key, reason=str(error))
            with contextlib.suppress(StoreUnavailable, redis.ResponseError):
                self._server.delete_names([name])
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
        stored = dump_result(value, key)
        if stored.size > MAX_VALUE:
            raise UnstorableResult(
                f"its stored form is {stored.size / 2**20:.0f} MiB, over IN_REDIS' limit of "
                f"{MAX_VALUE // 2**20} MiB"
            )
        data = stored.joined()
        now = time.time()
        name = self._entry(key)
        expiry = ["", ""] if expire is None else [repr(now + expire), max(1, int(expire * 1000))]
        arguments = [data, function, shortened(arg_string()), repr(now), *expiry]

        def write(client: Any) -> None:
            _WRITE_SCRIPT(keys=[name], args=arguments, client=client)

        try:
            self._server.call(write)
        except redis.ResponseError as error:
            full = isinstance(error, redis.exceptions.OutOfMemoryError)
            said = self._server.said(error)
            reason = f"the shared cache is full (out of memory): {said}" if full else said
            self._server.warn_once_a_while(
                self._folder, "my_cache.write_failed", function=function, reason=reason
            )
            raise StoreUnavailable(reason) from error

    def delete(self, key: str) -> bool:
        return self.delete_keys([key]) > 0

    def delete_function(self, identity: Identity) -> int:
        return self.delete_keys([key for key in self.keys() if identity.clears(key)])

    def delete_keys(self, keys: list[str]) -> int:
        """Delete these entries; plain deletes, which a full server still accepts."""
        return self._server.delete_names([self._entry(key) for key in keys])

    def keys(self) -> Iterator[str]:
        """The keys of this folder's entries, found by a scan (the folder part holds no glob
        character: a pattern of it matches this folder only)."""
        for name in self._server.scan(f"{_ENTRY}{self._part}:*"):
            parsed = _parse_entry_name(name)
            if parsed is not None:
                yield parsed[1]

    def pauses(self) -> Iterator[float]:
        """A waiter looks for the value every 5-100 ms, for up to ``redis_lock_timeout``;
        when the holder finishes or dies (its lease runs out within LEASE seconds) a waiter
        takes over."""
        deadline = time.monotonic() + self._server.lock_timeout
        pause = 0.005
        while time.monotonic() < deadline:
            yield pause
            pause = min(pause * 2, _LONGEST_POLL)

    def attempt(self, key: str) -> Any:
        """One step of ``acquire``: MISSING when the caller now holds the key's lock, or
        cannot lock (an unreachable or full server: compute unlocked); the value if it is
        stored; else WAIT. One round trip: the lock is asked for with the value."""
        lock, name, token = self._lock_of(key), self._entry(key), uuid.uuid4().hex

        def ask(client: Any) -> list[Any]:
            # One hash slot (see the key names): a pipeline on a cluster too.
            with client.pipeline(transaction=False) as pipeline:
                pipeline.set(lock, token, nx=True, px=self._server.lease_ms)
                pipeline.hget(name, "d")
                pipeline.pttl(lock)
                return cast(list[Any], pipeline.execute(raise_on_error=False))

        sent = not self._server.down
        try:
            taken, data, time_to_live = self._server.call(ask)
        except StoreUnavailable:
            if sent:
                self._server.maybe_taken(lock, token)
            return MISSING
        # The value may be there: stored by a holder since the caller's lookup.
        value = self._loaded(key, name, data)
        if taken is True or taken == b"OK":  # b"OK" from some cluster pipelines
            if value is MISSING:
                self._server.hold(lock, token)
                return MISSING
            self._server.unlock_token(lock, token)
        if value is not MISSING or isinstance(taken, redis.ResponseError):
            return value  # a full server takes no locks: compute unlocked
        if time_to_live == -1:  # a key without a lease: another application's, left alone
            self._server.warn_once_a_while(
                self._folder, "my_cache.foreign_key", key=lock, reason="not a lock of ours"
            )
            return MISSING  # compute unlocked
        return WAIT

    def release(self, key: str) -> None:
        self._server.unlock(self._lock_of(key))

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
        # One scan of the namespace for entries of both layouts: a SCAN walks the whole
        # keyspace whatever its pattern. Only the names of ``folder`` are read further.
        current, older = [], []
        for name in self._server.scan(f"{NAMESPACE}*"):
            parsed = _parse_entry_name(name)
            if parsed is not None and (folder is None or parsed[0] == folder):
                current.append(name)
            elif _legacy.is_older(name):
                older.append(name)
        found = _legacy.entries(self._server, older, folder)
        for start in range(0, len(current), _SCAN_BATCH):
            found += self._server.describe(current[start : start + _SCAN_BATCH])
        return sorted(
            (entry for entry in found if function is None or names(entry.function, function)),
            key=lambda entry: (entry.folder, entry.function, entry.created, entry.key),
        )

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        keys_by_folder: dict[str, list[str]] = defaultdict(list)
        older: list[Entry] = []
        for entry in entries:
            if entry.function == _legacy.FUNCTION:
                older.append(entry)
            else:
                keys_by_folder[entry.folder].append(entry.key)
        return _legacy.delete(self._server, older) + sum(
            RedisFolder(folder, self._server).delete_keys(keys)
            for folder, keys in keys_by_folder.items()
        )

    def close(self) -> None:
        self._server.close()
