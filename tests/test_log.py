"""The debug log: one structlog event per hit, miss and write; silence when it is off."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import diskcache
import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage


def make_square(stor: CacheStor, runs: list[int]) -> Any:
    @stor.cache(folder="cache/square")
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    return square


def test_each_hit_miss_and_write_is_one_event(stor: CacheStor) -> None:
    stor.is_debug_log = True
    square = make_square(stor, [])
    with capture_logs() as events:
        square(3)
        square(3)
    assert [e["event"] for e in events] == ["my_cache.miss", "my_cache.write", "my_cache.hit"]
    for event in events:
        assert event["log_level"] == "debug"
        assert event["folder"] == str(Path("cache/square").resolve())
        assert event["function"].endswith("make_square.<locals>.square")
        assert len(event["key"]) == 12
        assert event["elapsed_ms"] >= 0
    assert len({e["key"] for e in events}) == 1


def test_no_events_when_debug_is_off(stor: CacheStor) -> None:
    square = make_square(stor, [])
    with capture_logs() as events:
        square(3)
        square(3)
    assert events == []


def test_warnings_are_emitted_with_debug_off(disk_stor: CacheStor) -> None:
    runs: list[int] = []
    square = make_square(disk_stor, runs)
    assert square(5) == 25
    disk_stor.close()
    folder = Path("cache/square").resolve()
    with diskcache.Cache(str(folder)) as raw:
        (key,) = list(raw.iterkeys())
        raw.set(key, b"not a pickle")

    with capture_logs() as events:
        assert square(5) == 25  # recomputed: the damaged entry is never returned
    assert runs == [5, 5]
    assert [(e["event"], e["log_level"]) for e in events] == [("my_cache.damaged_entry", "warning")]
    assert events[0]["folder"] == str(folder)
    assert square(5) == 25  # and stored again
    assert runs == [5, 5]


PROGRAM = """
    import structlog
    from my_cache import CacheStor, TypeStorage

    cache_stor = CacheStor(db_file="cache/my.db", type_storage=TypeStorage.IN_DISK)

    @cache_stor.cache(folder="cache/square")
    def square(n):
        return n * n

    print(square(3), square(3))
    assert not structlog.is_configured(), "my_cache configured structlog"
"""


def test_with_debug_off_the_library_prints_nothing(run_python: Any) -> None:
    result = run_python(PROGRAM)
    assert result.stdout == "9 9\n"
    assert result.stderr == ""


def test_with_debug_on_events_go_to_stderr_and_structlog_stays_unconfigured(
    run_python: Any,
) -> None:
    result = run_python(PROGRAM, env={"MYCACHE_IS_DEBUG_LOG": "true"})
    assert result.stdout == "9 9\n"
    lines = result.stderr.splitlines()
    assert [next(w for w in line.split() if w.startswith("my_cache.")) for line in lines] == [
        "my_cache.miss",
        "my_cache.write",
        "my_cache.hit",
    ]
    # The script's functions are named by its path (run_python writes it into tmp_path).
    assert all(re.search(r"function=\S+/script_\w+\.py:square", line) for line in lines)


def test_events_follow_the_applications_structlog_configuration(run_python: Any) -> None:
    program = """
        import json, sys
        import structlog
        from my_cache import CacheStor

        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        )
        cache_stor = CacheStor(is_debug_log=True)

        @cache_stor.cache(folder="cache/square")
        def square(n):
            return n * n

        square(2)
    """
    result = run_python(program)
    assert result.stderr == ""
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == [
        "my_cache.miss",
        "my_cache.write",
    ]


@pytest.mark.parametrize("type_storage", [TypeStorage.IN_MEMORY, TypeStorage.IN_DISK])
def test_debug_can_be_switched_on_later(tmp_path: Path, type_storage: TypeStorage) -> None:
    stor = CacheStor(db_file=tmp_path / "c.db", type_storage=type_storage)
    square = make_square(stor, [])
    square(1)
    stor.is_debug_log = True
    with capture_logs() as events:
        square(1)
    assert [e["event"] for e in events] == ["my_cache.hit"]
    stor.close()
