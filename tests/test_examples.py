"""The examples, run as a user runs them: a real process, in a fresh folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_simple_use_cache_computes_once_then_reads_the_disk(tmp_path: Path) -> None:
    result_line = "result - param1='param2',param2=False,param3=True"
    first = run_example("simple_use_cache.py", tmp_path)
    assert first.stdout.splitlines() == [
        "param1='param2',param2=False,param3=True",
        result_line,
        result_line,
    ]
    second = run_example("simple_use_cache.py", tmp_path)
    assert second.stdout.splitlines() == [result_line, result_line]
    assert (tmp_path / "cache" / "my.db").is_file()
    assert (tmp_path / "cache" / "example").is_dir()


def test_config_driven_takes_everything_from_mycache_toml(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mycache.toml", tmp_path)
    result = run_example("config_driven.py", tmp_path, MYCACHE_IS_DEBUG_LOG="1")
    script = (ROOT / "examples" / "config_driven.py").resolve()
    assert result.stdout.splitlines() == [
        "CacheStor(db_file='cache/my.db', type_storage=TypeStorage.IN_DISK, "
        "is_debug_log=True, serialiser=SerialiseJson)",
        "computing square(2)",
        "computing square(3)",
        "[4, 9, 4, 9]",
        # A script's functions are named by its path: two scripts never share entries.
        f'catalogued: {script}:square {{"args":[],"kwargs":{{"n":2}}}} (16 bytes)',
        f'catalogued: {script}:square {{"args":[],"kwargs":{{"n":3}}}} (16 bytes)',
    ]
    events = [word for word in result.stderr.split() if word.startswith("my_cache.")]
    assert events == ["my_cache.miss", "my_cache.write"] * 2 + ["my_cache.hit"] * 2


def test_use_async_cache_runs_the_coroutine_once_then_reads_the_disk(tmp_path: Path) -> None:
    value = "param1='param1',param2=False,param3=True"
    result = str([value, value])
    first = run_example("use_async_cache.py", tmp_path)
    assert first.stdout.splitlines() == [
        "nested param1='param1',param2=False,param3=True",
        result,
        "all done",
    ]
    second = run_example("use_async_cache.py", tmp_path)
    assert second.stdout.splitlines() == [result, "all done"]


def test_the_async_crash_test_executes_each_key_once(tmp_path: Path) -> None:
    first = run_example("use_async_cache_crash_test.py", tmp_path)
    assert first.stdout.splitlines()[-1] == "executions: 100"
    second = run_example("use_async_cache_crash_test.py", tmp_path)
    assert second.stdout.splitlines()[-1] == "executions: 0"
