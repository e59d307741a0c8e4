"""Property tests: for random argument structures and each serialiser, equivalent calls share
one key, and different calls never do."""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from my_cache import Serialise, SerialiseBin, SerialiseJson, SerialiseMsgpack
from my_cache._storages._diskcache_table import key_of, stored_key

finite_floats = st.floats(allow_nan=False)  # NaN is unequal to itself: no "equivalent" call
text = st.text(max_size=8)


def values(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> Any:
    hashable = st.recursive(scalars, lambda inner: st.tuples(inner, inner), max_leaves=4)
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(keys, inner, max_size=4),
            st.sets(hashable, max_size=4),
            st.frozensets(hashable, max_size=4),
        ),
        max_leaves=12,
    )


JSON_VALUES = values(st.none() | st.booleans() | st.integers() | finite_floats | text, keys=text)
MSGPACK_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | finite_floats
    | text
    | st.binary(max_size=8)
)
MSGPACK_VALUES = values(MSGPACK_SCALARS, keys=MSGPACK_SCALARS)
PICKLE_VALUES = values(MSGPACK_SCALARS | st.complex_numbers(allow_nan=False), keys=MSGPACK_SCALARS)

CASES: list[tuple[Serialise, Any]] = [
    (SerialiseBin(), PICKLE_VALUES),
    (SerialiseJson(), JSON_VALUES),
    (SerialiseMsgpack(), MSGPACK_VALUES),
]


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down: what makes two calls equivalent."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)  # -0.0 is not 0.0
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(ka, kb) and same(va, vb) for kb, vb in b.items()) for ka, va in a.items()
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return bool(a == b)


def rebuilt(value: Any) -> Any:
    """An equivalent copy made of new objects, with dicts and sets built in reverse order."""
    if isinstance(value, list | tuple):
        return type(value)(rebuilt(item) for item in value)
    if isinstance(value, dict):
        return {rebuilt(k): rebuilt(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, set | frozenset):
        return type(value)(rebuilt(item) for item in reversed(list(value)))
    if isinstance(value, str):
        return "".join(list(value))  # a new str object where CPython allows
    if isinstance(value, bytes):
        return bytes(bytearray(value))
    return value


def digest(serialiser: Serialise, *args: Any, **kwargs: Any) -> str:
    return serialiser.encode(*args, **kwargs)[1]


def check_equivalent(serialiser: Serialise, value: Any) -> None:
    shared = [value, value]  # one object twice: must key like two equal copies
    assert digest(serialiser, value, flag=shared) == digest(
        serialiser, rebuilt(value), flag=[rebuilt(value), rebuilt(value)]
    )


def check_distinct(serialiser: Serialise, a: Any, b: Any) -> None:
    assert (digest(serialiser, a) == digest(serialiser, b)) == same(a, b)
    assert (digest(serialiser, x=a) == digest(serialiser, x=b)) == same(a, b)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_equivalent_calls_share_one_key(data: st.DataObject) -> None:
    for serialiser, strategy in CASES:
        check_equivalent(serialiser, data.draw(strategy))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_different_calls_never_share_a_key(data: st.DataObject) -> None:
    for serialiser, strategy in CASES:
        first = data.draw(strategy)
        # Half the time a small change of the first value, which random pairs rarely give.
        second = data.draw(st.one_of(strategy, st.just(rebuilt(first)), mutations(first)))
        check_distinct(serialiser, first, second)


def mutations(value: Any) -> st.SearchStrategy[Any]:
    """Values one step away from ``value``: another type or a neighbouring number."""
    if isinstance(value, bool):
        return st.just(int(value))
    if isinstance(value, int):
        return st.sampled_from([float(value), value + 1]) if abs(value) < 2**53 else st.just(0)
    if isinstance(value, float) and math.isfinite(value):
        return st.sampled_from([-value, value + 1.0])
    if isinstance(value, list):
        return st.just(tuple(value))
    if isinstance(value, tuple):
        return st.just(list(value))
    if isinstance(value, set):
        return st.just(frozenset(value))
    return st.just(value)


HEX = "0123456789abcdef"
# Keys of the stored shape and their near misses: upper case, whitespace, a wrong separator.
KEY_CHARACTERS = st.sampled_from([*HEX, *HEX.upper(), " ", "\t", ":", "-", "g", "é"])


def key_like(lengths: tuple[int, ...]) -> st.SearchStrategy[str]:
    parts = [st.text(KEY_CHARACTERS, min_size=n, max_size=n) for n in lengths]
    return st.tuples(*parts).map(":".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(key_like((16, 12, 32)), key_like((16, 12, 31)), st.text(max_size=70)))
def test_every_key_is_stored_as_a_form_of_its_own(key: str) -> None:
    # Distinct keys never share a row: each stored form gives back its own key.
    stored = stored_key(key)
    assert key_of(stored) == key
    if re.fullmatch(r"[0-9a-f]{16}:[0-9a-f]{12}:[0-9a-f]{32}", key):
        assert isinstance(stored, bytes) and len(stored) == 31
