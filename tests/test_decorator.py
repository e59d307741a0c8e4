"""The sync decorator, as a user sees it: values, how often the function ran, files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, SerialiseJson, TypeStorage

from helpers import threads_waiting_in_flight, wait_until


def test_repeat_call_returns_the_stored_result_without_running(stor: CacheStor) -> None:
    runs: list[int] = []

    @stor.cache(folder="cache/double")
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    assert double(21) == 42
    assert double(21) == 42
    assert double(4) == 8
    assert runs == [21, 4]


def test_equivalent_calls_are_one_entry(stor: CacheStor) -> None:
    runs: list[tuple[int, int, int]] = []

    @stor.cache(folder="cache/f")
    def f(a: int, b: int = 2, *, c: int = 3) -> int:
        runs.append((a, b, c))
        return a + b + c

    assert {f(1), f(1, 2), f(a=1), f(b=2, a=1), f(1, c=3), f(c=3, a=1, b=2)} == {6}
    assert runs == [(1, 2, 3)]
    f(1, 3)
    f(1, c=4)
    assert runs == [(1, 2, 3), (1, 3, 3), (1, 2, 4)]


def test_seed_example_keyword_order_does_not_matter(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/example")
    def example(param1: str, param2: bool = False, param3: bool = False) -> str:
        nonlocal runs
        runs += 1
        return f"result - {param1=},{param2=},{param3=}"

    first = example("param2", param3=True, param2=False)
    assert example("param2", param2=False, param3=True) == first
    assert example(param3=True, param1="param2") == first
    assert runs == 1


def test_var_positional_and_var_keyword_arguments(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/v")
    def v(a: int, /, *rest: int, **options: int) -> int:
        nonlocal runs
        runs += 1
        return a + sum(rest) + sum(options.values())

    assert v(1, 2, 3, x=1, y=2) == 9
    assert v(1, 2, 3, y=2, x=1) == 9
    assert runs == 1
    assert v(1, 2, 3, x=1) == 7
    assert v(1, a=5) == 6  # "a" reaches **options: positional-only names are free there
    assert runs == 3


def test_keyword_only_parameters_after_var_positional_ones(stor: CacheStor) -> None:
    runs: list[tuple[int, tuple[int, ...], int]] = []

    @stor.cache(folder="cache/g")
    def g(a: int, *rest: int, c: int = 3) -> tuple[int, tuple[int, ...], int]:
        runs.append((a, rest, c))
        return (a, rest, c)

    assert g(1, 2, c=3) == g(1, 2) == g(1, 2, c=3) == (1, (2,), 3)
    assert len(runs) == 1 and g.cache_info().hits == 2
    assert g(1, 2, c=4) == (1, (2,), 4) and len(runs) == 2
    assert g.invalidate(1, 2, c=3) is True
    assert g(1, 2) == (1, (2,), 3) and len(runs) == 3


def test_a_stored_none_is_a_hit(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/nothing")
    def nothing(x: int) -> None:
        nonlocal runs
        runs += 1

    assert nothing(1) is None
    assert nothing(1) is None
    assert runs == 1


def test_exceptions_propagate_and_are_never_cached(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/flaky")
    def flaky(x: int) -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionError("first call fails")
        return x

    with pytest.raises(ConnectionError, match="first call fails"):
        flaky(7)
    assert flaky(7) == 7
    assert flaky(7) == 7
    assert runs == 2


def test_two_functions_in_one_folder_never_share_results(stor: CacheStor) -> None:
    @stor.cache(folder="cache/shared")
    def add_one(x: int) -> int:
        return x + 1

    @stor.cache(folder="cache/shared")
    def add_two(x: int) -> int:
        return x + 2

    assert add_one(1) == 2
    assert add_two(1) == 3
    assert add_one(1) == 2


def test_concurrent_equivalent_calls_run_the_function_once(stor: CacheStor) -> None:
    threads_count = 8
    started = threading.Event()
    release = threading.Event()
    runs = 0

    @stor.cache(folder="cache/slow", ignore=["started", "release"])
    def slow(x: int) -> dict[str, int]:
        nonlocal runs
        runs += 1
        started.set()
        assert release.wait(timeout=30)
        return {"x": x}

    results: list[dict[str, int]] = []

    def call() -> None:
        results.append(slow(5))

    threads = [threading.Thread(target=call) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    assert started.wait(timeout=30)
    # Hold the first computation until every other thread is waiting on it.
    assert wait_until(lambda: threads_waiting_in_flight() == threads_count - 1)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert runs == 1
    assert results == [{"x": 5}] * threads_count


def test_a_waiter_computes_itself_when_the_first_computation_raises(stor: CacheStor) -> None:
    entered = threading.Event()
    release = threading.Event()
    runs = 0

    @stor.cache(folder="cache/fails_once", ignore=["entered", "release"])
    def fails_once() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            entered.set()
            assert release.wait(timeout=30)
            raise RuntimeError("boom")
        return "ok"

    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(fails_once())
        except RuntimeError as error:
            outcomes.append(error)

    first = threading.Thread(target=call)
    first.start()
    assert entered.wait(timeout=30)
    second = threading.Thread(target=call)
    second.start()
    assert wait_until(lambda: threads_waiting_in_flight() == 1)
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert [type(o).__name__ for o in outcomes] == ["RuntimeError", "str"]
    assert runs == 2


def test_wraps_keeps_name_doc_and_wrapped(stor: CacheStor) -> None:
    def documented(x: int) -> int:
        """Doubles x."""
        return 2 * x

    cached = stor.cache(folder="cache/d")(documented)
    assert cached.__name__ == "documented"
    assert cached.__doc__ == "Doubles x."
    assert cached.__wrapped__ is documented  # type: ignore[attr-defined]


def refusal(call: Any) -> str:
    with pytest.raises(TypeError) as raised:
        call()
    return str(raised.value)


def test_a_call_the_function_refuses_raises_its_type_error(stor: CacheStor) -> None:
    def g(a: int, /, b: int = 0, *, c: int, **rest: int) -> int:
        return a + b + c

    class Scaler:
        def scale(self, x: int, factor: int = 2) -> int:
            return x * factor

    cached_g, scaler = stor.cache(folder="cache/g")(g), Scaler()
    cached_scale = stor.cache(folder="cache/s", ignore=["self"])(scaler.scale)
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (g, (1,), {}),
        (g, (1, 2, 3), {"c": 3}),
        (g, (), {"a": 1, "c": 3}),
        (g, (1, 2), {"b": 2, "c": 3}),
        (scaler.scale, (), {}),
        (scaler.scale, (1, 2, 3), {}),
        (scaler.scale, (1,), {"y": 1}),
        (scaler.scale, (1,), {"x": 1}),
    ]
    for function, args, kwargs in calls:
        cached = cached_g if function is g else cached_scale
        # Word for word what Python says of the undecorated function, in every version.
        expected = refusal(lambda f=function, a=args, k=kwargs: f(*a, **k))
        assert refusal(lambda f=cached, a=args, k=kwargs: f(*a, **k)) == expected


def test_an_argument_the_serialiser_cannot_encode_names_function_and_argument(
    tmp_path: Path,
) -> None:
    stor = CacheStor(type_storage=TypeStorage.IN_MEMORY, serialiser=SerialiseJson())

    @stor.cache(folder="cache/j")
    def j(data: Any) -> int:
        return 1

    with pytest.raises(TypeError) as raised:
        j(object())
    message = str(raised.value)
    assert "j()" in message
    assert "SerialiseJson" in message
    assert "'data'" in message


def test_coroutine_functions_are_refused_at_decoration(stor: CacheStor) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="fetch is a coroutine function: decorate it with cache"):
        stor.cache(folder="cache/a")(fetch)


@pytest.mark.parametrize("folder", ["", None, 3])
def test_folder_must_be_a_path(stor: CacheStor, folder: Any) -> None:
    with pytest.raises(ValueError, match="folder must be a non-empty path"):
        stor.cache(folder=folder)


def test_a_result_that_cannot_be_stored_is_returned_and_not_cached(stor: CacheStor) -> None:
    runs = 0

    @stor.cache(folder="cache/gen")
    def numbers(n: int) -> Iterator[int]:
        nonlocal runs
        runs += 1
        return (i for i in range(n))

    with capture_logs() as events:
        assert list(numbers(3)) == [0, 1, 2]
        assert list(numbers(3)) == [0, 1, 2]
    assert runs == 2
    warnings = [e for e in events if e["event"] == "my_cache.unstorable_result"]
    assert len(warnings) == 2
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["function"].endswith("numbers")


def test_in_memory_creates_no_files(tmp_path: Path) -> None:
    stor = CacheStor()  # the defaults: IN_MEMORY with db_file="cache/my.db"
    assert stor.type_storage is TypeStorage.IN_MEMORY

    @stor.cache(folder="cache/m")
    def m(x: int) -> int:
        return x

    assert m(1) == m(1) == 1
    stor.close()
    assert list(tmp_path.iterdir()) == []


def test_in_disk_results_persist_across_processes(run_python: Any, tmp_path: Path) -> None:
    program = """
        from my_cache import CacheStor, TypeStorage

        cache_stor = CacheStor(db_file="cache/my.db", type_storage=TypeStorage.IN_DISK)

        @cache_stor.cache(folder="cache/square")
        def square(n):
            print("computing", n)
            return {"n": n, "square": n * n}

        print(square(3), square(4), square(3))
    """
    first = run_python(program)
    second = run_python(program)
    assert first.stdout.splitlines() == [
        "computing 3",
        "computing 4",
        "{'n': 3, 'square': 9} {'n': 4, 'square': 16} {'n': 3, 'square': 9}",
    ]
    assert second.stdout.splitlines() == [first.stdout.splitlines()[-1]]
    assert (tmp_path / "cache" / "square").is_dir()
    assert (tmp_path / "cache" / "my.db").is_file()


def test_in_memory_results_live_in_the_process_only(run_python: Any) -> None:
    program = """
        from my_cache import CacheStor

        cache_stor = CacheStor()

        @cache_stor.cache(folder="cache/square")
        def square(n):
            print("computing", n)
            return n * n

        print(square(3), square(3))
    """
    assert run_python(program).stdout == "computing 3\n9 9\n"
    assert run_python(program).stdout == "computing 3\n9 9\n"
