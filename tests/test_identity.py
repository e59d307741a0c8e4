"""Which function is this? (issue 11) Two function objects that compute different things
never see each other's entries, in one folder, in one process or across processes.

Adversarial: every test puts two computations that could be confused into ONE folder of a
real store (memory, a diskcache folder in tmp_path, a real Redis server) and checks what a
user sees: the values, how often each function ran, the error messages.

Most programs are source text run as a module (``load``): the same text loaded again into a
fresh module with a fresh CacheStor is what the next run of a program sees (its module name,
qualnames, bytecode and captured values), without the cost of a subprocess. Placeholders in
the text make one program both sync and async: ``@CACHE(`` is ``@stor.cache(`` or
``@stor.cache_async(``, ``ASYNC def`` and ``AWAIT`` are ``async def`` / ``await`` or nothing.
Programs named by ``__main__`` (scripts, ``python -c``, ``-m``, spawn workers) and
PYTHONHASHSEED run in real subprocesses.

Tests marked ``limit`` (``xfail(strict=True)``) are the known limits docs/identity.md states: the
identity does not see them. If one starts to pass, the limit is gone: update docs/identity.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from my_cache import (
    CacheStor,
    Serialise,
    SerialiseBin,
    SerialiseJson,
    SerialiseMsgpack,
    TypeStorage,
)
from tests.conftest import PROJECT_ROOT, RunPython

KINDS = {
    "memory": TypeStorage.IN_MEMORY,
    "disk": TypeStorage.IN_DISK,
    "redis": TypeStorage.IN_REDIS,
}
MakeStor = Callable[..., CacheStor]


def limit(reason: str) -> pytest.MarkDecorator:
    """A known limit of the identity, stated in docs/identity.md: the test fails today."""
    return pytest.mark.xfail(strict=True, reason=reason)


# --- fixtures and helpers -------------------------------------------------------------------


def _stor_factory(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeStor]:
    if kind == "redis":
        monkeypatch.setenv("MYCACHE_REDIS_URL", request.getfixturevalue("redis_url"))
    made: list[CacheStor] = []

    def make(serialiser: Serialise | None = None) -> CacheStor:
        """A new CacheStor on the same storage: the next run of a program, or a second one."""
        stor = CacheStor(
            db_file=tmp_path / "catalogue.db", type_storage=KINDS[kind], serialiser=serialiser
        )
        made.append(stor)
        return stor

    yield make
    for stor in made:
        stor.close()


@pytest.fixture(params=["memory", "disk", "redis"])
def make_stor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeStor]:
    """CacheStor factory on every storage."""
    yield from _stor_factory(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["disk", "redis"])
def make_lasting_stor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeStor]:
    """CacheStor factory on the storages that outlive a run."""
    yield from _stor_factory(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def memory_stor() -> Iterator[CacheStor]:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY)
    yield stor
    stor.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["disk", "redis"])
def lasting_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """MYCACHE_* settings for subprocesses sharing one lasting storage."""
    env = {
        "MYCACHE_TYPE_STORAGE": f"in_{request.param}",
        "MYCACHE_DB_FILE": str(tmp_path / "catalogue.db"),
    }
    if request.param == "redis":
        env["MYCACHE_REDIS_URL"] = request.getfixturevalue("redis_url")
    return env


def program(source: str, mode: str = "sync") -> str:
    """``source`` with its sync/async placeholders filled in for ``mode``."""
    is_async = mode == "async"
    return (
        textwrap.dedent(source)
        .replace("ASYNC ", "async " if is_async else "")
        .replace("AWAIT ", "await " if is_async else "")
        .replace("CACHE(", "stor.cache_async(" if is_async else "stor.cache(")
    )


def load(
    monkeypatch: pytest.MonkeyPatch,
    stor: CacheStor,
    source: str,
    *,
    mode: str = "sync",
    name: str = "job",
) -> types.ModuleType:
    """Run ``source`` as a fresh module ``name`` (importable, so its objects pickle), with
    ``stor`` and an empty ``runs`` list in its namespace."""
    module = types.ModuleType(name)
    module.__dict__.update(stor=stor, runs=[], functools=functools)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(program(source, mode), f"{name}.py", "exec"), module.__dict__)
    return module


async def call(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a decorated function, sync or async, and return its value."""
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


async def one_run(
    make: MakeStor,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    mode: str,
    *calls: tuple[Any, ...],
) -> tuple[list[Any], list[Any]]:
    """One run of a program: a fresh CacheStor and module; calls ``entry``; (values, runs)."""
    stor = make()
    job = load(monkeypatch, stor, source, mode=mode)
    try:
        values = [await call(job.entry, *args) for args in calls]
    finally:
        stor.close()  # flushes cache_async's writes: the next run finds them
    return values, job.runs


def python(
    *args: str, cwd: Path, env: dict[str, str], stdin: str | None = None
) -> Any:
    """Run Python in a real subprocess; the JSON its last line prints."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def ran(completed: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a run_python program printed last."""
    return json.loads(completed.stdout.strip().splitlines()[-1])


def strict_key(value: Any) -> Any:
    """Equal exactly when two values are equal and of the same types all the way down
    (``1``, ``1.0`` and ``True`` differ, as do ``0.0`` and ``-0.0``)."""
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(strict_key(item) for item in value))
    if isinstance(value, frozenset | set):
        return (type(value).__name__, tuple(sorted(repr(strict_key(item)) for item in value)))
    return (type(value).__name__, repr(value))


# --- closures -------------------------------------------------------------------------------

ADDERS = """
def make_adder(n):
    @CACHE(folder="cache/shared")
    ASYNC def add(x):
        runs.append((n, x))
        return x + n
    return add
"""


async def test_closures_over_different_values_never_share(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), ADDERS, mode=mode)
    one, two = job.make_adder(1), job.make_adder(2)

    assert [await call(one, 10), await call(two, 10)] == [11, 12]
    assert [await call(one, 10), await call(two, 10)] == [11, 12]
    assert job.runs == [(1, 10), (2, 10)]
    assert one.cache_info().hits == two.cache_info().hits == 1


async def test_closures_over_equal_values_share_entries(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), ADDERS, mode=mode)

    assert await call(job.make_adder(1), 10) == 11
    assert await call(job.make_adder(1), 10) == 11
    assert job.runs == [(1, 10)]


CLOSURE_SCRIPT = """
import json, sys
from my_cache import CacheStor

stor = CacheStor()

def make(n):
    config = {"n": n, "names": frozenset({"alpha", "beta", "gamma", str(n)}), "pair": (n, [n])}
    @stor.cache(folder="cache/shared")
    def scaled(x):
        return x * config["n"]
    return scaled

scaled = make(int(sys.argv[1]))
print(json.dumps([scaled(10), list(scaled.cache_info())]))
"""


def test_closures_over_different_values_stay_apart_across_processes(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    # One program, run with 1, 2, 1, 2; PYTHONHASHSEED differs every time (captured sets).
    outputs = [
        ran(run_python(CLOSURE_SCRIPT, args=(n,), env={**lasting_env, "PYTHONHASHSEED": seed}))
        for n, seed in [("1", "1"), ("2", "2"), ("1", "3"), ("2", "4")]
    ]
    assert outputs == [[10, [0, 1]], [20, [0, 1]], [10, [1, 0]], [20, [1, 0]]]


LOCKED = """
import threading

def make(lock, options):
    @CACHE(folder="cache/locked", **options)
    ASYNC def guarded(x):
        with lock:
            runs.append(x)
            return x * 2
    return guarded
"""


async def test_a_captured_value_the_serialiser_cannot_represent_is_a_clear_type_error(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), LOCKED, mode=mode)
    guarded = job.make(threading.Lock(), {})  # decorating is fine: the cells may fill later

    for _ in range(2):  # the first call refuses, and so does the next
        with pytest.raises(TypeError) as refused:
            await call(guarded, 1)
        message = str(refused.value)
        assert "job:make.<locals>.guarded" in message
        assert "'lock'" in message
        assert "ignore=['lock']" in message
        assert "argument" in message  # the other remedy: pass it as an argument
    assert job.runs == []


async def test_ignore_may_name_a_captured_variable(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), LOCKED, mode=mode)
    first = job.make(threading.Lock(), {"ignore": ["lock"]})
    second = job.make(threading.Lock(), {"ignore": ["lock"]})

    assert [await call(first, 1), await call(first, 1), await call(second, 1)] == [2, 2, 2]
    assert job.runs == [1]  # the lock never changes the result: the two closures share


IGNORE_INTERPLAY = """
def make_helper(k):
    def helper(x):
        return x * k
    return helper

def make(k, helper):
    @CACHE(folder="cache/ignored", ignore=["k", "verbose"])
    ASYNC def apply(x, verbose=False):
        runs.append((k, x))
        return helper(x)
    return apply

def base(x, scale):
    runs.append((x, scale))
    return x * scale
"""


async def test_ignore_of_a_captured_name_does_not_reach_into_captured_functions(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The top level's ``k`` is ignored; the helper's own ``k`` is another variable.
    job = load(monkeypatch, make_stor(), IGNORE_INTERPLAY, mode=mode)
    two = job.make(1, job.make_helper(2))
    three = job.make(1, job.make_helper(3))

    assert [await call(two, 1), await call(three, 1, verbose=True)] == [2, 3]
    assert [await call(two, 1, verbose=True), await call(three, 1)] == [2, 3]
    assert len(job.runs) == 2


def test_an_ignored_parameter_is_not_served_to_a_decoration_that_keeps_it(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, IGNORE_INTERPLAY)
    loose = stor.cache(folder="cache/ignored", ignore=["scale"])(job.base)
    strict = stor.cache(folder="cache/ignored")(job.base)

    assert loose(1, scale=2) == 2
    assert strict(1, scale=3) == 3  # not loose's entry
    assert strict(1, scale=2) == 2
    assert loose(1, scale=5) == 2  # what ignore= asked for
    assert job.runs == [(1, 2), (1, 3), (1, 2)]


def test_ignore_of_an_unknown_name_is_an_error_naming_it(memory_stor: CacheStor) -> None:
    scale = 2

    def scaled(x: int) -> int:
        return x * scale

    with pytest.raises(ValueError, match="'nope'"):
        memory_stor.cache(folder="cache/x", ignore=["nope"])(scaled)


CAPTURES = """
import re

def make(helper):
    @CACHE(folder="cache/captures")
    ASYNC def apply(x):
        runs.append(x)
        return helper(x)
    return apply

def make_from_list(helpers):
    @CACHE(folder="cache/captures")
    ASYNC def apply(x):
        runs.append(x)
        return helpers[0](x)
    return apply

def make_by_class(cls):
    @CACHE(folder="cache/captures")
    ASYNC def apply(x):
        runs.append(x)
        return x * cls.factor
    return apply

def make_helper(k):
    def helper(x):
        return x * k
    return helper

def make_outer(inner):
    def outer(x):
        return inner(x) + 0
    return outer

def make_recursive_helper(k):
    def helper(x):
        return x * k if x < 5 else helper(x - 1)
    return helper

def multiply(k, x):
    return x * k

class Scale:
    def __init__(self, k):
        self.k = k
    def apply(self, x):
        return x * self.k

def make_with_default(k):
    def helper(x, k=k):
        return x * k
    return helper

def make_with_keyword_default(k):
    def helper(x, *, k=k):
        return x * k
    return helper

def make_class(k):
    class Factor:
        factor = k
    return Factor

class Times:
    '''A class-based wrapper, as decorators with arguments are often written.'''
    def __init__(self, function, k):
        functools.update_wrapper(self, function)
        self.function = function
        self.k = k
    def __call__(self, x):
        return self.function(x) * self.k

def identity(x):
    return x
"""

CAPTURED = [
    pytest.param("make(make_helper({k}))", id="function"),
    pytest.param("make(make_outer(make_helper({k})))", id="function-capturing-a-function"),
    pytest.param("make(make_recursive_helper({k}))", id="recursive-function"),
    pytest.param("make(functools.lru_cache(make_helper({k})))", id="lru_cache-wrapped"),
    pytest.param(
        "make(stor.cache(folder='cache/helpers')(make_helper({k})))", id="cached-function"
    ),
    pytest.param("make(functools.partial(multiply, {k}))", id="partial"),
    pytest.param("make(Scale({k}).apply)", id="bound-method"),
    pytest.param("make_from_list([make_helper({k})])", id="list-of-functions"),
    pytest.param(
        "make(make_with_default({k}))",
        id="function-with-a-default",
    ),
    pytest.param(
        "make(make_with_keyword_default({k}))",
        id="function-with-a-keyword-default",
    ),
    pytest.param(
        "make_by_class(make_class({k}))",
        id="class-made-by-a-factory",
    ),
    pytest.param(
        "make(dict([(1, {k})]).get)",
        id="builtin-bound-method",
    ),
    pytest.param(
        "make(Times(identity, {k}))",
        id="class-based-wrapper",
    ),
]


@pytest.mark.parametrize("expression", CAPTURED)
async def test_closures_capturing_different_callables_never_share(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch, expression: str
) -> None:
    job = load(monkeypatch, make_stor(), CAPTURES, mode=mode)
    two = eval(expression.format(k=2), vars(job))
    three = eval(expression.format(k=3), vars(job))

    assert [await call(two, 1), await call(three, 1)] == [2, 3]
    assert [await call(two, 1), await call(three, 1)] == [2, 3]
    assert job.runs == [1, 1]


RECURSIVE = """
def make_sum(step):
    @CACHE(folder="cache/recursive")
    ASYNC def total(n):
        runs.append((step, n))
        return 0 if n == 0 else step + AWAIT total(n - 1)
    return total
"""


async def test_recursive_closures_over_different_values_never_share(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), RECURSIVE, mode=mode)
    ones, twos = job.make_sum(1), job.make_sum(2)

    assert await call(ones, 3) == 3
    assert await call(twos, 3) == 6
    assert await call(twos, 4) == 8  # its own total(3) is a hit
    assert await call(ones, 4) == 4
    assert job.runs == [(1, 3), (1, 2), (1, 1), (1, 0), (2, 3), (2, 2), (2, 1), (2, 0), (2, 4),
                        (1, 4)]


def test_a_nonlocal_counter_is_taken_as_it_is_at_the_first_call(memory_stor: CacheStor) -> None:
    def make_counter(start: int) -> Callable[[int], int]:
        count = start

        @memory_stor.cache(folder="cache/counters")
        def numbered(x: int) -> int:
            nonlocal count
            count += 1
            return x + start

        return numbered

    assert [make_counter(1)(1), make_counter(2)(1)] == [2, 3]


def test_a_cell_filled_after_the_first_call_still_tells_closures_apart(
    memory_stor: CacheStor,
) -> None:
    def make(k: int) -> Callable[[int], int]:
        @memory_stor.cache(folder="cache/late")
        def scaled(x: int) -> int:
            return x * scale

        with contextlib.suppress(NameError):
            scaled(0)  # too early: scale is not assigned yet
        scale = k
        return scaled

    assert [make(2)(5), make(3)(5)] == [10, 15]


@limit(
    "captured values are hashed as they are at the first call; a closure whose "
    "captured dict is mutated afterwards writes results under its old identity, and a new "
    "closure over a dict equal to the old one is served them"
)
def test_a_mutated_captured_value_is_never_served_to_another_closure(
    memory_stor: CacheStor,
) -> None:
    def make(config: dict[str, int]) -> Callable[[int], int]:
        @memory_stor.cache(folder="cache/configured")
        def priced(x: int) -> int:
            return x * config["rate"]

        return priced

    config = {"rate": 2}
    first = make(config)
    assert first(1) == 2
    config["rate"] = 3
    assert first(2) == 6  # computed with rate 3 ...
    assert make({"rate": 2})(2) == 4  # ... must not be what a rate-2 closure gets


def test_a_self_containing_captured_list_is_cached_or_refused_clearly(
    memory_stor: CacheStor,
) -> None:
    looped: list[Any] = []
    looped.append(looped)  # [[...]]: nothing but itself

    @memory_stor.cache(folder="cache/looped")
    def size(x: int) -> int:
        return len(looped) + x

    try:
        assert size(1) == 2
    except TypeError as error:
        assert "looped" in str(error)


ALIKE = [1, 1.0, True, "1", (1,), [1], frozenset({1}), None, 0, False, 0.0, -0.0, "", ()]


@pytest.mark.parametrize(
    "serialiser", [SerialiseBin, SerialiseJson, SerialiseMsgpack], ids=lambda s: s.__name__
)
def test_closures_over_look_alike_values_never_share_with_any_serialiser(
    make_stor: MakeStor, serialiser: type[Serialise]
) -> None:
    stor = make_stor(serialiser=serialiser())

    def make(value: Any) -> Callable[[int], Any]:
        @stor.cache(folder="cache/alike")
        def echo(x: int) -> Any:
            return (x, value)

        return echo

    echoes = [make(value) for value in ALIKE]
    for _ in range(2):
        assert [strict_key(echo(0)) for echo in echoes] == [strict_key((0, v)) for v in ALIKE]
    assert [echo.cache_info() for echo in echoes] == [(1, 1)] * len(ALIKE)


# --- lambdas and functions that cannot be reached by name -----------------------------------


def test_two_lambdas_in_one_folder_never_share(make_stor: MakeStor) -> None:
    stor = make_stor()
    runs: list[str] = []
    increment = stor.cache(folder="cache/lambdas")(lambda x: runs.append("inc") or x + 1)
    double = stor.cache(folder="cache/lambdas")(lambda x: runs.append("dbl") or x * 2)

    assert [increment(5), double(5), increment(5), double(5)] == [6, 10, 6, 10]
    assert runs == ["inc", "dbl"]


def test_lambdas_differing_only_in_a_default_never_share(make_stor: MakeStor) -> None:
    stor = make_stor()
    adders = [stor.cache(folder="cache/lambdas")(lambda x, k=k: x + k) for k in (1, 2)]
    assert [adders[0](10), adders[1](10), adders[0](10)] == [11, 12, 11]


UNREACHABLE = """
@stor.cache(folder="cache/unreachable")
def f(x):
    runs.append("first")
    return x + 1

first = f

@stor.cache(folder="cache/unreachable")
def f(x):
    runs.append("second")
    return x + 2

second = f

def make(k):
    def inner(x):
        runs.append(k)
        return x * k
    return inner

def tripled(x):
    runs.append("tripled")
    return x * 3
"""


def test_functions_that_cannot_be_reached_by_name_never_share(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, UNREACHABLE)
    # One qualname, defined twice in one module: the first is no longer reachable.
    assert [job.first(1), job.second(1), job.first(1), job.second(1)] == [2, 3, 2, 3]
    # One code object, two closures built by hand.
    template = job.make(2)
    rebuilt = types.FunctionType(
        template.__code__, vars(job), "inner", None, (types.CellType(5),)
    )
    by_hand = [stor.cache(folder="cache/unreachable")(f) for f in (template, rebuilt)]
    assert [by_hand[0](1), by_hand[1](1), by_hand[0](1)] == [2, 5, 2]
    # A function whose qualname is made to look like another's.
    job.tripled.__qualname__ = "f"
    look_alike = stor.cache(folder="cache/unreachable")(job.tripled)
    assert [look_alike(1), job.second(1)] == [3, 3]
    assert job.runs == ["first", "second", 2, 5, "tripled"]


def test_functions_exec_d_without_a_module_never_share(make_stor: MakeStor) -> None:
    stor = make_stor()
    made = []
    for body in ("x + 1", "x + 2", "x * 3"):
        namespace: dict[str, Any] = {}
        exec(f"def f(x):\n    return {body}\n", namespace)
        made.append(stor.cache(folder="cache/exec")(namespace["f"]))
    assert [f(10) for f in made] == [11, 12, 30]
    assert [f(10) for f in made] == [11, 12, 30]
    assert [f.cache_info().hits for f in made] == [1, 1, 1]


def test_cache_clear_of_one_lambda_keeps_the_other_lambdas_entries(make_stor: MakeStor) -> None:
    stor = make_stor()
    increment = stor.cache(folder="cache/lambdas")(lambda x: x + 1)
    double = stor.cache(folder="cache/lambdas")(lambda x: x * 2)
    increment(1)
    double(1)

    increment.cache_clear()
    assert double(1) == 2
    assert double.cache_info().hits == 1


def test_cache_clear_of_one_closure_keeps_the_other_closures_entries(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), ADDERS)
    one, two = job.make_adder(1), job.make_adder(2)
    one(1)
    two(1)

    one.cache_clear()
    assert [one(1), two(1)] == [2, 3]
    assert job.runs == [(1, 1), (2, 1), (1, 1)]


# --- functions in __main__: scripts, python -c, -m, spawn workers -------------------------

SCRIPT = """
import json, os
from my_cache import CacheStor

FACTOR = {factor}
stor = CacheStor()

@stor.cache(folder=os.path.join(os.path.dirname(os.path.realpath(__file__)), "cache", "shared"))
def process(x):
    return x * FACTOR

print(json.dumps([process(7), list(process.cache_info())]))
"""

COMMAND = SCRIPT.replace("os.path.dirname(os.path.realpath(__file__))", "os.getcwd()")


def test_two_scripts_with_one_function_name_in_one_folder_never_collide(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    # Same function code, different module globals: only the script tells them apart.
    one, two = SCRIPT.format(factor=2), SCRIPT.format(factor=3)
    outputs = [ran(run_python(text, env=lasting_env)) for text in (one, two, one, two)]
    assert outputs == [[14, [0, 1]], [21, [0, 1]], [14, [1, 0]], [21, [1, 0]]]


def test_a_script_run_again_hits_from_any_directory_and_through_a_link(
    tmp_path: Path, lasting_env: dict[str, str]
) -> None:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(factor=2)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.py").symlink_to(script)

    assert python("job.py", cwd=tmp_path, env=lasting_env) == [14, [0, 1]]
    assert python("job.py", cwd=tmp_path, env=lasting_env) == [14, [1, 0]]
    assert python("../job.py", cwd=elsewhere, env=lasting_env) == [14, [1, 0]]
    assert python("link.py", cwd=elsewhere, env=lasting_env) == [14, [1, 0]]


def test_a_script_edited_in_place(tmp_path: Path, lasting_env: dict[str, str]) -> None:
    script = tmp_path / "job.py"
    original = textwrap.dedent(SCRIPT.format(factor=2))

    def run(text: str) -> Any:
        script.write_text(text)
        return python("job.py", cwd=tmp_path, env=lasting_env)

    assert run(original) == [14, [0, 1]]
    commented = original.replace("    return x * FACTOR", "    # doubled\n\n    return x * FACTOR")
    assert run(commented) == [14, [1, 0]]
    assert run(original.replace("x * FACTOR", "x * FACTOR + 1")) == [15, [0, 1]]
    assert run(original) == [14, [1, 0]]


def test_python_c_programs(tmp_path: Path, lasting_env: dict[str, str]) -> None:
    one, two = textwrap.dedent(COMMAND.format(factor=2)), textwrap.dedent(COMMAND.format(factor=3))
    outputs = [python("-c", text, cwd=tmp_path, env=lasting_env) for text in (one, two, one, two)]
    assert outputs == [[14, [0, 1]], [21, [0, 1]], [14, [1, 0]], [21, [1, 0]]]


def test_python_c_programs_with_combined_flags(tmp_path: Path) -> None:
    env = {"MYCACHE_TYPE_STORAGE": "in_disk", "MYCACHE_DB_FILE": str(tmp_path / "c.db")}
    one, two = textwrap.dedent(COMMAND.format(factor=2)), textwrap.dedent(COMMAND.format(factor=3))
    assert python("-Bc", one, cwd=tmp_path, env=env) == [14, [0, 1]]
    assert python("-Bc", two, cwd=tmp_path, env=env) == [21, [0, 1]]


@limit(
    "programs read from stdin (`python - < prog.py`, an embedded interpreter) are "
    "all named '<cwd>/<stdin>': two different ones with one function name and code collide "
    "(their text is not hashed as -c's is)"
)
def test_two_programs_read_from_stdin_never_collide(tmp_path: Path) -> None:
    env = {"MYCACHE_TYPE_STORAGE": "in_disk", "MYCACHE_DB_FILE": str(tmp_path / "c.db")}
    one, two = textwrap.dedent(COMMAND.format(factor=2)), textwrap.dedent(COMMAND.format(factor=3))
    assert python("-", cwd=tmp_path, env=env, stdin=one) == [14, [0, 1]]
    assert python("-", cwd=tmp_path, env=env, stdin=two) == [21, [0, 1]]


SPAWN = """
import json, multiprocessing, os
from my_cache import CacheStor

stor = CacheStor()

@stor.cache(folder="cache/shared")
def process(x):
    return [x * 2, os.getpid()]

def in_worker(x):
    return [process(x), list(process.cache_info())]

if __name__ == "__main__":
    mine = process(1)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        workers = [pool.apply(in_worker, (1,)), pool.apply(in_worker, (2,))]
    print(json.dumps({
        "pid": os.getpid(), "mine": mine, "later": process(2),
        "info": list(process.cache_info()), "workers": workers,
    }))
"""


def test_spawned_workers_share_entries_with_the_script(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    out = ran(run_python(SPAWN, env=lasting_env))
    (hit_in_worker, worker_info_1), (computed_in_worker, worker_info_2) = out["workers"]
    assert out["mine"] == [2, out["pid"]]
    assert hit_in_worker == out["mine"]  # the worker (__mp_main__) hit the script's entry
    assert worker_info_1 == [1, 0]
    assert computed_in_worker[0] == 4 and computed_in_worker[1] != out["pid"]
    assert worker_info_2 == [1, 1]
    assert out["later"] == computed_in_worker  # and the script hit the worker's
    assert out["info"] == [1, 1]


TOOL = """
import json
from my_cache import CacheStor

stor = CacheStor()

@stor.cache(folder="cache/shared")
def process(x):
    return x * 2

if __name__ == "__main__":
    print(json.dumps([process(4), list(process.cache_info())]))
"""


def test_python_m_module_shares_entries_with_its_import(
    tmp_path: Path, lasting_env: dict[str, str]
) -> None:
    (tmp_path / "tool.py").write_text(textwrap.dedent(TOOL))
    assert python("-m", "tool", cwd=tmp_path, env=lasting_env) == [4 * 2, [0, 1]]
    imported = (
        "import json, tool; "
        "print(json.dumps([tool.process(4), list(tool.process.cache_info())]))"
    )
    assert python("-c", imported, cwd=tmp_path, env=lasting_env) == [8, [1, 0]]


# --- look-alike names -----------------------------------------------------------------------

FUNCTION_B = """
TAG = "{tag}"

@stor.cache(folder="cache/look-alike")
def {name}(x):
    return (TAG, x)
"""

STATIC_B = """
TAG = "{tag}"

class {outer}:
    @stor.cache(folder="cache/look-alike")
    @staticmethod
    def {name}(x):
        return (TAG, x)
"""

NESTED_STATIC = """
TAG = "{tag}"

class {outer}:
    class {inner}:
        @staticmethod
        @stor.cache(folder="cache/look-alike")
        def {name}(x):
            return (TAG, x)
"""


def test_look_alike_dotted_names_never_collide(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pkg.a.b, pkg.a:b and pkg:a.b; x.y.z:f, x.y:z.f and x:y.z.f: one bytecode, one folder.
    stor = make_stor()
    made = {
        "pkg.a:b": load(monkeypatch, stor, FUNCTION_B.format(tag="1", name="b"), name="pkg.a").b,
        "pkg:a.b": load(
            monkeypatch, stor, STATIC_B.format(tag="2", outer="a", name="b"), name="pkg"
        ).a.b,
        "x.y.z:f": load(monkeypatch, stor, FUNCTION_B.format(tag="3", name="f"), name="x.y.z").f,
        "x.y:z.f": load(
            monkeypatch, stor, STATIC_B.format(tag="4", outer="z", name="f"), name="x.y"
        ).z.f,
        "x:y.z.f": load(
            monkeypatch,
            stor,
            NESTED_STATIC.format(tag="5", outer="y", inner="z", name="f"),
            name="x",
        ).y.z.f,
    }
    assert [f(0) for f in made.values()] == [(str(i), 0) for i in range(1, 6)]
    assert [f(0) for f in made.values()] == [(str(i), 0) for i in range(1, 6)]
    assert [f.cache_info() for f in made.values()] == [(1, 1)] * 5


PLUGIN = """
def make():
    @stor.cache(folder="cache/plugins")
    def transform(x):
        return x + {k}
    return transform

class Job:
    @stor.cache(folder="cache/plugins", ignore=["self"])
    def run(self, x):
        return x * {k}
"""


def test_same_named_modules_loaded_from_files_never_collide(
    make_stor: MakeStor, tmp_path: Path
) -> None:
    # Plugins: two files named plugin.py, both loaded as module "plugin"; nested functions
    # and methods of one qualname each.
    stor = make_stor()
    plugins = []
    for k in (1, 2):
        path = tmp_path / f"plugins_{k}" / "plugin.py"
        path.parent.mkdir()
        path.write_text(textwrap.dedent(PLUGIN.format(k=k)))
        spec = importlib.util.spec_from_file_location("plugin", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.stor = stor  # type: ignore[attr-defined]
        spec.loader.exec_module(module)
        plugins.append(module)

    transforms = [plugin.make() for plugin in plugins]
    jobs = [plugin.Job() for plugin in plugins]
    assert [transforms[0](10), transforms[1](10), jobs[0].run(10), jobs[1].run(10)] == [
        11, 12, 10, 20
    ]
    assert [transforms[0](10), transforms[1](10), jobs[0].run(10), jobs[1].run(10)] == [
        11, 12, 10, 20
    ]


# --- methods, static and class methods, partials, callable instances, classes -------------

METHODS = """
import threading

class Account:
    kind = "account"

    def __init__(self, rate):
        self.rate = rate

    @CACHE(folder="cache/methods")
    ASYNC def interest(self, amount):
        runs.append((self.kind, self.rate, amount))
        return amount * self.rate

    ASYNC def plain(self, amount):
        runs.append(("plain", self.rate, amount))
        return amount * self.rate

class Savings(Account):
    kind = "savings"

    @CACHE(folder="cache/methods")
    ASYNC def interest(self, amount):
        runs.append((self.kind, self.rate, amount))
        return amount * self.rate + 1

class Locked:
    def __init__(self):
        self.lock = threading.Lock()

    @CACHE(folder="cache/methods"{options})
    ASYNC def value(self, x):
        runs.append(x)
        return x
"""


async def test_methods_take_self_by_value(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), METHODS.format(options=""), mode=mode)

    assert await call(job.Account(2).interest, 10) == 20
    assert await call(job.Account(3).interest, 10) == 30
    assert await call(job.Account(2).interest, 10) == 20  # an equal instance: a hit
    assert await call(job.Savings(2).interest, 10) == 21  # same name in another class
    assert await call(job.Account.interest, job.Account(3), 10) == 30
    assert job.runs == [("account", 2, 10), ("account", 3, 10), ("savings", 2, 10)]


async def test_bound_methods_decorated_directly_keep_their_instances_apart(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, METHODS.format(options=""), mode=mode)
    decorate = stor.cache_async if mode == "async" else stor.cache
    two = decorate(folder="cache/methods")(job.Account(2).plain)
    three = decorate(folder="cache/methods")(job.Account(3).plain)

    assert [await call(two, 10), await call(three, 10)] == [20, 30]
    assert [await call(two, 10), await call(three, 10)] == [20, 30]
    assert job.runs == [("plain", 2, 10), ("plain", 3, 10)]


async def test_an_instance_the_serialiser_cannot_represent_suggests_ignoring_self(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), METHODS.format(options=""), mode=mode)
    with pytest.raises(TypeError) as refused:
        await call(job.Locked().value, 1)
    assert "job:Locked.value" in str(refused.value)
    assert "ignore=['self']" in str(refused.value)
    assert job.runs == []

    shared = load(
        monkeypatch, make_stor(), METHODS.format(options=', ignore=["self"]'), mode=mode
    )
    assert [await call(shared.Locked().value, 1), await call(shared.Locked().value, 1)] == [1, 1]
    assert shared.runs == [1]


STATIC_AND_CLASS = """
class Rates:
    base = 2

    @CACHE(folder="cache/static")
    @staticmethod
    ASYNC def above(x):
        runs.append(("above", x))
        return x + 1

    @staticmethod
    @CACHE(folder="cache/static")
    ASYNC def below(x):
        runs.append(("below", x))
        return x + 2

    @CACHE(folder="cache/class")
    @classmethod
    ASYNC def class_above(cls, x):
        runs.append(("class_above", cls.__name__, x))
        return x * cls.base

    @classmethod
    @CACHE(folder="cache/class")
    ASYNC def class_below(cls, x):
        runs.append(("class_below", cls.__name__, x))
        return x * cls.base + 100

    @CACHE(folder="cache/class")
    ASYNC def scaled(self, x):
        runs.append(("scaled", type(self).__name__, x))
        return x * self.base

class Higher(Rates):
    base = 3
"""


async def test_static_and_class_methods_above_or_below_the_decorator(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), STATIC_AND_CLASS, mode=mode)
    rates, higher = job.Rates, job.Higher

    assert [await call(rates.above, 1), await call(rates().above, 1)] == [2, 2]
    assert [await call(rates.below, 1), await call(rates().below, 1)] == [3, 3]
    assert [await call(rates.class_above, 1), await call(higher.class_above, 1)] == [2, 3]
    assert [await call(rates().class_above, 1), await call(higher().class_above, 1)] == [2, 3]
    assert [await call(rates.class_below, 1), await call(higher.class_below, 1)] == [102, 103]
    assert [await call(rates().class_below, 1), await call(higher.class_below, 1)] == [102, 103]
    # An inherited method: self's class (and so its class attribute) is part of the key.
    assert [await call(rates().scaled, 1), await call(higher().scaled, 1)] == [2, 3]
    assert [await call(rates().scaled, 1), await call(higher().scaled, 1)] == [2, 3]
    assert job.runs == [
        ("above", 1),
        ("below", 1),
        ("class_above", "Rates", 1),
        ("class_above", "Higher", 1),
        ("class_below", "Rates", 1),
        ("class_below", "Higher", 1),
        ("scaled", "Rates", 1),
        ("scaled", "Higher", 1),
    ]


PARTIALS = """
ASYNC def power(base, exponent):
    runs.append(("power", base, exponent))
    return base ** exponent

ASYNC def times(base, exponent):
    runs.append(("times", base, exponent))
    return base * exponent

square = CACHE(folder="cache/partials")(functools.partial(power, exponent=2))
cube = CACHE(folder="cache/partials")(functools.partial(power, exponent=3))
two_to = CACHE(folder="cache/partials")(functools.partial(power, 2))
three_to = CACHE(folder="cache/partials")(functools.partial(power, 3))
twice = CACHE(folder="cache/partials")(functools.partial(times, 2))
plain = CACHE(folder="cache/partials")(power)
"""


async def test_partials_differ_by_function_and_bound_arguments(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), PARTIALS, mode=mode)
    calls = [
        (job.square, (3,)),
        (job.cube, (3,)),
        (job.two_to, (3,)),
        (job.three_to, (3,)),
        (job.twice, (3,)),
        (job.plain, (3, 2)),
    ]
    for _ in range(2):
        assert [await call(f, *args) for f, args in calls] == [9, 27, 8, 27, 6, 9]
    assert job.runs == [
        ("power", 3, 2),
        ("power", 3, 3),
        ("power", 2, 3),
        ("power", 3, 3),
        ("times", 2, 3),
        ("power", 3, 2),
    ]


def test_partials_binding_local_functions_by_keyword(memory_stor: CacheStor) -> None:
    def apply(x: int, op: Callable[[int], int]) -> int:
        return op(x)

    def make(k: int, **options: Any) -> Callable[[int], int]:
        return memory_stor.cache(folder="cache/partials", **options)(
            functools.partial(apply, op=lambda x: x + k)
        )

    # A keyword a partial binds is an argument of every call, which a lambda cannot be...
    with pytest.raises(TypeError, match=r"argument 'op' .* ignore=\['op'\]"):
        make(1)(1)
    # ...but the partial's own arguments are part of its identity, so ignoring it is safe.
    assert [make(1, ignore=["op"])(1), make(2, ignore=["op"])(1)] == [2, 3]


CALLABLES = """
import threading

class Multiplier:
    def __init__(self, k):
        self.k = k

    ASYNC def __call__(self, x):
        runs.append((self.k, x))
        return x * self.k

class Holder:
    def __init__(self):
        self.lock = threading.Lock()

    ASYNC def __call__(self, x):
        return x
"""


async def test_callable_instances_take_their_state_by_value(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, CALLABLES, mode=mode)
    decorate = stor.cache_async if mode == "async" else stor.cache
    multiplier = job.Multiplier(2)
    double = decorate(folder="cache/callables")(multiplier)
    triple = decorate(folder="cache/callables")(job.Multiplier(3))

    assert [await call(double, 5), await call(triple, 5)] == [10, 15]
    assert [await call(double, 5), await call(triple, 5)] == [10, 15]
    multiplier.k = 4  # state changed: another key
    assert await call(double, 5) == 20
    assert job.runs == [(2, 5), (3, 5), (4, 5)]

    with pytest.raises(TypeError, match=re.escape("ignore=['self']")):
        await call(decorate(folder="cache/callables")(job.Holder()), 1)


CLASSES = """
class Point:
    def __init__(self, x):
        runs.append(("point", x))
        self.x = x

class Vector:
    def __init__(self, x):
        runs.append(("vector", x))
        self.x = x

make_point = stor.cache(folder="cache/classes")(Point)
make_vector = stor.cache(folder="cache/classes")(Vector)
"""


def test_classes_never_share(make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch) -> None:
    job = load(monkeypatch, make_stor(), CLASSES)

    made = [job.make_point(1), job.make_vector(1), job.make_point(1), job.make_vector(1)]
    assert [type(m).__name__ for m in made] == ["Point", "Vector", "Point", "Vector"]
    assert job.runs == [("point", 1), ("vector", 1)]


def test_classes_made_by_a_factory_over_different_values_never_share(
    memory_stor: CacheStor,
) -> None:
    def make(k: int) -> type:
        class Shifted:
            def __init__(self, x: int) -> None:
                self.value = x + k

        return Shifted

    one = memory_stor.cache(folder="cache/classes")(make(1))
    two = memory_stor.cache(folder="cache/classes")(make(2))
    assert [one(0).value, two(0).value] == [1, 2]


def test_classes_with_different_class_attributes_never_share(memory_stor: CacheStor) -> None:
    def make(k: int) -> type:
        class Scaled:
            factor = k

            def __init__(self, x: int) -> None:
                self.value = x * self.factor

        return Scaled

    one = memory_stor.cache(folder="cache/classes")(make(1))
    two = memory_stor.cache(folder="cache/classes")(make(2))
    assert [one(1).value, two(1).value] == [1, 2]


@pytest.mark.parametrize(
    ("first", "second", "argument", "expected"),
    [
        pytest.param({1: 1}.get, {1: 2}.get, 1, (1, 2), id="dict.get"),
        pytest.param(
            re.compile("a").findall, re.compile("b").findall, "aab", (["a", "a"], ["b"]),
            id="pattern.findall",
        ),
        pytest.param((5).__add__, (6).__add__, 1, (6, 7), id="int.__add__"),
    ],
)
def test_builtin_bound_methods_of_different_objects_never_share(
    make_stor: MakeStor, first: Any, second: Any, argument: Any, expected: tuple[Any, Any]
) -> None:
    stor = make_stor()
    one = stor.cache(folder="cache/builtins")(first)
    two = stor.cache(folder="cache/builtins")(second)
    assert (one(argument), two(argument)) == expected


def test_class_based_wrappers_with_different_state_never_share(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, CAPTURES)
    double = stor.cache(folder="cache/wrappers")(job.Times(job.identity, 2))
    triple = stor.cache(folder="cache/wrappers")(job.Times(job.identity, 3))
    assert [double(5), triple(5)] == [10, 15]


def test_lru_cache_wrapped_functions_decorated_directly_never_share(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, CAPTURES)
    double = stor.cache(folder="cache/wrappers")(functools.lru_cache(job.make_helper(2)))
    triple = stor.cache(folder="cache/wrappers")(functools.lru_cache(job.make_helper(3)))
    assert [double(5), triple(5), double(5), triple(5)] == [10, 15, 10, 15]


# --- parameter names ------------------------------------------------------------------------

NAMES = """
@CACHE(folder="cache/names")
ASYNC def named(self, cls, args, kwargs, key, value, function, func, folder, version):
    runs.append(key)
    return [self, cls, args, kwargs, key, value, function, func, folder, version]

@CACHE(folder="cache/names")
ASYNC def anything(*args, **kwargs):
    runs.append(kwargs.get("key"))
    return [list(args), sorted(kwargs.items())]

@CACHE(folder="cache/names", ignore=["self"])
ASYNC def ignores_self(self, key):
    runs.append(("ignores_self", key))
    return key

class Store:
    @CACHE(folder="cache/names")
    ASYNC def put(self, key, value, function=None):
        runs.append(("put", key))
        return (key, value, function)
"""


async def test_any_parameter_name_works(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), NAMES, mode=mode)
    names = ["self", "cls", "args", "kwargs", "key", "value", "function", "func", "folder",
             "version"]
    by_keyword = dict(zip(names, range(10), strict=True))

    assert await call(job.named, **by_keyword) == list(range(10))
    assert await call(job.named, *range(10)) == list(range(10))
    assert await call(job.named, *range(5), value=5, function=6, func=7, folder=8,
                      version=9) == list(range(10))
    assert await call(job.named, **{**by_keyword, "key": 40}) == [0, 1, 2, 3, 40, 5, 6, 7, 8, 9]
    assert job.named.invalidate(**by_keyword) is True

    spread = {"self": 1, "cls": 2, "key": 3, "value": 4, "function": 5, "args": 6}
    assert await call(job.anything, 0, **spread) == [[0], sorted(spread.items())]
    assert await call(job.anything, 0, **spread) == [[0], sorted(spread.items())]
    assert await call(job.ignores_self, self=object(), key=1) == 1
    assert await call(job.ignores_self, self=object(), key=1) == 1
    store = job.Store()
    assert await call(store.put, key="k", value="v", function="f") == ("k", "v", "f")
    assert await call(store.put, "k", "v", "f") == ("k", "v", "f")
    assert job.runs == [4, 40, 3, ("ignores_self", 1), ("put", "k")]
    assert [job.named.cache_info(), job.anything.cache_info()] == [(2, 2), (1, 1)]


# --- code changes between runs --------------------------------------------------------------

EDITABLE = '''
def make():
    def scale(y):
        return y * 10

    @CACHE(folder="cache/job")
    ASYNC def compute(x, offset=1, *, bias=0):
        """Computes."""
        runs.append(x)

        def inner(z):
            """Adds one."""
            return z + 1

        # a comment
        return scale(inner(x)) + offset + bias

    return compute


entry = make()
'''


def edit(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return apply


EDITS = [
    pytest.param(edit("", ""), 21, True, id="identical"),
    pytest.param(
        edit("# a comment", "# another comment\n        # on two lines"), 21, True, id="comment"
    ),
    pytest.param(
        lambda text: "\n\n\n# moved\n" + text.replace("runs.append(x)\n", "runs.append(x)\n\n\n"),
        21,
        True,
        id="blank-and-moved-lines",
    ),
    pytest.param(edit("Computes.", "Computes the answer, carefully."), 21, True, id="docstring"),
    pytest.param(edit("+ offset + bias", "- offset + bias"), 19, False, id="body"),
    pytest.param(edit("offset=1", "offset=2"), 22, False, id="default-value"),
    pytest.param(edit("bias=0", "bias=5"), 26, False, id="keyword-only-default"),
    pytest.param(edit("z + 1", "z + 2"), 31, False, id="nested-function-body"),
    pytest.param(edit("y * 10", "y * 100"), 201, False, id="captured-helper-body"),
    pytest.param(edit("y * 10", "y * 10.0"), 21.0, False, id="constant-int-to-float"),
    pytest.param(
        edit('        """Computes."""\n', ""),
        21,
        True,
        id="docstring-removed",
        marks=limit(
            "minor false miss: removing (or adding) a docstring changes the revision "
            "(co_consts[0] goes from the docstring to None)"
        ),
    ),
    pytest.param(
        edit("Adds one.", "Adds one to z."),
        21,
        True,
        id="nested-function-docstring",
        marks=limit(
            "minor false miss: a nested function's docstring edit changes the revision "
            "(_const_form passes doc=None for nested code objects)"
        ),
    ),
]


@pytest.mark.parametrize(("change", "value", "hit"), EDITS)
async def test_a_code_change_in_the_next_run(
    make_lasting_stor: MakeStor,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[str], str],
    value: Any,
    hit: bool,
) -> None:
    first = await one_run(make_lasting_stor, monkeypatch, EDITABLE, mode, (1,))
    assert first == ([21], [1])
    values, runs = await one_run(make_lasting_stor, monkeypatch, change(EDITABLE), mode, (1,))
    assert values == [value] and type(values[0]) is type(value)
    assert runs == ([] if hit else [1])


VERSIONED = """
def make():
    def scale(y):
        return y * 10

    @CACHE(folder="cache/job", version=VERSION)
    ASYNC def compute(x):
        runs.append(x)
        return scale(x) + 1

    return compute


entry = make()
"""

VERSION_CHANGES = [
    pytest.param("1", "1", edit("+ 1", "+ 2"), 11, True, id="body-edited-same-version"),
    pytest.param("1", "1", edit("y * 10", "y * 100"), 11, True, id="helper-edited-same-version"),
    pytest.param("1", "2", edit("", ""), 11, False, id="other-version"),
    pytest.param("1", "'1'", edit("", ""), 11, True, id="int-and-text-alike"),
    pytest.param("'1.2.3-rc+build.5'", "'1.2.3-rc+build.6'", edit("", ""), 11, False,
                 id="dotted-versions"),
]


@pytest.mark.parametrize(("before", "after", "change", "value", "hit"), VERSION_CHANGES)
async def test_version_pins_identity(
    make_lasting_stor: MakeStor,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    before: str,
    after: str,
    change: Callable[[str], str],
    value: int,
    hit: bool,
) -> None:
    first = await one_run(
        make_lasting_stor, monkeypatch, VERSIONED.replace("VERSION", before), mode, (1,)
    )
    assert first == ([11], [1])
    later = change(VERSIONED.replace("VERSION", after))
    assert await one_run(make_lasting_stor, monkeypatch, later, mode, (1,)) == (
        [value],
        [] if hit else [1],
    )


async def test_version_keeps_closures_over_different_values_apart(
    make_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_stor(), ADDERS.replace('"cache/shared"', '"c", version=3'),
               mode=mode)
    assert [await call(job.make_adder(1), 10), await call(job.make_adder(2), 10)] == [11, 12]


@limit(
    "with version= a captured function is described without its code, so two "
    "closures capturing different lambdas (one name, '<lambda>') share entries in one process"
)
def test_version_keeps_closures_over_different_functions_apart(memory_stor: CacheStor) -> None:
    def make(op: Callable[[int], int]) -> Callable[[int], int]:
        @memory_stor.cache(folder="cache/versioned", version=1)
        def apply(x: int) -> int:
            return op(x)

        return apply

    assert [make(lambda x: x + 1)(2), make(lambda x: x * 10)(2)] == [3, 20]


@pytest.mark.parametrize(
    "version",
    [True, False, 1.5, "", "has space", "v:1", "x" * 65, b"1", ["1"], "é"],
    ids=repr,
)
def test_a_bad_version_is_a_value_error_naming_the_function(
    memory_stor: CacheStor, version: Any, mode: str
) -> None:
    async def lookup_async(x: int) -> int:
        return x

    def lookup(x: int) -> int:
        return x

    decorate = memory_stor.cache_async if mode == "async" else memory_stor.cache
    target = lookup_async if mode == "async" else lookup
    with pytest.raises(ValueError, match=re.escape(target.__qualname__)) as refused:
        decorate(folder="cache/v", version=version)(target)
    assert "version" in str(refused.value)


@pytest.mark.parametrize("version", [0, -1, "x" * 64, "1.2.3-rc+build.5", "A_b"])
def test_good_versions_are_accepted(memory_stor: CacheStor, version: Any) -> None:
    @memory_stor.cache(folder="cache/v", version=version)
    def lookup(x: int) -> int:
        return x

    assert [lookup(1), lookup(1)] == [1, 1]
    assert lookup.cache_info() == (1, 1)


HASHSEED = """
import json
from my_cache import CacheStor

stor = CacheStor()
WORDS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})

def make(words):
    @stor.cache(folder="cache/words")
    def known(word):
        def spelled(w):
            return w in {"one", "two", "three", "four", "five", "six"}
        return word in {"alpha", "beta", "gamma", "zeta", "eta", "theta"} and word in words \\
            or spelled(word)
    return known

class Lexicon:
    def __init__(self, word):
        self.vowels = sorted(c for c in word if c in {"a", "e", "i", "o", "u"})
    def first(self):
        return self.vowels[:1]
    def last(self):
        return self.vowels[-1:]

known = make(WORDS)
lexicon = stor.cache(folder="cache/words")(Lexicon)
print(json.dumps([known("beta"), list(known.cache_info()), lexicon("alpha").vowels,
                  list(lexicon.cache_info())]))
"""


def test_pythonhashseed_varying_between_runs_still_hits(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    outputs = [
        ran(run_python(HASHSEED, env={**lasting_env, "PYTHONHASHSEED": seed}))
        for seed in ("0", "1", "2", "3")
    ]
    assert outputs[0] == [True, [0, 1], ["a", "a"], [0, 1]]
    assert outputs[1:] == [[True, [1, 0], ["a", "a"], [1, 0]]] * 3


CACHED_CLASS = """
class Priced:
    rate = 2

    def __init__(self, x):
        runs.append(x)
        self.value = self.scale(x) * self.rate

    @staticmethod
    def scale(x):
        return x * 10

entry = stor.cache(folder="cache/classes")(Priced)
"""


@pytest.mark.parametrize(
    ("change", "value"),
    [
        pytest.param(edit("rate = 2", "rate = 3"), 30, id="class-attribute"),
        pytest.param(edit("x * 10", "x * 100"), 200, id="static-method-body"),
    ],
)
def test_a_decorated_class_edited_between_runs_misses(
    make_lasting_stor: MakeStor,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[str], str],
    value: int,
) -> None:
    stor = make_lasting_stor()
    job = load(monkeypatch, stor, CACHED_CLASS)
    assert job.entry(1).value == 20
    stor.close()
    stor = make_lasting_stor()
    job = load(monkeypatch, stor, change(CACHED_CLASS))
    assert job.entry(1).value == value


METHOD_WITH_CLASS_ATTRIBUTE = """
class Pricing:
    rate = 2

    @CACHE(folder="cache/pricing")
    ASYNC def price(self, x):
        runs.append(x)
        return x * self.rate

entry = Pricing().price
"""


@limit(
    "a method reading a class attribute: self is taken by value (its __dict__), "
    "the class's attributes are not; editing `rate` between runs, or changing it at run "
    "time, still serves the old results (like a module global, but docs/identity.md does not "
    "say so for classes)"
)
async def test_a_class_attribute_edited_between_runs_misses(
    make_lasting_stor: MakeStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = METHOD_WITH_CLASS_ATTRIBUTE
    assert await one_run(make_lasting_stor, monkeypatch, source, mode, (1,)) == ([2], [1])
    edited = source.replace("rate = 2", "rate = 3")
    assert await one_run(make_lasting_stor, monkeypatch, edited, mode, (1,)) == ([3], [1])


@pytest.mark.parametrize(
    "attribute",
    [
        pytest.param("__defaults__", id="defaults"),
        pytest.param("__kwdefaults__", id="kwdefaults"),
    ],
)
@limit(
    "the signature's defaults are read once at decoration: after "
    "f.__wrapped__.__defaults__ (or __kwdefaults__) is changed, f(0) runs with the new "
    "default but is keyed with the old one, and is served the old result"
)
def test_defaults_changed_at_run_time(make_stor: MakeStor, attribute: str) -> None:
    stor = make_stor()

    @stor.cache(folder="cache/defaults")
    def shifted(x: int, k: int = 1, *, j: int = 0) -> int:
        return x + k + j

    assert shifted(0) == 1
    if attribute == "__defaults__":
        shifted.__wrapped__.__defaults__ = (2,)  # type: ignore[attr-defined]
    else:
        shifted.__wrapped__.__kwdefaults__ = {"j": 1}  # type: ignore[attr-defined]
    assert shifted(0) == 2


# --- more places two computations could meet ------------------------------------------------


def test_sync_and_async_functions_of_one_name_in_one_folder_never_share(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
    @CACHE(folder="cache/both")
    ASYNC def f(x):
        runs.append(x)
        return x + 1
    entry = f
    """
    stor = make_stor()
    sync_job = load(monkeypatch, stor, source, mode="sync")
    async_job = load(monkeypatch, stor, source.replace("x + 1", "x + 2"), mode="async")

    async def both() -> list[Any]:
        return [sync_job.f(1), await async_job.f(1), sync_job.f(1), await async_job.f(1)]

    assert asyncio.run(both()) == [2, 3, 2, 3]
    assert [sync_job.runs, async_job.runs] == [[1], [1]]


HALVED = """
def halved(x):
    runs.append(x)
    return x / 2
"""


def test_two_cache_stors_with_different_serialisers_on_one_folder(
    make_lasting_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_lasting_stor(), HALVED)
    made = [
        make_lasting_stor(serialiser=serialiser).cache(folder="cache/serialisers")(job.halved)
        for serialiser in (SerialiseBin(), SerialiseJson(), SerialiseMsgpack())
    ]
    assert [f(3) for f in made] == [1.5] * 3
    assert [f(3) for f in made] == [1.5] * 3
    assert job.runs == [3, 3, 3]  # each ran once: no serialiser reads another's keys


class Rounding(Serialise):
    """A serialiser with a setting: arguments rounded to ``digits`` before hashing."""

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self._inner = SerialiseBin()

    def encode(self, /, *args: Any, **kwargs: Any) -> tuple[str, str]:
        return self._inner.encode(
            *[round(a, self.digits) for a in args],
            **{name: round(v, self.digits) for name, v in kwargs.items()},
        )


def test_one_serialiser_class_with_two_settings_on_one_folder(
    make_lasting_stor: MakeStor,
) -> None:
    coarse = make_lasting_stor(serialiser=Rounding(0))
    fine = make_lasting_stor(serialiser=Rounding(2))

    def halved(x: float) -> float:
        return x / 2

    assert coarse.cache(folder="cache/rounding")(halved)(1.4) == 0.7
    assert fine.cache(folder="cache/rounding")(halved)(1.0) == 0.5


# --- properties -----------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-4, 4), st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, -1.5, True, False])
)


def _number_key(triple: tuple[str, Any, Any]) -> Any:
    op, k, c = triple
    return (op, type(k).__name__, repr(k), type(c).__name__, repr(c))


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_generated_distinct_functions_in_modules_of_one_name_never_share(
    kind: str, tmp_path: Path
) -> None:
    stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=KINDS[kind])

    @settings(max_examples=60 if kind == "memory" else 30, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(["+", "-", "*"]), NUMBERS, NUMBERS),
            min_size=2,
            max_size=4,
            unique_by=_number_key,
        )
    )
    def check(triples: list[tuple[str, Any, Any]]) -> None:
        functions = []
        for op, k, c in triples:
            module = types.ModuleType("generated")  # every one is generated.f
            module.runs = []  # type: ignore[attr-defined]
            exec(f"def f(x):\n    runs.append(x)\n    return x {op} {k!r} + {c!r}\n", vars(module))
            # One folder for every function of every example.
            functions.append(stor.cache(folder="cache/generated")(module.f))
        for x in (0, 1, 3, -2):
            for (op, k, c), f in zip(triples, functions, strict=True):
                expected = eval(f"x {op} {k!r} + {c!r}", {"x": x})
                assert strict_key(f(x)) == strict_key(expected), (op, k, c, x)

    try:
        check()
    finally:
        stor.close()


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.binary(max_size=4)
)
CAPTURABLE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.lists(inner, max_size=3).map(tuple)
    | st.frozensets(st.integers() | st.text(max_size=3), max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_closures_over_generated_distinct_values_never_share(
    kind: str, tmp_path: Path
) -> None:
    stor = CacheStor(db_file=tmp_path / "catalogue.db", type_storage=KINDS[kind])

    def make(value: Any) -> Callable[[int], Any]:
        @stor.cache(folder="cache/closures")
        def echo(x: int) -> Any:
            return (x, value)

        return echo

    @settings(max_examples=80 if kind == "memory" else 40, deadline=None)
    @given(st.lists(CAPTURABLE, min_size=2, max_size=4, unique_by=strict_key))
    def check(values: list[Any]) -> None:
        echoes = [make(value) for value in values]
        for _ in range(2):
            for value, echo in zip(values, echoes, strict=True):
                assert strict_key(echo(0)) == strict_key((0, value))

    try:
        check()
    finally:
        stor.close()


# --- round 2 ----------------------------------------------------------------------------------
# The other direction: everyday code must be cached (not refused), must hit again in the next
# run, and must never crash the identity; and the corners of classes, class-based decorators,
# builtin methods and partials.

EVERYDAY = """
import cmath, collections, dataclasses, datetime, decimal, enum, logging, math, pathlib, re
import typing

import pydantic

class Color(enum.Enum):
    RED = "red"
    GREEN = "green"

class Shade(enum.Enum):
    DARK = "dark"

@dataclasses.dataclass
class Config:
    rate: int
    name: str = "config"

class Pair(typing.NamedTuple):
    a: int
    b: str = "b"

class Session:
    '''Like requests.Session: a base URL and headers.'''
    def __init__(self, base):
        self.base = base
        self.headers = {"User-Agent": "job", "Accept": "*/*"}

    def url(self, path):
        return self.base + path

class Price(pydantic.BaseModel):
    amount: int = 1

class Cost(pydantic.BaseModel):
    amount: int = 2

@functools.lru_cache
def doubled(x):
    return 2 * x

@functools.lru_cache
def tripled(x):
    return 3 * x

def make_config_class(k):
    @dataclasses.dataclass
    class Local:
        rate: int = k
    return Local

def make(value):
    @stor.cache(folder="cache/everyday")
    def apply(x):
        runs.append(x)
        return BODY
    return apply
"""

EVERYDAY_VALUES = [
    pytest.param(
        'logging.getLogger("job.a")', 'logging.getLogger("job.b")', "value.name * x", id="logger"
    ),
    pytest.param(
        'pathlib.Path("/srv/a")', 'pathlib.Path("/srv/b")', "str(value / str(x))", id="path"
    ),
    pytest.param(
        "datetime.datetime(2024, 1, 1, 12)",
        "datetime.datetime(2024, 1, 2, 12)",
        "(value + datetime.timedelta(days=x)).isoformat()",
        id="datetime",
    ),
    pytest.param(
        'decimal.Decimal("1.10")', 'decimal.Decimal("1.1")', "str(value * x)",
        id="decimals-equal-but-not-alike",
    ),
    pytest.param("Color.RED", "Color.GREEN", "value.value * x", id="enum-member"),
    pytest.param("Color", "Shade", "[m.value for m in value] * x", id="enum-class"),
    pytest.param("Config(2)", "Config(3)", "value.rate * x", id="dataclass-instance"),
    pytest.param(
        "make_config_class(2)", "make_config_class(3)", "value().rate * x",
        id="local-dataclass-class",
    ),
    pytest.param("Pair(2)", "Pair(3)", "value.a * x", id="namedtuple"),
    pytest.param(
        're.compile("a+")', 're.compile("b+")', 'value.findall("aab" * x)', id="compiled-regex"
    ),
    pytest.param("math", "cmath", "str(value.sqrt(4 * x))", id="module"),
    pytest.param("doubled", "tripled", "value(x)", id="lru_cache-function"),
    pytest.param(
        "collections.OrderedDict", "dict", "type(value([(1, x)])).__name__", id="stdlib-class"
    ),
    pytest.param("Price", "Cost", "value().amount * x", id="pydantic-model-class"),
    pytest.param("Price(amount=5)", "Price(amount=6)", "value.amount * x", id="pydantic-model"),
    pytest.param(
        'Session("https://a.example")', 'Session("https://b.example")', "value.url(str(x))",
        id="session-object",
    ),
    pytest.param(
        '{"op": lambda x: x + 1}', '{"op": lambda x: x * 10}', 'value["op"](x)',
        id="dict-of-lambdas",
    ),
    pytest.param(
        '{frozenset({"a"}), frozenset({"b", "c"})}',
        '{frozenset({"a", "b"}), frozenset({"c"})}',
        "sorted(sorted(s) * x for s in value)",
        id="set-of-frozensets",
    ),
]


@pytest.mark.parametrize(("first", "second", "body"), EVERYDAY_VALUES)
def test_closures_over_everyday_values_are_cached_and_kept_apart(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch, first: str, second: str, body: str
) -> None:
    job = load(monkeypatch, make_stor(), EVERYDAY.replace("BODY", body))
    one, two = job.make(eval(first, vars(job))), job.make(eval(second, vars(job)))
    expected = [
        eval(body, {**vars(job), "value": eval(source, vars(job)), "x": 1})
        for source in (first, second)
    ]
    assert expected[0] != expected[1]

    for _ in range(2):
        assert [one(1), two(1)] == expected
    assert job.runs == [1, 1]
    assert [one.cache_info(), two.cache_info()] == [(1, 1), (1, 1)]


def _local_session() -> Any:
    class Session:  # a class of a function's own: pickle cannot name it
        def __init__(self) -> None:
            self.headers = {"User-Agent": "job"}

    return Session()


def _counting() -> Iterator[int]:
    yield from range(3)


def _sqlite_connection() -> Any:
    import sqlite3

    return sqlite3.connect(":memory:")


def _logging_handler() -> Any:
    import logging

    return logging.StreamHandler()


def _mock_of_a_function() -> Any:
    from unittest import mock

    return mock.Mock(spec=_counting)


REFUSED_RESOURCES: dict[str, Callable[[Path], Any]] = {
    "lock": lambda _: threading.Lock(),
    "rlock": lambda _: threading.RLock(),
    "event": lambda _: threading.Event(),
    "sqlite3-connection": lambda _: _sqlite_connection(),
    "open-file": lambda tmp: open(tmp / "log.txt", "w"),  # noqa: SIM115 (closed by the test)
    "generator": lambda _: _counting(),
    "local-class-session": lambda _: _local_session(),
    "logging-handler": lambda _: _logging_handler(),
}

REFUSED = """
def make(resource, options):
    @CACHE(folder="cache/refused", **options)
    ASYNC def apply(x):
        resource
        runs.append(x)
        return x * 2
    return apply
"""


@pytest.mark.parametrize("kind", list(REFUSED_RESOURCES))
async def test_a_refused_everyday_resource_names_a_remedy_that_works(
    memory_stor: CacheStor, mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    resource = REFUSED_RESOURCES[kind](tmp_path)
    try:
        job = load(monkeypatch, memory_stor, REFUSED, mode=mode)
        with pytest.raises(TypeError) as refused:
            await call(job.make(resource, {}), 1)
        message = str(refused.value)
        assert "job:make.<locals>.apply()" in message
        assert "'resource'" in message
        assert "ignore=['resource']" in message
        # The remedy it names works (and two closures over the ignored value share).
        first = job.make(resource, {"ignore": ["resource"]})
        second = job.make(resource, {"ignore": ["resource"]})
        assert [await call(first, 1), await call(first, 1), await call(second, 1)] == [2, 2, 2]
        assert job.runs == [1]
    finally:
        if hasattr(resource, "close"):
            resource.close()


def test_a_refused_captured_value_is_not_called_an_argument(memory_stor: CacheStor) -> None:
    lock = threading.Lock()

    @memory_stor.cache(folder="cache/refused")
    def guarded(x: int) -> int:
        with lock:
            return x

    with pytest.raises(TypeError) as refused:
        guarded(1)
    assert "'lock'" in str(refused.value)
    assert "positional argument" not in str(refused.value)


def test_singledispatch_functions_are_cached(memory_stor: CacheStor) -> None:
    @functools.singledispatch
    def render(value: Any) -> str:
        return f"value {value}"

    @render.register
    def _(value: int) -> str:
        return f"int {value}"

    @memory_stor.cache(folder="cache/dispatch")
    def page(x: Any) -> str:
        return render(x)

    direct = memory_stor.cache(folder="cache/dispatch")(render)
    assert [page(1), page(1), direct("a"), direct("a")] == ["int 1", "int 1", "value a", "value a"]
    assert [page.cache_info(), direct.cache_info()] == [(1, 1), (1, 1)]


# Run twice in two processes with different PYTHONHASHSEED: every call of the second run hits.
# Both programs key a closure over each value and report its first call.
FIRST_CALL = """
def make(value):
    @stor.cache(folder="cache/seeded")
    def apply(x):
        value
        return x
    return apply

def first_call(value):
    apply = make(value)
    return [apply(1), list(apply.cache_info())]
"""

SEEDED = """
import abc, collections, dataclasses, enum, json, logging, pathlib, re, sys, typing
import pydantic
from my_cache import CacheStor

stor = CacheStor()

class Color(enum.Enum):
    RED = "red"
    GREEN = "green"

class Model(pydantic.BaseModel):
    name: str = "m"
    tags: frozenset[str] = frozenset({"alpha", "beta", "gamma"})

@dataclasses.dataclass
class Point:
    x: int = 0
    y: int = 0

class Pair(typing.NamedTuple):
    a: int
    b: str = "b"

class Tagged:
    tags = {"alpha", "beta", "gamma", "delta"}
    index = {"alpha": {"a", "l", "p"}, "beta": {"b", "e", "t"}}

    def tagged(self, word):
        return word in self.tags

T = typing.TypeVar("T")

class Box(typing.Generic[T]):
    def get(self):
        return None

class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self): ...

class Square(Shape):
    def area(self):
        return 1

CAPTURED = {
    "set-of-strings": {"alpha", "beta", "gamma", "delta", "epsilon"},
    "dict-with-str-keys": {"alpha": 1, "beta": 2, "gamma": 3},
    "frozensets": {frozenset({"a", "b"}), frozenset({"c", "d", "e"})},
    "class-with-set-attributes": Tagged,
    "pydantic-model-class": Model,
    "enum-class": Color,
    "enum-member": Color.GREEN,
    "dataclass-class": Point,
    "dataclass-instance": Point(1, 2),
    "namedtuple": Pair(1),
    "logger": logging.getLogger("job"),
    "path": pathlib.Path("/srv/data"),
    "regex": re.compile(r"[a-z]+"),
    "dict-of-lambdas": {"inc": lambda x: x + 1, "dbl": lambda x: x * 2},
    "generic-class": Box,
    "abstract-class": Square,
    "stdlib-class": collections.OrderedDict,
}

if sys.argv[1:] == ["warm"]:
    # What fills classes' lazy caches before the first call, in one run and not the next.
    isinstance(Square(), Shape), issubclass(int, Shape), Model(name="x"), Box[int], Color("red")

{first_call}
print(json.dumps({name: first_call(value) for name, value in CAPTURED.items()}))
""".replace("{first_call}", FIRST_CALL)


def test_everyday_captured_values_hit_in_the_next_process(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    first = ran(run_python(SEEDED, args=("warm",), env={**lasting_env, "PYTHONHASHSEED": "1"}))
    second = ran(run_python(SEEDED, env={**lasting_env, "PYTHONHASHSEED": "2"}))
    assert first == {name: [1, [0, 1]] for name in first}
    assert second == {name: [1, [1, 0]] for name in first}


SEEDED_SETS = """
import dataclasses, json
import pydantic
from my_cache import CacheStor

stor = CacheStor()

class Settings(pydantic.BaseModel):
    host: str
    port: int
    user: str = "guest"

    @stor.cache(folder="cache/seeded")
    def url(self, path):
        return f"{self.host}:{self.port}{path}"

@dataclasses.dataclass
class Query:
    table: str
    columns: frozenset = frozenset({"id", "name", "email", "created"})

class Filter:
    def __init__(self):
        self.allowed = {"alpha", "beta", "gamma", "delta"}

CAPTURED = {
    "pydantic-model": Settings(host="db", port=5432, user="admin"),
    "dataclass-with-a-frozenset-field": Query("users"),
    "object-with-a-set-attribute": Filter(),
}

{first_call}
settings = CAPTURED["pydantic-model"]
print(json.dumps({
    **{name: first_call(value) for name, value in CAPTURED.items()},
    "method-of-a-pydantic-model": [settings.url("/x"), list(Settings.url.cache_info())],
}))
""".replace("{first_call}", FIRST_CALL)


def test_objects_holding_sets_hit_in_the_next_process(
    run_python: RunPython, tmp_path: Path
) -> None:
    env = {"MYCACHE_TYPE_STORAGE": "in_disk", "MYCACHE_DB_FILE": str(tmp_path / "c.db")}
    first = ran(run_python(SEEDED_SETS, env={**env, "PYTHONHASHSEED": "1"}))
    second = ran(run_python(SEEDED_SETS, env={**env, "PYTHONHASHSEED": "2"}))
    assert [info for _, info in first.values()] == [[0, 1]] * 4
    assert {name: info for name, (_, info) in second.items()} == {name: [1, 0] for name in first}


SEEDED_FLAG = """
import enum, json, sys
from my_cache import CacheStor

stor = CacheStor()

class Permission(enum.Flag):
    READ = 1
    WRITE = 2
    EXECUTE = 4

if sys.argv[1:] == ["rw"]:
    Permission.READ | Permission.WRITE  # as parsing a command line does before the call

def make(flags):
    @stor.cache(folder="cache/flags")
    def allowed(x):
        return bool(flags.READ & x)
    return allowed

allowed = make(Permission)
print(json.dumps([allowed(Permission.READ), list(allowed.cache_info())]))
"""


def test_a_captured_flag_class_hits_whatever_flags_were_combined_before(
    run_python: RunPython, tmp_path: Path
) -> None:
    env = {"MYCACHE_TYPE_STORAGE": "in_disk", "MYCACHE_DB_FILE": str(tmp_path / "c.db")}
    assert ran(run_python(SEEDED_FLAG, env=env)) == [True, [0, 1]]
    assert ran(run_python(SEEDED_FLAG, args=("rw",), env=env)) == [True, [1, 0]]


# --- round 2: classes, class-based decorators, builtin methods, partials ---------------------

CACHED_METHODS = """
class Base:
    ASYNC def price(self, x):
        return x * 2

class Shop(Base):
    @CACHE(folder="cache/shop")
    ASYNC def price(self, x):
        runs.append(x)
        return AWAIT super().price(x) + 1

class Catalogue:
    def __init__(self, scale=10):
        self.scale = scale

    @CACHE(folder="cache/shop")
    ASYNC def lookup(self, x):
        runs.append(x)
        return x * self.scale

def make(cls):
    @CACHE(folder="cache/shop")
    ASYNC def lookup(x):
        return AWAIT cls().lookup(x)
    return lookup
"""


async def test_a_cached_method_calling_super_is_cached(
    memory_stor: CacheStor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, memory_stor, CACHED_METHODS, mode=mode)
    assert [await call(job.Shop().price, 1), await call(job.Shop().price, 1)] == [3, 3]
    assert job.runs == [1]


@pytest.mark.parametrize("how", ["captured", "decorated"])
async def test_a_class_with_a_cached_method_can_be_captured_or_decorated(
    memory_stor: CacheStor, mode: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    job = load(monkeypatch, memory_stor, CACHED_METHODS, mode=mode)
    if how == "captured":
        lookup = job.make(job.Catalogue)
    else:
        made = memory_stor.cache(folder="cache/classes")(job.Catalogue)

        async def lookup(x: int) -> Any:
            return await call(made().lookup, x)

    assert [await call(lookup, 2), await call(lookup, 2)] == [20, 20]
    assert job.runs == [2]


AT_CLASS = """
@stor.cache(folder="cache/points")
class Point:
    def __init__(self, x):
        runs.append(x)
        self.x = x
"""


def test_a_class_decorated_with_the_at_syntax_is_stored_or_refused_clearly(
    make_lasting_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, make_lasting_stor(), AT_CLASS)
    try:
        assert [job.Point(1).x, job.Point(1).x] == [1, 1]
    except TypeError as error:  # a refusal at the first call must name the class
        assert "job:Point" in str(error)
        assert job.runs == []
    else:
        assert job.runs == [1]


TRACED = """
class Traced:
    '''A class-based decorator, as many code bases write them.'''
    def __init__(self, function):
        functools.update_wrapper(self, function)
        self.function = function

    def __call__(self, x):
        return self.function(x)

@Traced
def square(x):
    return x * x

@Traced
def negate(x):
    return -x
"""


def test_functions_under_a_class_based_decorator_never_share(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, TRACED)

    def decorate(traced: Any) -> Any:
        """Decorate it, following the remedy of the refusal if there is one."""
        cached = stor.cache(folder="cache/traced")(traced)
        try:
            cached(0)
        except TypeError as error:
            assert "ignore=['self']" in str(error)
            cached = stor.cache(folder="cache/traced", ignore=["self"])(traced)
        return cached

    square, negate = decorate(job.square), decorate(job.negate)
    assert [square(3), negate(3), square(3), negate(3)] == [9, -3, 9, -3]


def test_builtin_bound_methods_and_partials_of_methods(
    make_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_stor()
    job = load(monkeypatch, stor, CAPTURES)  # Scale(k).apply(x) is x * k
    calls: list[tuple[Any, tuple[Any, ...], Any]] = [
        ("a-b".split, ("-",), ["a", "b"]),
        ("c-d".split, ("-",), ["c", "d"]),
        (functools.partial(job.Scale(2).apply), (5,), 10),
        (functools.partial(job.Scale(3).apply), (5,), 15),
        (functools.partial(job.Scale.apply, job.Scale(2)), (5,), 10),
        (functools.partial(job.Scale.apply, job.Scale(3)), (5,), 15),
        (functools.partial(job.Scale(2).apply, 5), (), 10),
        (functools.partial(job.Scale(3).apply, 5), (), 15),
    ]
    made = [stor.cache(folder="cache/bound")(function) for function, _, _ in calls]
    for _ in range(2):
        assert [f(*args) for f, (_, args, _) in zip(made, calls, strict=True)] == [
            expected for _, _, expected in calls
        ]
    assert [f.cache_info() for f in made] == [(1, 1)] * len(calls)
    # Equal objects share: a new decoration of an equal bound method or partial hits.
    again = [
        stor.cache(folder="cache/bound")("a-b".split),
        stor.cache(folder="cache/bound")(functools.partial(job.Scale(3).apply, 5)),
    ]
    assert [again[0]("-"), again[1]()] == [["a", "b"], 15]
    assert [f.cache_info() for f in again] == [(1, 0), (1, 0)]


CLASS_KINDS = """
import abc, enum, typing

T = typing.TypeVar("T")

class Repository(typing.Generic[T]):
    def __init__(self, table):
        self.table = table

    @stor.cache(folder="cache/kinds")
    def get(self, key):
        runs.append(("get", self.table, key))
        return f"{self.table}/{key}"

class Box(typing.Generic[T]):
    def __init__(self, item):
        runs.append(("box", item))
        self.item = item

class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self): ...

class Square(Shape):
    def __init__(self, side):
        runs.append(("square", side))
        self.side = side

    def area(self):
        return self.side ** 2

class Slotted:
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    @stor.cache(folder="cache/kinds")
    def times(self, x):
        runs.append(("times", self.k, x))
        return x * self.k

class Color(enum.Enum):
    RED = 1
    GREEN = 2

box = stor.cache(folder="cache/kinds")(Box)
square = stor.cache(folder="cache/kinds")(Square)
color = stor.cache(folder="cache/kinds")(Color)

def run(warm):
    if warm:  # fills the ABC's and typing's caches before the first calls
        isinstance(Square(1), Shape), issubclass(int, Shape), Repository[int], Box[str]
    return [
        Repository[int]("users").get(1), Repository("users").get(1), box("pen").item,
        square(2).area(), color(1) is Color.RED, Slotted(2).times(5), Slotted(3).times(5),
    ]
"""


def test_generic_abstract_slotted_and_enum_classes_hit_in_the_next_run(
    make_lasting_stor: MakeStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stor = make_lasting_stor()
    values = load(monkeypatch, stor, CLASS_KINDS).run(warm=True)
    stor.close()
    second = load(monkeypatch, make_lasting_stor(), CLASS_KINDS)
    assert second.run(warm=False) == values == ["users/1", "users/1", "pen", 4, True, 10, 15]
    assert second.runs == []


RICH_CLASS = """
import dataclasses, functools

@dataclasses.dataclass
class Order:
    qty: int
    price: float = 2.0
    tags: list = dataclasses.field(default_factory=lambda: ["new"])

    def __post_init__(self):
        runs.append(self.qty)
        self.total = self.scaled(self.qty * self.price) + self.fee
        self.label = self.summary

    def scaled(self, amount, factor=10):
        return amount * factor

    @property
    def fee(self):
        return 1

    @functools.cached_property
    def summary(self):
        return f"{self.qty} x {self.price}"

entry = stor.cache(folder="cache/orders")(Order)
"""

RICH_EDITS = [
    pytest.param(edit("", ""), (21.0, ["new"], "1 x 2.0"), True, id="identical"),
    pytest.param(edit("2.0", "3.0"), (31.0, ["new"], "1 x 3.0"), False, id="field-default"),
    pytest.param(
        edit('["new"]', '["old"]'), (21.0, ["old"], "1 x 2.0"), False, id="default-factory"
    ),
    pytest.param(edit("return 1", "return 2"), (22.0, ["new"], "1 x 2.0"), False, id="property"),
    pytest.param(
        edit("factor=10", "factor=100"),
        (201.0, ["new"], "1 x 2.0"),
        False,
        id="method-default",
    ),
    pytest.param(
        edit("x {self.price}", "* {self.price}"),
        (21.0, ["new"], "1 * 2.0"),
        False,
        id="cached_property",
    ),
]


@pytest.mark.parametrize(("change", "value", "hit"), RICH_EDITS)
def test_a_decorated_dataclass_edited_between_runs(
    make_lasting_stor: MakeStor,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[str], str],
    value: tuple[Any, ...],
    hit: bool,
) -> None:
    stor = make_lasting_stor()
    order = load(monkeypatch, stor, RICH_CLASS).entry(1)
    assert (order.total, order.tags, order.label) == (21.0, ["new"], "1 x 2.0")
    stor.close()
    job = load(monkeypatch, make_lasting_stor(), change(RICH_CLASS))
    order = job.entry(1)
    assert (order.total, order.tags, order.label) == value
    assert job.runs == ([] if hit else [1])


# --- round 2: what must never crash the identity ---------------------------------------------


class _AttrDict(dict[str, Any]):
    """A dict whose keys read as attributes: a missing one is a KeyError, not AttributeError."""

    __getattr__ = dict.__getitem__


class _RequestProxy:
    """Like werkzeug's LocalProxy outside a request: every unknown attribute raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("working outside of request context")


def _nested_lists(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


UNUSUAL: dict[str, Callable[[], Any]] = {
    "attribute-dict": lambda: _AttrDict(rate=2),
    "request-proxy": _RequestProxy,
    "mock-with-a-function-spec": _mock_of_a_function,
    "deeply-nested-lists": lambda: _nested_lists(1000),
    "class-without-a-module": lambda: type("Anonymous", (), {"__module__": None}),
}


@pytest.mark.parametrize("kind", list(UNUSUAL))
def test_unusual_captured_values_are_cached_or_refused_clearly(
    memory_stor: CacheStor, kind: str
) -> None:
    value = UNUSUAL[kind]()

    @memory_stor.cache(folder="cache/unusual")
    def apply(x: int) -> int:
        assert value is not None
        return x

    try:
        assert [apply(1), apply(1)] == [1, 1]
    except TypeError as error:
        assert "apply()" in str(error)
        assert "'value'" in str(error)


SELF_REFERRING = """
class Worker:
    '''A callable object that picks its implementation once.'''
    def __init__(self, fast):
        self.impl = self.fast if fast else self.slow

    def fast(self, x):
        return x * 2

    def slow(self, x):
        return x + x

    def __call__(self, x):
        return self.impl(x)

def make(worker):
    @stor.cache(folder="cache/workers")
    def work(x):
        runs.append(x)
        return worker(x)
    return work
"""


def test_a_captured_callable_holding_its_own_bound_method_is_cached(
    memory_stor: CacheStor, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load(monkeypatch, memory_stor, SELF_REFERRING)
    work = job.make(job.Worker(True))
    assert [work(2), work(2)] == [4, 4]
    assert job.runs == [2]


def test_a_deep_pipeline_of_captured_closures_is_cached_and_kept_apart(
    memory_stor: CacheStor,
) -> None:
    def compose(first: Callable[[int], int], then: Callable[[int], int]) -> Callable[[int], int]:
        def composed(x: int) -> int:
            return then(first(x))

        return composed

    def pipeline(step: int) -> Callable[[int], int]:
        function: Callable[[int], int] = lambda x: x  # noqa: E731
        for _ in range(100):
            function = compose(function, lambda x: x + step)
        return memory_stor.cache(folder="cache/pipelines")(function)

    ones, twos = pipeline(1), pipeline(2)
    assert [ones(0), twos(0), ones(0), twos(0)] == [100, 200, 100, 200]
    assert [ones.cache_info(), twos.cache_info()] == [(1, 1), (1, 1)]


def test_captured_values_are_read_at_the_first_call_only(memory_stor: CacheStor) -> None:
    reads: list[int] = []

    class Counted:
        """Counts how often it is pickled (what hashing a captured value does)."""

        def __reduce__(self) -> tuple[Any, ...]:
            reads.append(1)
            return (int, (7,))

    counted = Counted()

    @memory_stor.cache(folder="cache/once")
    def apply(x: int) -> int:
        assert counted is not None
        return x

    assert apply(1) == 1
    first = len(reads)
    assert first >= 1
    assert [apply(1), apply(2), apply(3), apply(2)] == [1, 2, 3, 2]
    assert len(reads) == first


# --- round 2: where a class is defined -------------------------------------------------------

SHIFTS = """
def make(k):
    class Shift:
        def __init__(self, x):
            runs.append((k, x))
            self.value = x + k
    return Shift
"""


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("a-module", id="a-module"),
        pytest.param(
            "a-module-named-like-the-stdlib",
        ),
        pytest.param(
            "exec-without-a-module",
        ),
    ],
)
def test_classes_made_by_one_factory_never_share_wherever_they_are_defined(
    memory_stor: CacheStor, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "exec-without-a-module":
        namespace: dict[str, Any] = {"runs": []}
        exec(textwrap.dedent(SHIFTS), namespace)
        make = namespace["make"]
    else:
        name = "statistics" if where == "a-module-named-like-the-stdlib" else "shifts"
        make = load(monkeypatch, memory_stor, SHIFTS, name=name).make
    one = memory_stor.cache(folder="cache/shifts")(make(1))
    ten = memory_stor.cache(folder="cache/shifts")(make(10))
    assert [one(1).value, ten(1).value, one(1).value, ten(1).value] == [2, 11, 2, 11]


# --- round 3 ----------------------------------------------------------------------------------
# A second review's findings: wrappers that copy a cached function's attributes, numbering in
# the walk, class internals, descriptors, and runs that must hit whatever the hash seed.


def scaled_by(k: int) -> Callable[[Callable[[int], int]], Callable[[int], int]]:
    """An everyday decorator factory: functools.wraps copies the wrapped function's __dict__."""

    def decorate(function: Callable[[int], int]) -> Callable[[int], int]:
        @functools.wraps(function)
        def wrapper(x: int) -> int:
            return function(x) * k

        return wrapper

    return decorate


def test_wrappers_around_a_cached_function_never_share(memory_stor: CacheStor) -> None:
    @memory_stor.cache(folder="cache/base")
    def base(x: int) -> int:
        return x + 1

    def make_job(step: Callable[[int], int]) -> Callable[[int], int]:
        @memory_stor.cache(folder="cache/job")
        def job(x: int) -> int:
            return step(x)

        return job

    assert [make_job(scaled_by(2)(base))(10), make_job(scaled_by(3)(base))(10)] == [22, 33]


def test_wrappers_around_a_singledispatch_function_never_share(memory_stor: CacheStor) -> None:
    @functools.singledispatch
    def area(shape: Any) -> int:
        return 0

    @area.register
    def _(side: int) -> int:
        return side * side

    doubled = memory_stor.cache(folder="cache/area")(scaled_by(2)(area))
    tripled = memory_stor.cache(folder="cache/area")(scaled_by(3)(area))
    assert [doubled(4), tripled(4)] == [32, 48]


def test_a_function_met_first_inside_a_refused_class_attribute_is_still_described(
    memory_stor: CacheStor,
) -> None:
    def make(k: int) -> Callable[[int], int]:
        def scale(x: int) -> int:
            return x * k

        class Registry:  # a lock beside it: the attribute counts by its type only
            handlers: ClassVar[list[Any]] = [scale, threading.Lock()]

        @memory_stor.cache(folder="cache/registry")
        def apply(x: int) -> int:
            assert Registry.handlers
            return scale(x)

        return apply

    assert [make(1)(5), make(2)(5)] == [5, 10]


def test_private_class_attributes_are_part_of_a_class(memory_stor: CacheStor) -> None:
    def make(k: int) -> type:
        class Scaled:
            _factor = k

            def __init__(self, x: int) -> None:
                self.value = x * self._factor

        return Scaled

    made = [memory_stor.cache(folder="cache/private")(make(k))(5).value for k in (1, 2)]
    assert made == [5, 10]


def test_functions_kept_in_a_wrappers_attributes_never_share(memory_stor: CacheStor) -> None:
    def make(implementation: Callable[[int], int]) -> Callable[[int], int]:
        def run(x: int) -> int:
            return run.impl(x)  # type: ignore[attr-defined, no-any-return]

        run.impl = implementation  # type: ignore[attr-defined]
        return memory_stor.cache(folder="cache/held")(run)

    assert [make(lambda x: x * 2)(3), make(lambda x: x + 4)(3)] == [6, 7]


def test_builtin_class_methods_can_be_decorated(memory_stor: CacheStor) -> None:
    from_keys = memory_stor.cache(folder="cache/builtin")(dict.fromkeys)
    from_hex = memory_stor.cache(folder="cache/builtin")(bytes.fromhex)
    assert [from_keys("ab"), from_keys("ab"), from_hex("ff")] == [
        {"a": None, "b": None},
        {"a": None, "b": None},
        b"\xff",
    ]
    assert from_keys.cache_info() == (1, 1)


def test_a_cached_function_cached_again_refuses_calls_in_its_own_words(
    memory_stor: CacheStor,
) -> None:
    @memory_stor.cache(folder="cache/inner")
    def power(x: int, n: int) -> int:
        return x**n

    outer = memory_stor.cache(folder="cache/outer")(power)
    assert [outer(3, 2), outer(3, 2), outer.cache_info().hits] == [9, 9, 1]
    with pytest.raises(TypeError) as refused:
        outer(3)  # type: ignore[call-arg]
    # Python's words for power itself, not for the cache's wrapper.
    message = str(refused.value)
    assert message.endswith("<locals>.power() missing 1 required positional argument: 'n'")


DISPATCH_TABLE = """
import json, sys
from my_cache import CacheStor

stor = CacheStor()

def add(x): return x + 1
def mul(x): return x * 2
def neg(x): return -x
OPERATIONS = {"add": add, "mul": mul, "neg": neg}

def build(enabled):  # a set, as read from a config file: its order follows the hash seed
    table = {name: OPERATIONS[name] for name in enabled}
    @stor.cache(folder="cache/table")
    def run(name, x):
        return table[name](x)
    return run

run = build({"add", "mul", "neg"})
print(json.dumps([run("add", 1), run("mul", 1), run.cache_info().hits]))
"""


def test_a_captured_dispatch_table_hits_whatever_the_hash_seed(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    first = ran(run_python(DISPATCH_TABLE, env={**lasting_env, "PYTHONHASHSEED": "1"}))
    later = [
        ran(run_python(DISPATCH_TABLE, env={**lasting_env, "PYTHONHASHSEED": seed}))
        for seed in "2345"
    ]
    assert first == [2, 2, 0]
    assert later == [[2, 2, 2]] * 4


ATTRS_CLASS = """
import json
import attrs
from my_cache import CacheStor

stor = CacheStor()

@attrs.frozen
class Point:  # attrs writes hash(<a string>) into the __hash__ it generates
    x: int
    y: int

make_point = stor.cache(folder="cache/points")(Point)
make_point(1, 2)
print(json.dumps(make_point.cache_info().hits))
"""


def test_an_attrs_class_hits_whatever_the_hash_seed(
    run_python: RunPython, lasting_env: dict[str, str]
) -> None:
    runs = [
        ran(run_python(ATTRS_CLASS, env={**lasting_env, "PYTHONHASHSEED": seed}))
        for seed in "123"
    ]
    assert runs == [0, 1, 1]


DESCRIPTORS = """
import functools

class lazy:  # a cached property as Django and werkzeug write it
    def __init__(self, func):
        self.func = func
    def __get__(self, obj, cls):
        if obj is None:
            return self
        value = obj.__dict__[self.func.__name__] = self.func(obj)
        return value

class Shape:
    def __init__(self, side):
        self.side = side
        self.area_now = self.area
        self.scaled = self.scale(2)

    @lazy
    def area(self):
        return self.side OP self.side

    @functools.singledispatchmethod
    def scale(self, k):
        return self.side OP k
"""

DESCRIPTORS_RUN = """
import json, sys
sys.path.insert(0, ".")
from my_cache import CacheStor
import shapes

stor = CacheStor()
make = stor.cache(folder="cache/shapes")(shapes.Shape)
shape = make(3)
print(json.dumps([shape.area_now, shape.scaled, make.cache_info().hits]))
"""


def test_methods_behind_descriptors_are_part_of_a_decorated_class(
    run_python: RunPython, lasting_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**lasting_env, "PYTHONDONTWRITEBYTECODE": "1"}
    (tmp_path / "shapes.py").write_text(DESCRIPTORS.replace("OP", "*"))
    assert ran(run_python(DESCRIPTORS_RUN, env=env)) == [9, 6, 0]
    assert ran(run_python(DESCRIPTORS_RUN, env=env)) == [9, 6, 1]
    (tmp_path / "shapes.py").write_text(DESCRIPTORS.replace("OP", "+"))
    assert ran(run_python(DESCRIPTORS_RUN, env=env)) == [6, 5, 0]


def test_a_captured_library_class_is_cached_with_the_json_serialiser() -> None:
    # pydantic's own methods have defaults JSON cannot hold (PydanticUndefined): those count
    # by their type, as a class's unrepresentable attributes do, instead of a refusal.
    import pydantic

    class Model(pydantic.BaseModel):
        name: str

    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, serialiser=SerialiseJson())

    @stor.cache(folder="cache/models")
    def build(name: str) -> str:
        return Model(name=name).name

    assert [build("a"), build("a"), build.cache_info().hits] == ["a", "a", 1]
    stor.close()
