"""IN_MEMORY with SerialiseBin keys plain calls with marshal instead of the serialiser: it must
make exactly the same hits (see my_cache._keys.local_keys)."""

from __future__ import annotations

import array
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from my_cache import CacheStor, SerialiseBin, TypeStorage
from tests.test_properties import PICKLE_VALUES, mutations, rebuilt, same


@pytest.fixture
def memory() -> Iterator[CacheStor]:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, serialiser=SerialiseBin)
    yield stor
    stor.close()


def counted(stor: CacheStor, **options: Any) -> tuple[Callable[..., Any], list[Any]]:
    """A cached function of (a, b=None) returning its arguments, and the list of its runs."""
    runs: list[Any] = []

    @stor.cache(folder="cache/keys", **options)
    def echo(a: Any, b: Any = None) -> Any:
        runs.append((a, b))
        return (a, b)

    return echo, runs


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (1, 1.0),
        (1, True),
        (0.0, -0.0),
        ("1", b"1"),
        (b"xyz", bytearray(b"xyz")),  # bytes that match no code of the quick check
        (b"wxyz", array.array("b", b"wxyz")),
        ((1, 2), [1, 2]),
        ((1, (2, 3)), (1, (2.0, 3))),
        ({1, 2}, frozenset({1, 2})),
        ("s" * 300, "s" * 299 + "c"),  # too long for a marshal key: the serialiser keys it
    ],
)
def test_values_that_differ_in_type_or_value_are_different_entries(
    memory: CacheStor, first: Any, second: Any
) -> None:
    echo, runs = counted(memory)
    assert echo(first) == (first, None)
    assert echo(second) == (second, None)
    assert len(runs) == 2
    assert echo(first) == (first, None) and echo(second) == (second, None)
    assert len(runs) == 2


def test_a_value_the_serialiser_refuses_is_refused_whatever_the_key(memory: CacheStor) -> None:
    echo, runs = counted(memory)
    with pytest.raises(TypeError, match=r"echo\(\).*'a' \(memoryview\)"):
        echo(memoryview(b"abc"))
    assert runs == []


def test_equal_dicts_and_sets_built_in_other_orders_are_one_entry(memory: CacheStor) -> None:
    echo, runs = counted(memory)
    echo(("x", {"a": 1, "b": {2, 3}}))
    echo(("x", {"b": {3, 2}, "a": 1}))
    assert len(runs) == 1


@pytest.mark.parametrize(
    "value",
    ["class", "{<>}", 115, 99, 123, 60, 62, ("s", ["c", 123]), "é" * 200, 2**80, 1j],
)
def test_values_holding_marshal_type_codes_still_hit(memory: CacheStor, value: Any) -> None:
    echo, runs = counted(memory)
    echo(value)
    echo(rebuilt(value))
    assert runs == [(value, None)]


def test_positional_keyword_and_default_forms_are_one_entry(memory: CacheStor) -> None:
    echo, runs = counted(memory)
    echo(1)
    echo(1, None)
    echo(a=1)
    echo(b=None, a=1)
    assert len(runs) == 1


def test_ignore_and_version_still_shape_the_key(memory: CacheStor) -> None:
    runs: list[int] = []

    @memory.cache(folder="cache/keys", ignore=["verbose"])
    def double(x: int, verbose: bool = False) -> int:
        runs.append(x)
        return 2 * x

    assert double(2) == double(2, True) == double(x=2, verbose=False) == 4
    assert runs == [2]
    assert double.invalidate(2, verbose=True) is True
    assert double(2) == 4 and runs == [2, 2]

    first, first_runs = counted(memory, version=1)
    second, second_runs = counted(memory, version=2)
    first(5)
    second(5)
    assert len(first_runs) == len(second_runs) == 1


def test_a_recursive_list_falls_back_to_the_serialiser(memory: CacheStor) -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    echo, runs = counted(memory)
    echo(looped)
    echo(looped)
    assert len(runs) == 1


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_calls_hit_exactly_when_equivalent(data: st.DataObject) -> None:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, serialiser=SerialiseBin)
    echo, runs = counted(stor)
    first = data.draw(PICKLE_VALUES)
    second = data.draw(st.one_of(PICKLE_VALUES, st.just(rebuilt(first)), mutations(first)))
    echo(first, [first, first])  # one object twice keys like two equal copies
    echo(rebuilt(first), b=[rebuilt(first), rebuilt(first)])
    assert len(runs) == 1
    echo(first)
    echo(second)
    assert len(runs) == (2 if same(first, second) else 3)


def test_debug_events_show_a_short_hex_key(memory: CacheStor) -> None:
    memory.is_debug_log = True
    echo, _ = counted(memory)
    with capture_logs() as events:
        echo("a:b")
        echo("a:b")
    keys = {event["key"] for event in events}
    assert len(keys) == 1
    assert re.fullmatch(r"[0-9a-f]{12}", keys.pop())
