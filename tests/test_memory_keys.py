"""With SerialiseBin, plain calls are keyed by marshal instead of the serialiser, in IN_MEMORY
(its bytes) and IN_DISK (their hash): they must make exactly the same hits (see
my_cache._keys.marshal_keys)."""

from __future__ import annotations

import array
import itertools
import marshal
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from my_cache import CacheStor, SerialiseBin, TypeStorage
from tests.test_properties import PICKLE_VALUES, mutations, rebuilt, same

STORAGES = [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK]
_folders = itertools.count()


@pytest.fixture(params=STORAGES, ids=lambda storage: storage.name)
def memory(request: pytest.FixtureRequest) -> Iterator[CacheStor]:
    stor = CacheStor(type_storage=request.param, serialiser=SerialiseBin)
    yield stor
    stor.close()


def counted(stor: CacheStor, **options: Any) -> tuple[Callable[..., Any], list[Any]]:
    """A cached function of (a, b=None) returning its arguments, and the list of its runs,
    in a folder of its own (in the test's own directory)."""
    runs: list[Any] = []

    @stor.cache(folder=f"cache/keys-{next(_folders)}", **options)
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


@pytest.mark.parametrize("storage", STORAGES, ids=lambda storage: storage.name)
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_calls_hit_exactly_when_equivalent(storage: TypeStorage, data: st.DataObject) -> None:
    stor = CacheStor(type_storage=storage, serialiser=SerialiseBin)
    echo, runs = counted(stor)
    first = data.draw(PICKLE_VALUES)
    second = data.draw(st.one_of(PICKLE_VALUES, st.just(rebuilt(first)), mutations(first)))
    echo(first, [first, first])  # one object twice keys like two equal copies
    echo(rebuilt(first), b=[rebuilt(first), rebuilt(first)])
    assert len(runs) == 1
    echo(first)
    echo(second)
    assert len(runs) == (2 if same(first, second) else 3)
    stor.close()


def test_debug_events_show_a_short_hex_key(memory: CacheStor) -> None:
    memory.is_debug_log = True
    echo, _ = counted(memory)
    with capture_logs() as events:
        echo("a:b")
        echo("a:b")
    keys = {event["key"] for event in events}
    assert len(keys) == 1
    assert re.fullmatch(r"[0-9a-f]{12}", keys.pop())


def test_marshal_bytes_of_plain_values_are_the_same_on_every_python() -> None:
    """Disk and Redis keys hash these bytes: were a Python to write them otherwise, every
    stored plain call would miss there. Fixed here, so that each Python the package claims
    is held to them."""
    call = (None, True, False, -1, 2**40, 1.5, -0.0, 2j, "aé\udc80", b"\x00s", (1, ["x"]))
    assert marshal.dumps(call, 2).hex() == (
        "280b0000004e544669ffffffff6c030000000000000000046700000000"
        "0000f83f6700000000000000807900000000000000000000000000000040"
        "750600000061c3a9edb28073020000000073280200000069010000005b01"
        "000000750100000078"
    )


def test_disk_keys_of_plain_calls_hit_in_another_process(tmp_path: Any) -> None:
    script = tmp_path / "plain.py"
    script.write_text(
        "import sys\n"
        "from my_cache import CacheStor, TypeStorage\n"
        "stor = CacheStor(type_storage=TypeStorage.IN_DISK)\n"
        "@stor.cache(folder=sys.argv[1])\n"
        "def echo(a, b=None):\n"
        "    print('ran', flush=True)\n"
        "    return (a, b)\n"
        "print(echo(1, ('x', 2.5)), echo(a=1, b=('x', 2.5)), echo(-0.0))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, str(script), str(tmp_path / "store")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0].count("ran") == 2
    assert runs[1] == "(1, ('x', 2.5)) (1, ('x', 2.5)) (-0.0, None)\n"


def test_parameters_reordered_under_a_pinned_version_never_take_another_calls_entry(
    memory: CacheStor,
) -> None:
    def define(parameters: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {"__name__": "reordered"}  # one name for both
        exec(f"def pair({parameters}):\n    return ('a', a, 'b', b)\n", namespace)
        return memory.cache(folder="cache/reordered", version="1")(namespace["pair"])

    before = define("a, b")
    assert before(1, 2) == ("a", 1, "b", 2) and before(2, 1) == ("a", 2, "b", 1)
    after = define("b, a")
    assert after(a=1, b=2) == ("a", 1, "b", 2)
    assert after(2, 1) == ("a", 1, "b", 2)
    assert after(1, 2) == ("a", 2, "b", 1)
    # Positional-only, and values only the pickle keys (a set): the same.
    before = define("a, b, /")
    assert before({1}, {2}) == ("a", {1}, "b", {2})
    after = define("b, a, /")
    assert after({1}, {2}) == ("a", {2}, "b", {1})
