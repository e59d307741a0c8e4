"""Serialisers: equivalent arguments hash alike everywhere; different ones never do."""

from __future__ import annotations

import datetime
import json
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from my_cache import CacheStor, Serialise, SerialiseBin, SerialiseJson, SerialiseMsgpack
from my_cache.serialisers import _short_repr, describe_call

ALL = [SerialiseBin, SerialiseJson, SerialiseMsgpack]


@pytest.fixture(params=ALL, ids=lambda cls: cls.__name__)
def serialiser(request: pytest.FixtureRequest) -> Serialise:
    instance: Serialise = request.param()
    return instance


def digest(serialiser: Serialise, *args: Any, **kwargs: Any) -> str:
    return serialiser.encode(*args, **kwargs)[1]


def test_keyword_order_does_not_matter(serialiser: Serialise) -> None:
    assert digest(serialiser, a=1, b="x", c=[1, 2]) == digest(serialiser, c=[1, 2], b="x", a=1)


def test_dict_insertion_order_does_not_matter(serialiser: Serialise) -> None:
    forward = {"alpha": 1, "beta": [1, 2], "gamma": {"x": 1, "y": 2}}
    backward = {"gamma": {"y": 2, "x": 1}, "beta": [1, 2], "alpha": 1}
    assert digest(serialiser, forward) == digest(serialiser, backward)


def test_set_construction_order_does_not_matter(serialiser: Serialise) -> None:
    words = [f"word{i}" for i in range(50)]
    assert digest(serialiser, set(words), frozenset(words)) == digest(
        serialiser, set(reversed(words)), frozenset(reversed(words))
    )


DIFFERENT_PAIRS = [
    (1, 1.0),
    (1, True),
    (0, False),
    (0, None),
    ("1", 1),
    ("", None),
    ([1, 2], (1, 2)),
    ([1, 2], [2, 1]),
    ({1, 2}, [1, 2]),
    ({1, 2}, frozenset({1, 2})),
    ({"a": 1}, {"a": 2}),
    ({"a": 1}, {"b": 1}),
    ([[1], 2], [1, [2]]),
    ([(1, 2)], ([1, 2],)),
    ({(1, 2)}, {(1,), (2,)}),
    ("a,b", ["a", "b"]),
    (-0.0, 0.0),
]


@pytest.mark.parametrize(("first", "second"), DIFFERENT_PAIRS, ids=repr)
def test_different_arguments_give_different_hashes(
    serialiser: Serialise, first: Any, second: Any
) -> None:
    assert digest(serialiser, first) != digest(serialiser, second)
    assert digest(serialiser, x=first) != digest(serialiser, x=second)


def test_positional_and_keyword_are_different(serialiser: Serialise) -> None:
    assert digest(serialiser, 1) != digest(serialiser, a=1)
    assert digest(serialiser, 1, 2) != digest(serialiser, (1, 2))


def test_bytes_and_str_are_different_where_bytes_are_representable() -> None:
    for serialiser in (SerialiseBin(), SerialiseMsgpack()):
        assert digest(serialiser, "a") != digest(serialiser, b"a")


def test_hashes_do_not_depend_on_the_process_or_its_hash_seed(run_python: Any) -> None:
    program = """
        from my_cache import SerialiseBin, SerialiseJson, SerialiseMsgpack
        words = {f"w{i}" for i in range(40)}
        value = {"set": words, "frozen": frozenset(words), "dict": {w: len(w) for w in words}}
        for cls in (SerialiseBin, SerialiseJson, SerialiseMsgpack):
            print(cls().encode(value, flag=True)[1])
    """
    outputs = {
        run_python(program, env={"PYTHONHASHSEED": seed}).stdout for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1
    assert len(outputs.pop().split()) == 3


def test_json_arg_string_is_readable_json() -> None:
    arg_string, _ = SerialiseJson().encode(
        "param2", param3=True, param2=False, tags={"b", "a"}, point=(1, 2)
    )
    assert json.loads(arg_string) == {
        "args": ["param2"],
        "kwargs": {"param2": False, "param3": True, "point": [1, 2], "tags": ["a", "b"]},
    }


def test_bin_and_msgpack_arg_strings_describe_the_call_briefly() -> None:
    for serialiser in (SerialiseBin(), SerialiseMsgpack()):
        arg_string, _ = serialiser.encode(1, "a", flag=True, data=b"x" * 1_000_000)
        assert arg_string == "1, 'a', data=<1000000 bytes>, flag=True"


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def test_bin_represents_any_picklable_argument() -> None:
    serialiser = SerialiseBin()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert digest(serialiser, Point(1, 2), when) == digest(serialiser, Point(1, 2), when)
    assert digest(serialiser, Point(1, 2)) != digest(serialiser, Point(2, 1))


UNREPRESENTABLE = [
    (SerialiseBin, threading.Lock()),
    (SerialiseBin, lambda: 1),
    (SerialiseJson, object()),
    (SerialiseJson, {1: "int key"}),
    (SerialiseJson, b"bytes"),
    (SerialiseJson, Point(1, 2)),
    (SerialiseMsgpack, object()),
    (SerialiseMsgpack, 2**70),
    (SerialiseMsgpack, Point(1, 2)),
]


@pytest.mark.parametrize(("cls", "value"), UNREPRESENTABLE, ids=repr)
def test_an_unrepresentable_argument_raises_type_error_naming_serialiser_and_argument(
    cls: type[Serialise], value: Any
) -> None:
    with pytest.raises(TypeError) as raised:
        cls().encode(1, "fine", payload={"nested": [value]})
    message = str(raised.value)
    assert cls.__name__ in message
    assert "argument 'payload'" in message


def looped_list(head: int) -> list[Any]:
    looped: list[Any] = [head]
    looped.append(looped)
    return looped


def looped_dict() -> dict[str, Any]:
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = looped
    return looped


@pytest.mark.parametrize("cls", [SerialiseJson, SerialiseMsgpack])
@pytest.mark.parametrize("make", [lambda: looped_list(1), looped_dict], ids=["list", "dict"])
def test_a_recursive_argument_is_a_clear_error_not_a_hang(cls: type[Serialise], make: Any) -> None:
    with pytest.raises(TypeError, match=r"'items'.*recursive"):
        cls().encode(items=make())


def test_bin_keys_a_recursive_list_exactly_and_refuses_a_recursive_dict() -> None:
    # pickle writes a cycle as a back-reference, so the key is exact; a dict must be
    # reordered first, and that walk refuses cycles.
    serialiser = SerialiseBin()
    assert digest(serialiser, items=looped_list(1)) == digest(serialiser, items=looped_list(1))
    assert digest(serialiser, items=looped_list(1)) != digest(serialiser, items=looped_list(2))
    with pytest.raises(TypeError, match=r"'items'.*recursive"):
        serialiser.encode(items=looped_dict())


class CountingSerialise(Serialise):
    """A user's own serialiser: keys on the repr of the arguments."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
        self.calls += 1
        text = repr((args, sorted(kwargs.items())))
        return text, str(abs(hash(text)))


def test_a_users_own_serialiser_is_used_as_is() -> None:
    mine = CountingSerialise()
    stor = CacheStor(serialiser=mine)
    assert stor.serialiser is mine
    runs = 0

    @stor.cache(folder="cache/custom")
    def f(a: int, b: int = 2) -> int:
        nonlocal runs
        runs += 1
        return a + b

    assert f(1) == f(1, b=2) == 3
    assert runs == 1
    assert mine.calls >= 2


def test_a_serialiser_class_or_name_is_accepted() -> None:
    assert type(CacheStor(serialiser=SerialiseMsgpack).serialiser) is SerialiseMsgpack
    assert type(CacheStor(serialiser="json").serialiser) is SerialiseJson


def test_anything_else_as_serialiser_is_refused() -> None:
    with pytest.raises(TypeError, match="serialiser must be a Serialise"):
        CacheStor(serialiser=json)  # type: ignore[arg-type]


SET_HOLDERS = """
import dataclasses, sys
from my_cache import SerialiseBin

@dataclasses.dataclass
class Tagged:
    name: str
    tags: set[str]
    frozen: frozenset[str]

class Plain:
    def __init__(self):
        self.members = {"alpha", "beta", "gamma", "delta", "epsilon"}

words = {"one", "two", "three", "four", "five", "six"}
print(SerialiseBin().encode(Tagged("t", set(words), frozenset(words)), Plain(), {"k": words})[1])
"""


def test_objects_holding_sets_hash_alike_whatever_the_hash_seed(run_python: Any) -> None:
    # A set's iteration order follows PYTHONHASHSEED; inside an object's state too.
    hashes = {
        run_python(SET_HOLDERS, env={"PYTHONHASHSEED": seed}).stdout for seed in "1234"
    }
    assert len(hashes) == 1


PLAIN = st.one_of(st.integers(), st.floats(), st.booleans(), st.none())


@given(
    st.one_of(
        PLAIN,
        st.text(max_size=120),
        st.lists(PLAIN, max_size=8).map(tuple),
        st.lists(st.one_of(PLAIN, st.text(max_size=3)), max_size=3).map(tuple),
    )
)
def test_a_call_is_described_as_reprlib_describes_it(value: Any) -> None:
    # describe_call skips reprlib for plain values: its text must not differ.
    assert describe_call((value,), {"k": value}) == f"{_short_repr.repr(value)}, k=" + (
        _short_repr.repr(value)
    )
