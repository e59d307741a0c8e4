"""IN_DISK: a diskcache.Cache per folder, each entry described in its own row; the registry
of folders in ``db_file``."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import diskcache
from diskcache.core import UNKNOWN

from my_cache import _log
from my_cache._fork import SQLITE, keep_unclosed, quiet, renew_after_fork
from my_cache._private import Access
from my_cache._sqlite import BUSY_TIMEOUT, failure, is_damage, is_locked, patiently, read_only
from my_cache._storages import _diskcache_table as table
from my_cache._storages._envelope import (
    DamagedEntry,
    Stored,
    dump_result,
    load_result,
    read_result,
)
from my_cache._storages._registry import Registry, inode_of
from my_cache._storages.base import (
    MISSING,
    Backend,
    Deferred,
    Entry,
    FolderStore,
    FolderTotals,
    ForeignPath,
    StoreUnavailable,
    UnstorableResult,
    names,
    shortened,
)
from my_cache.settings import Settings

if TYPE_CHECKING:
    from my_cache._identity import Identity

T = TypeVar("T")


_FILE_MISSING: Any = object()
# What an empty store's database takes of its size_limit: diskcache counts its pages.
_EMPTY_STORE = 32 * 1024
# Expired entries are misses at once; their rows and files go after this many expiring writes.
_EXPIRE_EVERY = 64
_CREATE_ATTEMPTS = 10
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _deleting(key: bytes | str) -> Callable[[diskcache.Cache], bool]:
    """A write for DiskFolder._transacting: delete ``key``; whether it was there."""
    return lambda cache: bool(cache.delete(key))


class PrivateDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's file handling, with value files 0600 in 0700 sub-folders.

    Every value file is written by ``_store_file`` (smaller values are rows of the database):
    the two levels of sub-folders are made where diskcache names them, again when another
    process removes an emptied one meanwhile, and the modes are set once the file is
    written. Until then nothing is reachable by others: the store's own folder is 0700. A
    file whose writing fails (a full disk) is removed, not left behind half-written.
    """

    access = Access()

    def __init__(self, directory: str, **settings: Any) -> None:
        super().__init__(directory, **settings)
        self._root = directory
        self._writing = threading.local()  # the file this thread's store() is writing

    def filename(self, key: Any = UNKNOWN, value: Any = None) -> tuple[str, str]:
        filename, full_path = super().filename(key, value)
        self._writing.path = full_path
        return filename, full_path

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[Any, ...]:
        self._writing.path = None
        try:
            if isinstance(value, Stored):
                size, mode, filename, db_value = self._store_file(value, key)
            else:
                size, mode, filename, db_value = super().store(value, read, key=key)
        except BaseException:
            if self._writing.path is not None:
                with contextlib.suppress(OSError):
                    os.remove(self._writing.path)
            raise
        if filename is not None:
            file = Path(self._root, filename)
            # If another process replaced this entry meanwhile, the file is gone: nothing to do.
            with contextlib.suppress(FileNotFoundError):
                os.chmod(file, self.access.file_mode)
                os.chmod(file.parent, self.access.directory_mode)
                os.chmod(file.parent.parent, self.access.directory_mode)
        return size, mode, filename, db_value

    def _store_file(self, value: Stored, key: Any) -> tuple[Any, ...]:
        """``value`` in a file of its own, as diskcache's ``store`` writes one it reads from,
        with its large buffers written by several threads (see Stored.write_into)."""
        filename, full_path = self.filename(key, value)
        for attempt in range(_CREATE_ATTEMPTS):
            # Another process may remove an emptied sub-folder (either level) meanwhile:
            # retried as diskcache does, on any OSError (Windows says access denied).
            try:
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                fd = os.open(full_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
                break
            except OSError:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        try:
            size = value.write_into(fd)
        finally:
            os.close(fd)
        return size, diskcache.core.MODE_BINARY, filename, None


class GroupDisk(PrivateDisk):
    """PrivateDisk for a cache its owner's group shares (the trust_group setting)."""

    access = Access(group=True)


class DiskFolder(FolderStore):
    """One diskcache directory holding checksummed pickles under string keys, each row
    carrying its entry's description (function and arguments) in diskcache's ``tag``.

    diskcache makes each write atomic and the store safe for threads and processes. Nothing
    is evicted unless a ``size_limit`` (bytes) is set: then the least recently stored go first.
    Reads go through a read-only connection of our own, so reading creates nothing; the
    diskcache.Cache that writes is opened at the first write, after the folder is registered.
    A damaged entry is deleted and a miss; a damaged store is set aside as
    ``<folder>.damaged`` (the last one only) and rebuilt empty; each is warned of.
    """

    def __init__(
        self, folder: str, registry: Registry, size_limit: int | None, access: Access
    ) -> None:
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise ForeignPath(
                f"cache folder {folder} is a file, not a folder; choose another folder= path"
            )
        registry.check()
        self.folder = folder
        self._registry = registry
        self._size_limit = size_limit
        self._access = access
        self._disk = GroupDisk if access.group else PrivateDisk
        self._refusal: str | None = None
        self._set_aside_by_us = False  # the store is gone because this object set it aside
        self._write_failure: str | None = None  # why writes fail, warned of once
        self._database = Path(folder) / diskcache.core.DBNAME
        self._lock = threading.Lock()  # opening, rebuilding and closing
        self._read_lock = threading.Lock()  # the reader connection, shared by threads
        self._reader: sqlite3.Connection | None = None
        self._reader_inode: int | None = None
        self._cache: diskcache.Cache | None = None
        self._writer_inode: int | None = None  # of the database _cache opened
        self._expiring_writes = 0
        # Generations whose function name this object recorded in the store (see set).
        self._named: set[bytes] = set()
        renew_after_fork(self)

    def after_fork(self) -> None:
        """In a forked child: connections of its own (see _fork)."""
        keep_unclosed((self._reader, self._cache))
        self._reader = self._cache = None
        self._lock, self._read_lock = threading.Lock(), threading.Lock()

    def _trust(self) -> None:
        """StoreUnavailable (warned of once) if others may write the store: it is not read."""
        if self._refusal is None:
            reason = self._access.distrust_database(self.folder, self._database)
            if reason is not None:
                self._refusal = f"store not used: {reason}"
                self._warn("my_cache.untrusted_store", self._refusal)
            elif self._database.exists():  # trusted as it is: not checked again
                self._refusal = ""
        if self._refusal:
            raise StoreUnavailable(self._refusal)

    def _open_reader(self) -> sqlite3.Connection | None:
        """The reader connection (the caller holds _read_lock); None while there is no store.

        Each read makes a cursor of its own, not one kept: an interrupt between a query and
        its fetch would leave a kept cursor's statement, and so its read snapshot, open.
        """
        if self._refusal:
            raise StoreUnavailable(self._refusal)
        if self._reader is None:
            self._trust()
            self._reader = read_only(self._database)
            if self._reader is not None:
                self._reader_inode = inode_of(self._database)
        return self._reader

    def _writable(self) -> diskcache.Cache:
        with self._lock:
            self._trust()
            if self._cache is None:
                self._cache = self._open_writable()
                self._writer_inode = inode_of(self._database)
            elif (inode := inode_of(self._database)) != self._writer_inode:
                # Removed (and maybe made again by another process): writing on into the
                # open, deleted file, no one would ever find what is written.
                self._warn(
                    "my_cache.missing_store",
                    "the folder was removed; recreated"
                    if inode is None
                    else "the folder was removed and made again meanwhile; reopened",
                )
                with self._read_lock:  # no thread is reading through what is closed
                    self._close()
                    self._refusal = None  # whoever made it again: trusted only if it may be
                self._trust()
                self._cache = self._open_writable()
                self._writer_inode = inode_of(self._database)
            return self._cache

    def _open_writable(self) -> diskcache.Cache:
        # In this order: a process registers a folder after creating it, so a folder listed
        # before it is looked for and not found was deleted, not created meanwhile.
        gone = self._registry.lists(self.folder) and not os.path.isdir(self.folder)
        self._access.make_file(self._database)
        # Registered before any entry is written: `mycache` finds every entry a call can hit.
        # Again even if this process did before: a clear may have unlisted it while gone.
        self._registry.register(self.folder, again=True)
        if gone and not self._set_aside_by_us:
            self._warn("my_cache.missing_store", "the folder is gone; it starts empty")
        try:
            return self._new_cache()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._set_aside(error, None)
            self._access.make_file(self._database)
            return self._new_cache()

    def _new_cache(self) -> diskcache.Cache:
        if self._size_limit is None:
            # diskcache culls on every set: two more statements that only a size limit
            # needs. Expired rows are removed every few expiring writes instead (see set).
            return diskcache.Cache(
                self.folder, disk=self._disk, eviction_policy="none", cull_limit=0
            )
        # diskcache's own culling deletes ten entries at a time, the one just written
        # included: a small folder would be emptied at each write past its limit. Eviction is
        # _evict's; the policy is set for its index on store_time.
        return diskcache.Cache(
            self.folder,
            disk=self._disk,
            eviction_policy="least-recently-stored",
            size_limit=self._size_limit,
            cull_limit=0,
        )

    def _recover(self, error: Exception) -> None:
        """After SQLite reported damage: set the store aside; the next write rebuilds it."""
        with self._lock, self._read_lock:
            # The database read: through the writer's connection once there is one (see _row).
            inode = self._writer_inode if self._cache is not None else self._reader_inode
            self._close()
            self._set_aside(error, inode)

    def _set_aside(self, error: Exception, inode: int | None) -> None:
        """Move a damaged store to ``<folder>.damaged``, replacing an older one there.

        ``inode`` is the database found damaged: if another process has already set it
        aside and rebuilt the store, the new store is left alone.
        """
        try:
            if inode is not None and os.stat(self._database).st_ino != inode:
                return
        except FileNotFoundError:
            return
        aside = f"{self.folder}.damaged"
        self._warn(
            "my_cache.damaged_store",
            f"{type(error).__name__}: {error}; set aside as {aside}, rebuilt empty",
        )
        shutil.rmtree(aside, ignore_errors=True)
        # Renamed, never deleted in place: another process never opens a half-deleted store.
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.folder, aside)
            self._set_aside_by_us = True

    def _warn(self, event: str, reason: str) -> None:
        _log.warning(event, folder=self.folder, reason=reason)

    def get(self, key: str) -> Any:
        data = self._fetch(key)
        if type(data) is bytes:  # the hit path, a call shorter
            return self._load(key, data)
        return self._resolved(key, data, deferred=False)

    def get_mapped(self, key: str) -> Any:
        return self._resolved(key, self._fetch(key), deferred=False, mapped=True)

    def fetch(self, key: str) -> Any:
        # diskcache keeps values under its min_file_size (32 KiB) in SQLite and hands them
        # back as bytes, cheap to check and unpickle here; larger ones live in files and come
        # back as an open file, read and unpickled later, off the event loop.
        return self._resolved(key, self._fetch(key), deferred=True)

    def _resolved(self, key: str, data: Any, *, deferred: bool, mapped: bool = False) -> Any:
        """The value ``_fetch`` found for ``key``: MISSING, the value, or (a file, if
        ``deferred``) a Deferred."""
        if data is None:
            return MISSING
        if data is _FILE_MISSING:
            return self._drop(key, "its value file is missing")
        if isinstance(data, bytes):
            return self._load(key, data)
        if deferred:
            return Deferred(lambda: self._load_file(key, data))
        return self._load_file(key, data, mapped=mapped)

    def _fetch(self, key: str) -> Any:
        """What the store holds for ``key``: bytes, an open file, None, or _FILE_MISSING;
        None in a damaged store (set aside). Unpickling, which runs the value's own code,
        comes after, outside the fork guard."""
        stored = table.stored_key(key)
        # The hit path: quiet()'s guard, inline.
        mark = SQLITE.mark()
        mark.depth += 1
        try:
            if SQLITE.forking:
                SQLITE.wait_out(mark)
            row = self._row(stored)
            if row is not None and row[0] == diskcache.core.MODE_RAW and row[2] is not None:
                return row[2]
            return self._stored(stored, row)
        except sqlite3.DatabaseError as error:
            if is_damage(error):
                self._recover(error)
                return None
            if not is_locked(error):
                raise
            return patiently(lambda: self._stored(stored, self._row(stored)))
        finally:
            mark.depth -= 1
            if SQLITE.forking:
                SQLITE.notify()

    def _row(self, stored: bytes | str) -> tuple[int, str | None, Any] | None:
        """The row of ``stored``: through the connection this thread writes with, if it has
        written (its page cache holds what it wrote: a separate reader would read those pages
        again from the -wal, three reads a miss), else through the reader."""
        cache = self._cache
        own = None if cache is None else table.own_connection(cache)
        if own is not None:
            return table.value_row(own, stored)
        with self._read_lock:
            reader = self._open_reader()
            return None if reader is None else table.value_row(reader, stored)

    def _stored(self, stored: bytes | str, row: tuple[int, str | None, Any] | None) -> Any:
        """What ``_fetch`` returns, from ``row`` (the row of ``stored``, read just now)."""
        for retry in (False, True):
            if retry:
                row = self._row(stored)
            if row is None:
                return None
            mode, filename, value = row
            if mode == diskcache.core.MODE_RAW and value is not None:
                return value
            if mode != diskcache.core.MODE_BINARY or filename is None:
                return _FILE_MISSING  # not a row my_cache wrote
            path = os.path.join(self.folder, filename)
            try:
                file = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                # Another process may have replaced the entry (removing the old file) between
                # reading the row and opening the file: read the row again, once.
                continue
            reason = self._access.distrust(path, os.fstat(file.fileno()))
            if reason is not None:  # planted by someone who may not write here
                file.close()
                return _FILE_MISSING
            return file
        return _FILE_MISSING

    def _load_file(self, key: str, file: BinaryIO, *, mapped: bool = False) -> Any:
        try:
            with file:  # a mapping outlives its file object
                return read_result(file, key, mapped=mapped)
        except DamagedEntry as error:
            return self._drop(key, str(error))

    def _load(self, key: str, data: bytes) -> Any:
        try:
            return load_result(data, key)
        except DamagedEntry as error:
            return self._drop(key, str(error))

    @quiet
    def _drop(self, key: str, reason: str) -> Any:
        _log.warning("my_cache.damaged_entry", folder=self.folder, key=key, reason=reason)
        # A store that cannot be written keeps it: a miss each time, never its value.
        with contextlib.suppress(sqlite3.Error, OSError, StoreUnavailable):
            self._transacting(_deleting(table.stored_key(key)))
        return MISSING

    def set(
        self,
        key: str,
        value: Any,
        *,
        function: str,
        arg_string: Callable[[], str],
        expire: float | None,
    ) -> None:
        # Pickled before the SQLite part: a fork waits for that part only (see _fork._Quiet).
        data = dump_result(value, key)
        if self._size_limit is not None and data.size > self._size_limit - _EMPTY_STORE:
            # It could never fit: eviction would delete every other entry, and still not
            # bring the folder within its limit.
            raise UnstorableResult(
                f"the result ({type(value).__qualname__}, {data.size} bytes stored) is larger "
                f"than the folder's size_limit of {self._size_limit} bytes allows (its "
                f"database takes {_EMPTY_STORE} of them empty): returned, not stored"
            )
        self._put(table.stored_key(key), function, data, expire, shortened(arg_string()))

    @quiet
    def _put(
        self, stored: bytes | str, function: str, data: Stored, expire: float | None, tag: str
    ) -> None:
        try:
            try:
                self._write(stored, function, data, expire, tag)
            except sqlite3.DatabaseError as error:
                if not is_damage(error):
                    raise
                self._recover(error)
                self._write(stored, function, data, expire, tag)
        except (sqlite3.Error, OSError) as error:
            # A read-only or full disk: warned of once, until a write succeeds again.
            why = failure(error, self.folder)
            if why.cause != self._write_failure:
                self._write_failure = why.cause
                self._warn("my_cache.write_failed", f"{why}; values are returned unstored")
            raise StoreUnavailable(f"{self.folder}: {why}") from None
        self._write_failure = None
        if expire is not None:
            self._expiring_writes += 1
            if self._expiring_writes % _EXPIRE_EVERY == 0:
                self._transacting(lambda cache: cache.expire())

    def _write(
        self, key: bytes | str, function: str, data: Stored, expire: float | None, tag: str
    ) -> None:
        def stored(cache: diskcache.Cache) -> diskcache.Cache:
            self._registry.register(self.folder)  # one stat, unless db_file was replaced
            generation = key[:8] if isinstance(key, bytes) else b""
            if generation not in self._named:
                # Before the entry: a listed entry always has its function's name.
                table.record_name(self._database, key, function)
                self._named.add(generation)
            if data.size < cache.disk.min_file_size:
                cache.set(key, bytes(data.joined()), expire=expire, tag=tag)
            else:
                # Given bytes, diskcache writes the file one *line* at a time: millions of
                # Python iterations (holding the GIL) for text-like pickles. PrivateDisk
                # writes it from the result's own buffers instead: never a whole copy.
                cache.set(key, data, read=True, expire=expire, tag=tag)
            return cache

        cache = self._transacting(stored)
        if self._size_limit is not None:
            self._evict(cache, key, self._size_limit)

    def _transacting(self, operation: Callable[[diskcache.Cache], T]) -> T:
        """``operation(cache)``, writes of diskcache's (made without its ``retry``), tried
        again while diskcache cannot begin their transaction, for up to BUSY_TIMEOUT; each
        try takes the store anew, reopened if its folder was removed. diskcache's own retry
        tries for ever, on a store whose folder was removed too: its connection then fails
        every time."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        pause = 0.001
        while True:
            try:
                return operation(self._writable())
            except diskcache.Timeout:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"no write could begin in {BUSY_TIMEOUT:.0f} s"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _evict(self, cache: diskcache.Cache, written: bytes | str, limit: int) -> None:
        """Delete the least recently stored entries, one at a time, until the store's volume
        (its database and value files) is within ``limit``; never the entry just written."""
        while cache.volume() > limit:
            with self._read_lock:  # within _put's fork guard already
                reader = self._open_reader()
                listed = [] if reader is None else table.oldest_keys(reader, 8)
            oldest = [key for key in listed if key != written]
            if not oldest:
                return
            for key in oldest:
                self._transacting(_deleting(key))
                if cache.volume() <= limit:
                    return

    def delete(self, key: str) -> bool:
        return self.delete_keys([key]) > 0

    def delete_function(self, identity: Identity) -> int:
        no_keys: list[bytes | str] = []
        keys = self._reading(lambda reader: table.keys_starting(reader, identity.prefix), no_keys)
        return self._delete_stored(keys)

    def delete_keys(self, keys: Iterable[str]) -> int:
        """Delete these entries (as listed by ``entries``); how many existed."""
        keys = list(keys)
        stored = [table.stored_key(key) for key in keys]
        texts = [key for key, form in zip(keys, stored, strict=True) if isinstance(form, bytes)]
        no_texts: list[str] = []
        older = self._reading(lambda reader: table.stored_as_text(reader, texts), no_texts)
        return self._delete_stored([*stored, *older])

    @quiet
    def _delete_stored(self, keys: list[bytes | str]) -> int:
        # One transaction per key, as diskcache deletes: its row goes, then its value file.
        # In one transaction for all, diskcache would remove each file before the commit,
        # and a kill meanwhile would leave listed entries without their values.
        if not keys or not self._database.exists():
            return 0
        return sum(1 for key in keys if self._transacting(_deleting(key)))

    def entries(self) -> list[Entry]:
        """The live entries, oldest first; none in a damaged store (set aside)."""
        no_rows: list[table.EntryRow] = []
        rows = self._reading(table.entries, no_rows)
        return [Entry(self.folder, *row) for row in rows]

    def totals(self) -> tuple[int, int, int | None]:
        """How many live entries there are, their bytes, and the store's size limit."""
        nothing: tuple[int, int, int | None] = (0, 0, None)
        return self._reading(table.totals, nothing)

    @quiet
    def _reading(self, query: Callable[[sqlite3.Connection], T], empty: T) -> T:
        """``query(reader)``, or ``empty`` when there is no store or it is damaged (then it is
        set aside, as a call finding the damage would)."""
        try:
            with self._read_lock:
                reader = self._open_reader()
                return empty if reader is None else patiently(lambda: query(reader))
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self._recover(error)
            return empty

    @quiet
    def close(self) -> None:
        with self._lock, self._read_lock:
            self._close()

    def _close(self) -> None:
        """Close both connections (the caller holds both locks)."""
        reader, cache, self._reader, self._cache = self._reader, self._cache, None, None
        self._named.clear()
        if reader is not None:
            reader.close()
        if cache is not None:
            cache.close()


class DiskBackend(Backend):
    persistent = True

    def __init__(self, settings: Settings) -> None:
        self._access = Access(group=settings.trust_group)
        self._registry = Registry(Path(settings.db_file), self._access)
        self._size_limit = settings.size_limit

    def open_folder(self, folder: str) -> DiskFolder:
        return DiskFolder(folder, self._registry, self._size_limit, self._access)

    def _stores(self, folder: str | None) -> list[DiskFolder]:
        """The stores of ``folder`` (None: every registered one) that exist, for reading."""
        paths = self._registry.folders() if folder is None else [folder]
        return [self.open_folder(path) for path in paths if os.path.isdir(path)]

    def entries(self, folder: str | None = None, function: str | None = None) -> list[Entry]:
        found: list[Entry] = []
        for store in self._stores(folder):
            try:
                found += store.entries()
            except StoreUnavailable:
                continue  # not ours to read: warned of
            finally:
                store.close()
        if function is not None:
            found = [entry for entry in found if names(entry.function, function)]
        found.sort(key=lambda entry: (entry.created, entry.folder, entry.key))
        return found

    def totals(self, folder: str | None = None) -> list[FolderTotals]:
        counted = []
        for store in self._stores(folder):
            try:
                count, size, limit = store.totals()
            except StoreUnavailable:
                continue  # not ours to read: warned of
            finally:
                store.close()
            if count:
                counted.append(FolderTotals(store.folder, count, size, limit))
        return counted

    def delete_entries(self, entries: Iterable[Entry]) -> int:
        keys_by_folder: defaultdict[str, list[str]] = defaultdict(list)
        for entry in entries:
            keys_by_folder[entry.folder].append(entry.key)
        deleted = 0
        for path, keys in keys_by_folder.items():
            if not os.path.isdir(path):
                continue
            store = self.open_folder(path)
            try:
                deleted += store.delete_keys(keys)
            except (sqlite3.Error, OSError) as error:
                reason = failure(error, path)
                raise StoreUnavailable(f"cannot delete the entries of {path}: {reason}") from None
            finally:
                store.close()
        self._registry.forget_missing()
        return deleted

    def close(self) -> None:
        self._registry.close()
