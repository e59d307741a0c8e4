"""How a result is stored: a checksummed pickle, with its large buffers out of band.

``MC\\x03``: a header (format, checksum), then the pickle. Every result without large buffers.

``MC\\x04``: for results that carry buffers of OUT_OF_BAND bytes or more (numpy arrays,
pandas frames, a bytes or bytearray result: anything that gives pickle protocol 5 buffers).
A header (format, checksum, the pickle's length, the buffers' count), a row per buffer
(length, read-only), the pickle, then each buffer at an offset aligned to ALIGN bytes. The
buffers are written straight from the result's own memory, and read straight into the memory
the result will own (or mapped from the file): a hit or a miss costs one copy of the data,
where a pickle in one piece costs three.

The checksum runs over the entry's key, then everything after itself: it catches accidental
damage (a torn or garbled file) and bytes that belong to another key (a moved or swapped
value file), either of which could otherwise unpickle into a wrong value. Tampering is kept
out by file permissions, not by the checksum. XXH3 (xxhash): 0.09 us for a 1 KB result
against CRC-32's 0.35, and tens of GB/s on large ones, so a verified hit costs little more
than reading the bytes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import mmap
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Final

from xxhash import xxh3_64, xxh3_64_intdigest

from my_cache._buffers import OutOfBand
from my_cache._storages.base import UnstorableResult

OUT_OF_BAND: Final = 64 * 1024
"""Buffers this large or larger are written out of band; smaller ones stay in the pickle."""
ALIGN: Final = 64
"""Out-of-band buffers start at offsets that are multiples of this: a mapped array is aligned
as numpy would allocate it."""

_HEADER = struct.Struct(">3sQ")
_CHECKSUM = struct.Struct(">Q")
_FORMAT = b"MC\x03"
_BUFFERS_HEADER = struct.Struct(">3sQQI")  # format, checksum, pickle length, buffer count
_BUFFER_ROW = struct.Struct(">QB")  # length, read-only
_BUFFERS_FORMAT = b"MC\x04"
# MC\x02: MC\x03 with a CRC-32 in 4 bytes; still read, so an upgrade keeps every entry.
_CRC_HEADER = struct.Struct(">3sI")
_CRC_FORMAT = b"MC\x02"
_KEYLESS_FORMAT = b"MC\x01"
_PADDING = bytes(ALIGN)
_MAX_BUFFERS = 1 << 20  # more rows than any result has: a damaged count, not a result


class DamagedEntry(Exception):
    """Stored bytes that are not an intact result: never returned, always recomputed."""


class Stored:
    """A result ready to be written: its head (header and pickle) and its out-of-band
    buffers, which are views of the result's own memory, never joined unless asked."""

    __slots__ = ("_buffers", "_checksum", "_head", "_paddings", "size")

    def __init__(
        self, head: memoryview, buffers: list[memoryview], checksum: xxh3_64 | None = None
    ) -> None:
        self._head = head
        self._buffers = buffers
        # The checksum so far, short of the buffers: it is finished as they are written.
        self._checksum = checksum
        self._paddings = []
        position = len(head)
        for buffer in buffers:
            self._paddings.append(-position % ALIGN)
            position += self._paddings[-1] + buffer.nbytes
        self.size = position
        """How many bytes are stored."""

    def _sealed(self) -> memoryview:
        """The head, its checksum filled in (a pass over the buffers, the first time)."""
        if self._checksum is not None:
            for buffer in self._buffers:
                self._checksum.update(buffer)
            self._seal(self._checksum)
        return self._head

    def _seal(self, checksum: xxh3_64) -> None:
        _CHECKSUM.pack_into(self._head, 3, checksum.intdigest())
        self._checksum = None

    def parts(self) -> Iterator[memoryview]:
        """The stored bytes, in order, as views."""
        yield self._sealed()
        for padding, buffer in zip(self._paddings, self._buffers, strict=True):
            yield memoryview(_PADDING)[:padding]
            yield buffer

    def joined(self) -> memoryview:
        """The stored bytes in one piece, for a store that takes one value: no copy for a
        result without out-of-band buffers."""
        if not self._buffers:
            return self._sealed()
        return memoryview(b"".join(self.parts()))

    def write_into(self, fd: int) -> int:
        """Write the stored bytes to the new file ``fd``, each buffer straight from the
        result's own memory (several threads for a large one), and checked as it is written;
        the head, which holds the checksum, last. How many bytes were written."""
        offset = len(self._head)
        for padding, buffer in zip(self._paddings, self._buffers, strict=True):
            offset += padding  # zeros: the file's bytes there until written
            _write_at(fd, buffer.cast("B"), offset, self._checksum)
            offset += buffer.nbytes
        if self._checksum is not None:
            self._seal(self._checksum)
        _write_at(fd, self._head, 0)
        return offset


def dump_result(value: Any, key: str) -> Stored:
    """``value`` as stored bytes for ``key``, or UnstorableResult saying why it cannot be
    pickled. The pickle is written after room left for the header, filled in afterwards; the
    large buffers are not copied at all."""
    out_of_band = OutOfBand(OUT_OF_BAND)
    stream = io.BytesIO()
    stream.write(bytes(_HEADER.size))
    try:
        pickler = pickle.Pickler(
            _FramesTo(stream), pickle.HIGHEST_PROTOCOL, buffer_callback=out_of_band
        )
        pickler.dump(_raw_bytes(value))
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as error:
        raise UnstorableResult(f"{type(value).__qualname__} cannot be pickled: {error}") from error
    buffers = out_of_band.buffers
    view = stream.getbuffer()
    if not buffers:
        _HEADER.pack_into(view, 0, _FORMAT, _checksum(key, view[_HEADER.size :]))
        return Stored(view, [])
    pickled = view[_HEADER.size :]
    head = bytearray(_BUFFERS_HEADER.size + _BUFFER_ROW.size * len(buffers))
    _BUFFERS_HEADER.pack_into(head, 0, _BUFFERS_FORMAT, 0, len(pickled), len(buffers))
    for index, buffer in enumerate(buffers):
        row = _BUFFERS_HEADER.size + _BUFFER_ROW.size * index
        _BUFFER_ROW.pack_into(head, row, buffer.nbytes, buffer.readonly)
    checksum = _key_hash(key)
    checksum.update(memoryview(head)[_HEADER.size :])
    checksum.update(pickled)
    # The pickle is copied once more here, into the head: it is small, its buffers are not.
    return Stored(memoryview(head + pickled), buffers, checksum)


class _RawBytes:
    """A large bytes or bytearray result, pickled as one out-of-band buffer (pickle keeps
    these two types in band whatever their size)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | bytearray) -> None:
        self.value = value

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        made = _bytes_from if type(self.value) is bytes else _bytearray_from
        return made, (pickle.PickleBuffer(self.value),)


def _raw_bytes(value: Any) -> Any:
    kind = type(value)
    if (kind is bytes or kind is bytearray) and len(value) >= OUT_OF_BAND:
        return _RawBytes(value)
    return value


def _bytes_from(buffer: Any) -> bytes:
    """A bytes result from its stored buffer: the buffer itself when read as bytes."""
    return buffer if type(buffer) is bytes else bytes(buffer)


def _bytearray_from(buffer: Any) -> bytearray:
    return buffer if type(buffer) is bytearray else bytearray(buffer)


def is_ours(data: bytes) -> bool:
    """Whether ``data`` begins like a result my_cache stored (intact or not)."""
    return data[:3] in (_FORMAT, _BUFFERS_FORMAT, _CRC_FORMAT, _KEYLESS_FORMAT)


def _key_hash(key: str) -> xxh3_64:
    return xxh3_64(key.encode("utf-8", "surrogatepass"))


def _checksum(key: str, pickled: bytes | memoryview) -> int:
    return xxh3_64_intdigest(pickled, xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")))


def _crc_checksum(key: str, pickled: bytes | memoryview) -> int:
    return zlib.crc32(pickled, zlib.crc32(key.encode("utf-8", "surrogatepass")))


def load_result(data: bytes | memoryview, key: str) -> Any:
    """The result ``dump_result`` wrote for ``key``, from its stored bytes in one piece;
    DamagedEntry if they are not intact or were written for another key."""
    fmt = data[:3]
    if fmt == _FORMAT and len(data) >= _HEADER.size:  # the hit path: kept short
        (checksum,) = _CHECKSUM.unpack_from(data, 3)
        pickled = memoryview(data)[_HEADER.size :]
        if _checksum(key, pickled) != checksum:
            raise _mismatch()
        if len(pickled) < _FRAMED_READ:
            try:
                return pickle.loads(pickled)
            except Exception as error:
                raise DamagedEntry(f"cannot unpickle: {type(error).__name__}: {error}") from error
        return _unpickled(pickled, ())
    if fmt == _BUFFERS_FORMAT:
        view = memoryview(data)

        def copied(offset: int, size: int, readonly: bool, checksum: xxh3_64) -> Any:
            # Copies: an array must not hold on to (or write into) the bytes it came in.
            part = view[offset : offset + size]
            checksum.update(part)
            return bytes(part) if readonly else bytearray(part)

        return _load_with_buffers(key, view, copied, len(view))
    if fmt == _CRC_FORMAT and len(data) >= _CRC_HEADER.size:
        checksum = _CRC_HEADER.unpack_from(data)[1]
        pickled = memoryview(data)[_CRC_HEADER.size :]
        intact = _crc_checksum(key, pickled) == checksum
    elif fmt == _KEYLESS_FORMAT:
        raise DamagedEntry("written by an older my_cache, without its key in the checksum")
    elif len(data) < _HEADER.size:
        raise DamagedEntry(f"{len(data)} bytes are too few for an entry")
    else:
        raise DamagedEntry("not an entry written by my_cache")
    if not intact:
        raise _mismatch()
    return _unpickled(pickled, ())


def read_result(file: BinaryIO, key: str, *, mapped: bool = False) -> Any:
    """The result ``dump_result`` wrote for ``key``, from the start of ``file``. Large
    buffers are read straight into the memory of the result's arrays, or, if ``mapped``,
    mapped read-only from the file (then the result's arrays are backed by the file)."""
    if file.read(3) != _BUFFERS_FORMAT:
        file.seek(0)
        return load_result(file.read(), key)
    if mapped:
        try:
            view = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        except ValueError:  # an empty file cannot be mapped
            raise DamagedEntry("0 bytes are too few for an entry") from None
        mapped_at = functools.partial(_mapped_buffer, view)
        return _load_with_buffers(key, view, mapped_at, len(view))
    file.seek(0)
    head = file.read(_BUFFERS_HEADER.size)
    position = len(head)

    def read_buffer(offset: int, size: int, readonly: bool, checksum: xxh3_64) -> Any:
        nonlocal position
        if offset != position:
            file.seek(offset)
        position = offset + size
        if readonly:  # as bytes: a bytes result is this very object
            data = file.read(size)
            checksum.update(data)
            return data
        # Anonymous memory rather than a bytearray, which would be zeroed first: a pass over
        # every page before the read's own. The kernel gives the pages as they are written.
        buffer = _anonymous(size) if size else bytearray()
        view = memoryview(buffer)
        got = _read_checked(file, offset, view, checksum)
        file.seek(position)
        return buffer if got == size else view[:got]

    def rest(size: int) -> bytes:
        nonlocal position
        position += size
        return file.read(size)

    total = os.fstat(file.fileno()).st_size
    return _load_with_buffers(key, head, read_buffer, total, rest)


_CHECKED_CHUNK = 1 << 20
_HUGE_PAGE = 2 << 20
_SIDE_BY_SIDE = 32 << 20
"""Buffers this large are read and written by several threads, each its own part."""
_THREADS = min(4, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1
# Without positioned reads and writes (Windows), one thread moves the file's position.
_POSITIONED = hasattr(os, "preadv") and hasattr(os, "pwritev")


def _side_by_side(
    fd: int,
    size: int,
    part: Callable[[int, int, int, int], None],
    meanwhile: Callable[[int], None] | None = None,
) -> int:
    """Call ``part(descriptor, index, start, end)`` for the parts of ``range(size)``, whole
    huge pages each, on the file ``fd``: part 0 in this thread, the others on threads of
    their own, while this one calls ``meanwhile(start of part 1)`` once its own part is done.
    The parts' size.

    Most of a large read's or write's time is the kernel faulting in pages (the result's,
    or the page cache's), which threads do side by side: a 1 GB hit took 0.33 s on two
    threads against 0.63 s on one, a 1 GB write 0.19 s against 0.34 s, measured.

    Each helper has a descriptor of its own (a duplicate of ``fd``, closed when its part is
    done): one still running after an interrupt reads or writes this file only, never one
    that took ``fd``'s number once the caller closed it. A part no thread or descriptor can
    be had for (a limit, or the interpreter exiting) runs in this thread."""
    parts = _THREADS if size >= _SIDE_BY_SIDE and _POSITIONED else 1
    step = -(-size // parts // _HUGE_PAGE) * _HUGE_PAGE  # no page is faulted by two threads
    errors: list[BaseException] = []

    def run(descriptor: int, index: int, claim: _Claim | None = None) -> None:
        if claim is not None and not claim.take(helper=True):
            return  # the caller gave the part up, its descriptor closed
        try:
            part(descriptor, index, index * step, min(index * step + step, size))
        except BaseException as error:  # raised in the caller's thread, below
            errors.append(error)
        finally:
            if claim is not None:
                os.close(descriptor)

    helpers: list[threading.Thread] = []
    try:
        for index in range(1, parts):
            claim = _Claim()
            try:
                descriptor = os.dup(fd)
            except OSError:  # no descriptor to spare
                run(fd, index)
                continue
            try:
                helper = threading.Thread(target=run, args=(descriptor, index, claim))
                helpers.append(helper)
                helper.start()
            except BaseException as error:
                if not claim.take(helper=False):
                    raise  # the thread runs: joined below
                os.close(descriptor)
                if not isinstance(error, RuntimeError):
                    raise
                run(fd, index)  # no new thread now
        run(fd, 0)
        if meanwhile is not None and not errors:
            meanwhile(step)
    finally:
        # Even on an interrupt, the helpers finish before the caller goes on with the memory
        # they read into or write from.
        _join(helpers)
    _raise_first(errors)
    return step


class _Claim:
    """Who owns a helper's part and descriptor: the helper, once it runs, or the caller, if
    starting the helper failed before it could (then the helper, if it ever runs, does
    nothing)."""

    __slots__ = ("_lock", "_taker")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taker: bool | None = None

    def take(self, *, helper: bool) -> bool:
        """Whether the part is this taker's: the first to ask gets it."""
        with self._lock:
            if self._taker is None:
                self._taker = helper
            return self._taker == helper


def _raise_first(errors: list[BaseException]) -> None:
    """Raise the first of ``errors``, if any, and empty the list: an error's traceback holds
    the frame that appended it, which holds the list, and so the error itself. Left to the
    cyclic collector, such a cycle closed the pickle's buffer while still in use ("Exception
    ignored ... BufferError" on stderr, Python 3.12 and later)."""
    if errors:
        # An interrupt first: it may be the caller's own, behind a helper's failed write.
        first = next((e for e in errors if not isinstance(e, Exception)), errors[0])
        try:
            raise first
        finally:
            del first
            errors.clear()


def _join(helpers: list[threading.Thread]) -> None:
    """Join every helper, through interrupts too; the first interrupt is raised after."""
    interrupted: list[BaseException] = []
    for helper in helpers:
        while helper.is_alive():
            try:
                helper.join()
            except BaseException as error:
                interrupted.append(error)
    _raise_first(interrupted)


def _read_into(file: BinaryIO, descriptor: int, chunk: memoryview, at: int) -> int:
    if _POSITIONED:
        return os.preadv(descriptor, [chunk], at)
    file.seek(at)
    return file.readinto(chunk)  # type: ignore[attr-defined, no-any-return]  # a file has it


def _read_checked(file: BinaryIO, offset: int, view: memoryview, checksum: xxh3_64) -> int:
    """Read ``len(view)`` bytes of ``file`` from ``offset`` into ``view``, updating
    ``checksum`` with them; the count read (fewer at the file's end). The first part is
    checked as it is read; the others after, in order."""
    counts: dict[int, int] = {}

    def read_part(descriptor: int, index: int, start: int, end: int) -> None:
        got = start
        while got < end:
            chunk = view[got : min(got + _CHECKED_CHUNK, end)]
            read = _read_into(file, descriptor, chunk, offset + got)
            if not read:
                break
            if index == 0:
                # Checked while the chunk is still in the CPU's cache: 20% faster than a
                # pass over the whole buffer after reading it, measured.
                checksum.update(chunk[:read])
            got += read
        counts[index] = got - start

    step = _side_by_side(file.fileno(), len(view), read_part)
    got = counts[0]
    for index in range(1, len(counts)):
        if got != index * step:  # a part ended early: the file is shorter than its header
            break
        checksum.update(view[got : got + counts[index]])
        got += counts[index]
    return got


def _write_at(fd: int, view: memoryview, offset: int, checksum: xxh3_64 | None = None) -> None:
    """Write all of ``view`` to ``fd`` at ``offset``, large views by several threads, and
    update ``checksum`` with it: the first part as it is written, while in the CPU's cache,
    the others (already in memory) while the other threads write them."""

    def write_part(descriptor: int, index: int, start: int, end: int) -> None:
        while start < end:
            chunk = view[start : min(start + _CHECKED_CHUNK, end)]
            if _POSITIONED:
                written = os.pwritev(descriptor, [chunk], offset + start)
            else:
                os.lseek(descriptor, offset + start, os.SEEK_SET)
                written = os.write(descriptor, chunk)
            if index == 0 and checksum is not None:
                checksum.update(chunk[:written])
            start += written

    def check_the_rest(step: int) -> None:
        if checksum is not None:
            checksum.update(view[step:])

    _side_by_side(fd, len(view), write_part, check_the_rest)


def _mapped_buffer(
    view: memoryview, offset: int, size: int, readonly: bool, checksum: xxh3_64
) -> memoryview:
    part = view[offset : offset + size]
    checksum.update(part)
    return part


def _anonymous(size: int) -> mmap.mmap | bytearray:
    """``size`` bytes of private anonymous memory, in huge pages where the system has them
    (as numpy asks for its large arrays): faulting in 2 MiB at a time rather than 4 KiB made
    filling 100 MB 5x faster, measured. (mmap's default, a shared mapping, gets none.)"""
    try:
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except AttributeError:  # Windows: no such flags
        return bytearray(size)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or no huge pages
        memory.madvise(mmap.MADV_HUGEPAGE)
    return memory


def _load_with_buffers(
    key: str,
    data: bytes | memoryview,
    buffer_at: Callable[[int, int, bool, xxh3_64], Any],
    total: int,
    more: Callable[[int], bytes] | None = None,
) -> Any:
    """Check and unpickle an MC\\x04 entry. ``data`` holds at least its fixed header;
    ``more(n)`` reads the next ``n`` bytes after what was read so far (None: ``data`` is the
    whole entry); ``buffer_at(offset, size, readonly, checksum)`` gives the buffer stored
    there, having updated ``checksum`` with it. ``total`` is the entry's size: no length in
    its header is believed past it (a damaged one would ask for any amount of memory)."""
    taken = 0

    def take(size: int) -> memoryview:
        nonlocal data, taken
        if more is not None and len(data) < taken + size:
            data = bytes(data[taken:]) + more(taken + size - len(data))
            taken = 0
        chunk = memoryview(data)[taken : taken + size]
        if len(chunk) < size:
            raise DamagedEntry("the entry ends before its header says")
        taken += size
        return chunk

    _, checksum, pickle_length, count = _BUFFERS_HEADER.unpack(take(_BUFFERS_HEADER.size))
    if count > _MAX_BUFFERS:
        raise DamagedEntry(f"its header counts {count} buffers")
    expected = _key_hash(key)
    expected.update(_BUFFERS_HEADER.pack(_BUFFERS_FORMAT, 0, pickle_length, count)[_HEADER.size :])
    if _BUFFERS_HEADER.size + _BUFFER_ROW.size * count + pickle_length > total:
        raise DamagedEntry("its header says more than the entry holds")
    rows = take(_BUFFER_ROW.size * count)
    expected.update(rows)
    pickled = take(pickle_length)
    expected.update(pickled)
    buffers = []
    position = _BUFFERS_HEADER.size + len(rows) + pickle_length
    for index in range(count):
        size, readonly = _BUFFER_ROW.unpack_from(rows, _BUFFER_ROW.size * index)
        position += -position % ALIGN
        if position + size > total:
            raise DamagedEntry("its header says more than the entry holds")
        buffer = buffer_at(position, size, bool(readonly), expected)
        if memoryview(buffer).nbytes != size:
            raise DamagedEntry("the entry ends before its buffers do")
        buffers.append(buffer)
        position += size
    if expected.intdigest() != checksum:
        raise _mismatch()
    return _unpickled(pickled, buffers)


def _mismatch() -> DamagedEntry:
    return DamagedEntry(
        "checksum mismatch: the stored bytes were altered, or belong to another key "
        "(a moved or swapped value file)"
    )


# pickle holds the GIL for as long as one call runs in C: a result of millions of small
# objects, pickled or unpickled in one call by a writer or reader thread, stalls the event
# loop of cache_async for as long (0.68 s measured for 1M tuples). Through a file that is
# Python code, the pickler hands over each 64 KiB frame in a call of its own, and between
# calls the interpreter lets another thread take the GIL.
_FRAMED_READ = 1 << 20  # smaller pickles are read in one call: they take well under 5 ms


class _FramesTo:
    """The pickler's file: each frame written by a Python call."""

    __slots__ = ("_stream",)

    def __init__(self, stream: io.BytesIO) -> None:
        self._stream = stream

    def write(self, frame: Any) -> int:
        return self._stream.write(frame)


class _FramesFrom:
    """The unpickler's file over a pickle in memory: each frame read by a Python call."""

    __slots__ = ("_at", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._at + size
        chunk = self._view[self._at : end]
        self._at += len(chunk)
        return bytes(chunk)

    def readinto(self, target: Any) -> int:
        chunk = self._view[self._at : self._at + len(target)]
        target[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)

    def readline(self) -> bytes:
        rest = self._view[self._at :]
        end = bytes(rest[:_FRAMED_READ]).find(b"\n")
        return self.read(len(rest) if end < 0 else end + 1)


def _unpickled(pickled: bytes | memoryview, buffers: Any) -> Any:
    try:
        if len(pickled) < _FRAMED_READ:
            return pickle.loads(pickled, buffers=buffers)
        return pickle.Unpickler(_FramesFrom(memoryview(pickled)), buffers=buffers).load()
    except Exception as error:
        raise DamagedEntry(f"cannot unpickle: {type(error).__name__}: {error}") from error
