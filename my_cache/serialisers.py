"""Argument serialisers: a call's arguments become ``(arg_string, hash)``.

The hash is the identity of a call in the cache, so every builtin serialiser first puts the
arguments in a canonical form: dict items and set elements are ordered by content, never by
insertion order or by ``hash()`` (which varies with PYTHONHASHSEED). Types are kept apart:
``1``, ``1.0`` and ``True`` are different arguments, as are a tuple and a list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import re
import reprlib
import types
from abc import ABC, abstractmethod
from typing import Any

import msgpack
from blake3 import blake3
from xxhash import xxh3_64_hexdigest

from my_cache._buffers import OutOfBand

_PICKLE_PROTOCOL = 5


class Serialise(ABC):
    """Base of every serialiser; subclass it and pass an instance as ``serialiser=``.

    ``encode`` must give the same hash for equivalent arguments in every process and different
    hashes for different arguments; it raises TypeError for an argument it cannot represent.
    Declare it ``encode(self, /, *args, **kwargs)``: the ``/`` lets a cached function have a
    parameter named ``self``.
    """

    @abstractmethod
    def encode(self, /, *args: Any, **kwargs: Any) -> tuple[str, str]:
        """Return ``(arg_string, hash)``: a description of the arguments, and their hash."""

    def _call_hash(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The hash alone, for a call whose ``kwargs`` are already sorted by name.

        The hit path needs only this; builtins override it to skip building ``arg_string``.
        """
        return self.encode(*args, **kwargs)[1]

    def _describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``arg_string`` alone, for a call whose ``kwargs`` are already sorted by name.

        A miss needs it after ``_call_hash``; builtins override it to skip the hash.
        """
        return self.encode(*args, **kwargs)[0]


class _CanonicalSerialise(Serialise):
    """A serialiser that hashes the bytes of one canonical dump of the arguments."""

    def encode(self, /, *args: Any, **kwargs: Any) -> tuple[str, str]:
        sorted_kwargs = dict(sorted(kwargs.items()))
        data = self._checked_dump(args, sorted_kwargs)
        return self._arg_string(args, sorted_kwargs, data), _digest(data)

    def _call_hash(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return _digest(self._checked_dump(args, kwargs))

    _describes_its_dump = False
    """Whether ``_arg_string`` reads the dump (then ``_describe`` dumps the call again)."""

    def _describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        data = self._checked_dump(args, kwargs) if self._describes_its_dump else b""
        return self._arg_string(args, kwargs, data)

    @abstractmethod
    def _dump(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The canonical bytes of a call; raises on an argument the format cannot hold."""

    def _arg_string(self, args: tuple[Any, ...], kwargs: dict[str, Any], data: bytes) -> str:
        return describe_call(args, kwargs)

    def _checked_dump(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        try:
            return self._dump(args, kwargs)
        except Exception as error:
            raise self._unrepresentable(args, kwargs, error) from error

    def _unrepresentable(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception
    ) -> TypeError:
        """A TypeError naming this serialiser and the first argument it cannot represent."""
        named: list[tuple[str, str | None, Any]] = [
            (f"positional argument {i}", None, value) for i, value in enumerate(args)
        ]
        named += [(f"argument {name!r}", name, value) for name, value in kwargs.items()]
        label, parameter, value = "the arguments", None, (args, kwargs)
        for candidate_label, candidate_parameter, candidate in named:
            try:
                self._dump((candidate,), {})
            except Exception as own_error:
                label, parameter, value, error = (
                    candidate_label,
                    candidate_parameter,
                    candidate,
                    own_error,
                )
                break
        if isinstance(error, RecursionError):
            reason = "it is recursive or nested too deeply"
        elif isinstance(error, _Unrepresentable):
            held = type(error.value).__qualname__
            reason = f"it holds a value of type {held}, which {error.format} cannot hold"
        else:
            reason = f"{type(error).__name__}: {error}"
        return ArgumentTypeError(
            f"{type(self).__name__} cannot represent {label} "
            f"({type(value).__qualname__}): {reason}",
            parameter,
            f"{type(self).__name__} cannot represent it: {reason}",
        )


class ArgumentTypeError(TypeError):
    """An argument the serialiser cannot represent; ``parameter`` names it when it was
    passed by name (every parameter is, once a call is normalised). ``reason`` says why
    without naming the argument, for a value that was not one (a captured variable)."""

    def __init__(self, message: str, parameter: str | None, reason: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.reason = reason

    @property
    def remedy(self) -> str:
        if self.parameter is None:
            return ""
        return (
            f". If it never changes the result, leave it out of the key with "
            f"ignore=[{self.parameter!r}]"
        )


class _Unrepresentable(Exception):
    def __init__(self, value: object, format: str) -> None:
        # Its type, not the value: a traceback would print all of a 200 MB bytes.
        super().__init__(f"a {type(value).__qualname__} in {format}")
        self.value = value
        self.format = format


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# --- pickle ----------------------------------------------------------------------------------

_PICKLE_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_EMPTY_DICT, _EMPTY_SET, _FROZENSET = b"}", b"\x8f", b"\x91"  # pickle opcodes, protocol 4+
# One search for the three (0.17 us) costs less than three `in` tests (0.43 us).
_UNORDERED = re.compile(b"[" + re.escape(_EMPTY_DICT + _EMPTY_SET + _FROZENSET) + b"]")


class _SortedSet(tuple[Any, ...]):
    """A set's elements in canonical order; its own class so it never equals a plain tuple."""


class _SortedFrozenset(tuple[Any, ...]):
    """A frozenset's elements in canonical order."""


def _pickle_canonical(obj: Any) -> Any:
    kind = type(obj)
    if kind in _PICKLE_ATOMS:
        return obj
    if kind is tuple:
        return tuple([_pickle_canonical(item) for item in obj])
    if kind is list:
        return [_pickle_canonical(item) for item in obj]
    if kind is dict:
        pairs = [(_pickle_canonical(key), _pickle_canonical(value)) for key, value in obj.items()]
        return dict(_sorted_by_key(pairs))
    if kind is set or kind is frozenset:
        items = [item for item, _ in _sorted_by_key([(_pickle_canonical(i), None) for i in obj])]
        return (_SortedSet if kind is set else _SortedFrozenset)(items)
    return obj


# Comparing values orders str, int and bytes totally; anything else (mixed types, floats with
# NaN, frozensets ordered by inclusion) is ordered by its pickle, which is total and stable.
_VALUE_ORDERED = frozenset({str, int, bytes})


def _sorted_by_key(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    kinds = {type(key) for key, _ in pairs}
    if len(kinds) <= 1 and kinds <= _VALUE_ORDERED:
        return sorted(pairs, key=lambda pair: pair[0])
    return sorted(pairs, key=lambda pair: pickle.dumps(pair[0], _PICKLE_PROTOCOL))


# Buffers this large (an array's data) are hashed apart from the pickle, never copied into it.
_HASHED_APART = 64 * 1024


Dumped = tuple[bytes, list[memoryview]]
"""A pickle and the buffers it refers to out of band, in order."""


def _array_in_key(*parts: Any) -> Any:
    """Names an array's canonical form in keys (never called: keys are not unpickled)."""
    raise NotImplementedError


class _KeyPickler(pickle.Pickler):
    """The pickler of keys: an array is keyed by its type, dtype, shape, strides and the
    BLAKE3 digest of its data (its bytes, when small), so equal arrays are one key whatever
    their writeable flag or buffer (pickle tells read-only buffers apart); a dict or set
    subclass by its items in canonical order, as a plain one is. Called only for objects
    that are not exact builtin atoms or containers: plain calls never pay for it."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind.__module__ == "numpy" and hasattr(obj, "__array_interface__"):
            return _array_reduced(obj)
        if isinstance(obj, dict | set | frozenset):
            return _subclass_reduced(obj)
        return NotImplemented


def _subclass_reduced(obj: Any) -> Any:
    """A dict or set subclass's reduce value with its items in canonical order (a plain
    dict or set is put in that order by _pickle_canonical; a subclass pickles through its
    reduce value, whose items come in insertion or hash order)."""
    try:
        made, arguments, *rest = obj.__reduce_ex__(_PICKLE_PROTOCOL)
    except Exception:
        return NotImplemented  # pickle's own error, worded by pickle
    if isinstance(obj, dict):
        items = [(_pickle_canonical(k), _pickle_canonical(v)) for k, v in obj.items()]
        rest += [None] * (3 - len(rest))
        rest[2] = iter(_sorted_by_key(items))  # the dict items pickle sets
    else:  # a set subclass's elements are its one argument, a list
        elements = [(_pickle_canonical(item), None) for item in obj]
        arguments = ([item for item, _ in _sorted_by_key(elements)], *arguments[1:])
    if rest and rest[0] is not None:
        rest[0] = _pickle_canonical(rest[0])
    return (made, _pickle_canonical(arguments), *rest)


def _array_reduced(array: Any) -> Any:
    """The canonical reduce value of a numpy array in a key (see _KeyPickler); NotImplemented
    (pickled as usual) for arrays of Python objects, whose bytes would be addresses."""
    if array.dtype.hasobject:
        return NotImplemented
    try:
        view = memoryview(array)
        if not view.c_contiguous:
            view = memoryview(array.tobytes(order="A" if view.f_contiguous else "C"))
        data = view.cast("B")
    except (TypeError, ValueError, BufferError):  # a dtype the buffer protocol lacks
        data = memoryview(array.tobytes())
    content = blake3(data).digest() if data.nbytes >= _HASHED_APART else bytes(data)
    return _array_in_key, (type(array), array.dtype, array.shape, array.strides, content)


class _StructuralPickler:
    """A pickler in fast mode, which keeps no memo: its output depends on the structure and
    values alone. With a memo, one object passed twice pickles unlike two equal copies.

    Picklers are reused: creating one costs more than pickling a small call (1.15 vs 0.3
    us). Idle ones wait in a list, whose pop and append are atomic, so taking one needs no
    lock (a dump costs 0.3 us against 0.6 behind a lock). A thread, or an argument's
    __reduce__ calling a cached function, that finds none idle makes one.
    """

    def __init__(self) -> None:
        self._idle: list[tuple[pickle.Pickler, io.BytesIO, OutOfBand]] = []

    def discard(self) -> None:
        """Start new picklers after one that pickled a frozenset.

        CPython's fast mode counts a frozenset into its nesting depth and never out again, so
        the count drifts until the pickler fails (KeyError).
        """
        self._idle.clear()

    def dumps(self, obj: Any) -> Dumped:
        try:
            pickler, buffer, collector = self._idle.pop()
        except IndexError:
            buffer, collector = io.BytesIO(), OutOfBand(_HASHED_APART)
            pickler = _KeyPickler(buffer, _PICKLE_PROTOCOL, buffer_callback=collector)
            pickler.fast = True
        pickler.dump(obj)  # a pickler whose dump failed is unusable: it is not kept
        data = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        buffers = collector.taken()
        self._idle.append((pickler, buffer, collector))
        return data, buffers


_structural = _StructuralPickler()


def _structural_pickle(obj: Any) -> Dumped:
    try:
        return _structural.dumps(obj)
    except (ValueError, KeyError):
        # Fast mode refuses cycles (ValueError), and loses count within one dump of some 50
        # frozensets (KeyError, see discard). The memo pickle writes both exactly.
        return _pickled(_KeyPickler, obj, fast=False)


def _pickled(pickler_type: type[_KeyPickler], obj: Any, *, fast: bool) -> Dumped:
    """``obj`` pickled by a new ``pickler_type``, in fast mode (no memo) or not."""
    buffer, collector = io.BytesIO(), OutOfBand(_HASHED_APART)
    pickler = pickler_type(buffer, _PICKLE_PROTOCOL, buffer_callback=collector)
    pickler.fast = fast
    pickler.dump(obj)
    return buffer.getvalue(), collector.buffers


class _ObjectsCanonicalPickler(_KeyPickler):
    """Pickles objects by their reduce values made canonical too: an object holding a set
    (a pydantic model's fields set, a dataclass's frozenset field) pickles alike in every
    process, whatever PYTHONHASHSEED. Only for calls that hold a dict or set somewhere."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _NAMED_BY_PICKLE):
            return NotImplemented
        keyed = super().reducer_override(obj)
        if keyed is not NotImplemented:
            return keyed
        try:
            reduced = obj.__reduce_ex__(_PICKLE_PROTOCOL)
        except Exception:
            return NotImplemented  # pickle's own error, worded by pickle
        if not isinstance(reduced, tuple) or len(reduced) < 2:
            return NotImplemented
        made, arguments, *rest = reduced
        if rest and rest[0] is not None:  # the state
            rest[0] = _pickle_canonical(rest[0])
        return (made, _pickle_canonical(arguments), *rest)


# Pickled by name (or already canonical): their reduce values need no reordering.
_NAMED_BY_PICKLE = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.ModuleType,
    _SortedSet,
    _SortedFrozenset,
)


def _canonical_pickle(obj: Any) -> Dumped:
    try:
        return _pickled(_ObjectsCanonicalPickler, obj, fast=True)
    except (ValueError, KeyError):  # as in _structural_pickle: cycles, fast mode's count
        return _pickled(_ObjectsCanonicalPickler, obj, fast=False)


def _with_buffer_digests(dumped: Dumped) -> bytes:
    """The pickle, followed by the length and BLAKE3 digest of each out-of-band buffer: one
    pass over an array's data, at memory speed, and no copy of it."""
    data, buffers = dumped
    if not buffers:
        return data
    digests = [len(view).to_bytes(8, "big") + blake3(view).digest() for view in buffers]
    return data + b"".join(digests)


class SerialiseBin(_CanonicalSerialise):
    """pickle: represents any picklable argument. The default.

    ``arg_string`` is a short, readable description of the call (not the pickle itself).
    """

    def _dump(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        call = (args, tuple(kwargs.items()))
        dumped = _structural_pickle(call)
        # Only dicts and sets need reordering, and pickling an exact dict, set or frozenset
        # always writes its opcode byte. Without those bytes the plain pickle is canonical;
        # with them (or a data byte that looks alike) take the slower canonical walk. An
        # array's data is out of band, so its bytes never send it there.
        data = dumped[0]
        if _UNORDERED.search(data) is None:
            return _with_buffer_digests(dumped)
        if _FROZENSET in data:
            _structural.discard()
        # The canonical form holds no frozenset: they become _SortedFrozenset tuples.
        return _with_buffer_digests(_canonical_pickle(_pickle_canonical(call)))


# --- JSON ------------------------------------------------------------------------------------

_JSON_FORMAT = "JSON"


def _json_ready(obj: Any, kinds: list[str]) -> Any:
    """``obj`` as plain JSON data; ``kinds`` gets one letter per array, in document order.

    JSON has one array type, so the letters (l list, t tuple, s set, f frozenset) go into the
    hash beside the text: ``[1, 2]`` and ``(1, 2)`` read alike but are different arguments.
    """
    kind = type(obj)
    if kind is str or kind is int or kind is float or kind is bool or obj is None:
        return obj
    if kind is list or kind is tuple:
        kinds.append("l" if kind is list else "t")
        return [_json_ready(item, kinds) for item in obj]
    if kind is dict:
        for key in obj:
            if type(key) is not str:
                raise _Unrepresentable(key, "a JSON object key")
        return {key: _json_ready(obj[key], kinds) for key in sorted(obj)}
    if kind is set or kind is frozenset:
        kinds.append("s" if kind is set else "f")
        elements = []
        for item in obj:
            item_kinds: list[str] = []
            ready = _json_ready(item, item_kinds)
            elements.append((_json_text(ready), "".join(item_kinds), ready))
        elements.sort(key=lambda element: element[:2])
        kinds.extend(item_kinds for _, item_kinds, _ in elements)
        return [ready for _, _, ready in elements]
    raise _Unrepresentable(obj, _JSON_FORMAT)


def _json_text(ready: Any) -> str:
    return json.dumps(ready, ensure_ascii=False, separators=(",", ":"))


class SerialiseJson(_CanonicalSerialise):
    """JSON: ``arg_string`` is readable JSON, so the catalogue shows what each entry was for.

    Represents str, int, float, bool, None, and lists, tuples, sets and dicts with str keys
    of those; anything else raises TypeError.
    """

    def _dump(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        kinds: list[str] = []
        text = _json_text({"args": _json_ready(args, kinds), "kwargs": _json_ready(kwargs, kinds)})
        # JSON text holds no raw newline, so the kinds after it cannot be mistaken for text.
        return (text + "\n" + "".join(kinds)).encode("utf-8", "surrogatepass")

    _describes_its_dump = True

    def _arg_string(self, args: tuple[Any, ...], kwargs: dict[str, Any], data: bytes) -> str:
        return data.decode("utf-8", "surrogatepass").rsplit("\n", 1)[0]


# --- msgpack ---------------------------------------------------------------------------------

_MSGPACK_FORMAT = "msgpack"
_MSGPACK_ATOMS = frozenset({int, float, str, bytes, bool, type(None)})
_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET = 1, 2, 3


def _packb(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=True)
    return data


def _msgpack_ready(obj: Any) -> Any:
    kind = type(obj)
    if kind in _MSGPACK_ATOMS:
        return obj
    if kind is list:
        return [_msgpack_ready(item) for item in obj]
    if kind is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _packb([_msgpack_ready(item) for item in obj]))
    if kind is dict:
        pairs = [(_msgpack_ready(key), _msgpack_ready(value)) for key, value in obj.items()]
        return dict(sorted(pairs, key=lambda pair: _packb(pair[0])))
    if kind is set or kind is frozenset:
        code = _EXT_SET if kind is set else _EXT_FROZENSET
        return msgpack.ExtType(code, _packb(sorted(_packb(_msgpack_ready(i)) for i in obj)))
    raise _Unrepresentable(obj, _MSGPACK_FORMAT)


class SerialiseMsgpack(_CanonicalSerialise):
    """msgpack: compact and fast for plain data (str, bytes, int within 64 bits, float, bool,
    None, and lists, tuples, sets and dicts of those); anything else raises TypeError.
    """

    def _dump(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return _packb([_msgpack_ready(args), _msgpack_ready(kwargs)])


# --- descriptions ----------------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """A bounded repr that never builds the full repr of a large bytes argument, or of an
    array or data frame: those are described by type, shape, dtype and a short digest."""

    def repr_instance(self, obj: Any, level: int) -> str:
        shaped = _shaped(obj)
        if shaped is not None:
            return shaped
        # Containers of other kinds are described item by item, as reprlib describes the
        # builtin ones: their own repr would repr a data frame inside them in full.
        kind = type(obj).__name__
        if level <= 0:
            return f"{kind}(...)"
        fields = _fields_of(obj)
        if fields is not None:
            shown = [f"{name}={self.repr1(value, level - 1)}" for name, value in fields]
            return f"{kind}({', '.join(shown)})"
        if isinstance(obj, dict):
            return f"{kind}({self.repr_dict(obj, level)})"
        if isinstance(obj, list | tuple | set | frozenset):
            return f"{kind}({self.repr_list(list(obj), level)})"
        return super().repr_instance(obj, level)

    def repr_bytes(self, obj: bytes, level: int) -> str:
        if len(obj) <= self.maxstring:
            return repr(obj)
        return f"<{len(obj)} bytes>"

    def repr_bytearray(self, obj: bytearray, level: int) -> str:
        return f"<bytearray of {len(obj)} bytes>"


def _fields_of(obj: Any) -> list[tuple[str, Any]] | None:
    """A dataclass's or named tuple's fields and values, None for anything else."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(field.name, getattr(obj, field.name)) for field in dataclasses.fields(obj)]
    names = getattr(type(obj), "_fields", None)
    if isinstance(obj, tuple) and isinstance(names, tuple):
        return list(zip(names, obj, strict=False))
    return None


def _shaped(obj: Any) -> str | None:
    """``<ndarray 1000x3 float64 #1f2e3d4c>``, ``<DataFrame 1000000x6>``: an array-like
    (its class has a ``shape``) described without its repr, which costs as much as the data
    is large, and may change the object (a DataFrame's repr fills caches of its own, which
    its pickle, hence its key, then holds). None for anything else."""
    if not hasattr(type(obj), "shape"):
        return None
    try:
        shape = obj.shape
        # numpy's only: reading a pandas extension array's dtype fills a cache inside it,
        # which its pickle, hence its key, then holds.
        dtype = getattr(obj, "dtype", None) if type(obj).__module__ == "numpy" else None
    except Exception:  # a property of its own failing: described as any other object
        return None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) for n in shape):
        return None
    parts = [type(obj).__name__, "x".join(map(str, shape)) or "scalar"]
    if dtype is not None:
        parts.append(str(dtype))
    digest = _buffer_digest(obj)
    if digest is not None:
        parts.append(digest)
    return f"<{' '.join(parts)}>"


def _buffer_digest(obj: Any) -> str | None:
    """A short digest of an object's data, if it is one C-contiguous buffer (an array)."""
    try:
        with memoryview(obj) as view:
            return f"#{xxh3_64_hexdigest(view.cast('B'))[:8]}"
    except (TypeError, ValueError):  # no buffer, or not C-contiguous
        return None


_short_repr = _ShortRepr()
_short_repr.maxstring = 80
_short_repr.maxother = 80


# Performance over uniformity: every miss on disk describes its call, and reprlib costs about
# a microsecond a value; these types' own repr is short and already what reprlib would give.
_PLAIN_REPR = frozenset([int, float, bool, type(None)])


def _describe_value(value: Any) -> str:
    kind = type(value)
    if (
        kind in _PLAIN_REPR
        or (kind is str and len(value) <= _short_repr.maxstring)
        or (
            kind is tuple
            and len(value) <= _short_repr.maxtuple
            and all(type(item) in _PLAIN_REPR for item in value)
        )
    ):
        text = repr(value)
        # reprlib cuts ints longer than maxlong, strings longer than maxstring.
        if len(text) <= (_short_repr.maxstring if kind is str else _short_repr.maxlong):
            return text
    return _short_repr.repr(value)


def describe_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short, human-readable form of a call's arguments: ``1, 'a', flag=True``."""
    parts = [_describe_value(value) for value in args]
    parts += [f"{name}={_describe_value(value)}" for name, value in kwargs.items()]
    return ", ".join(parts)


SERIALISERS: dict[str, type[Serialise]] = {
    "bin": SerialiseBin,
    "json": SerialiseJson,
    "msgpack": SerialiseMsgpack,
}
