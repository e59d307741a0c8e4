"""Real processes: killed with SIGKILL while writing, and several sharing one cache."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = '''
import asyncio, hashlib, os, random, sys
from my_cache import CacheStor

mode, first, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
storage = os.environ.get("MYCACHE_TYPE_STORAGE", "in_disk")
stor = CacheStor(db_file="cache/catalogue.db", type_storage=storage)
executions = 0


def expected(i):
    seed = hashlib.sha256(str(i).encode()).digest()
    size = (100, 50_000, 300_000)[i % 3]  # inline, file-backed, larger file-backed
    return (seed * (size // 32 + 1))[:size]


@stor.cache(folder="cache/sync")
def value(i):
    global executions
    executions += 1
    return expected(i)


@stor.cache_async(folder="cache/async")
async def async_value(i):
    global executions
    executions += 1
    await asyncio.sleep(0)
    return expected(i)


keys = list(range(first, first + count))
random.Random(seed).shuffle(keys)
if mode == "clear":  # clears racing the writers: count times each function's cache_clear()
    for _ in range(count):
        value.cache_clear()
        async_value.cache_clear()
elif mode == "sync":
    for i in keys:
        assert value(i) == expected(i)
        print(i, flush=True)
else:
    async def main():
        for batch in (keys[n : n + 10] for n in range(0, len(keys), 10)):
            results = await asyncio.gather(*(async_value(i) for i in batch))
            assert results == [expected(i) for i in batch]
            await stor.join()
            print("batch", flush=True)
    asyncio.run(main())
print("executions", executions, flush=True)
'''


def start(tmp_path: Path, mode: str, first: int, count: int, seed: int) -> subprocess.Popen[str]:
    script = tmp_path / "program.py"
    if not script.exists():
        script.write_text(textwrap.dedent(PROGRAM))
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(first), str(count), str(seed)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigkill_during_writes_leaves_every_entry_whole_or_absent(
    tmp_path: Path, mode: str
) -> None:
    chooser = random.Random()
    seed = chooser.randrange(1_000_000)
    chooser.seed(seed)
    for round_ in range(4):
        # Overlapping key ranges: later rounds also overwrite what earlier ones wrote.
        process = start(tmp_path, mode, first=round_ * 40, count=120, seed=seed + round_)
        assert process.stdout is not None
        # Killed after a random number of keys (sync) or joined batches of 10 (async): the
        # next write, or the next batch's writes on the writer threads, are in flight.
        for _ in range(chooser.randrange(5, 100) if mode == "sync" else chooser.randrange(1, 10)):
            process.stdout.readline()
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, f"seed {seed}"

    # Every entry a call can hit is listed: the survivor computes exactly the others.
    listed = len(mycache(tmp_path, "ls", "--json", "--folder", f"cache/{mode}"))
    # The same program, run to the end over every key, checks each value it gets.
    survivor = start(tmp_path, mode, first=0, count=3 * 40 + 120, seed=seed)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, f"seed {seed}: {err}"
    assert err == "", f"seed {seed}"  # no warning: nothing damaged was found
    executions = int(out.splitlines()[-1].split()[1])
    assert listed > 0, f"nothing survived the kills (seed {seed})"
    assert executions == 3 * 40 + 120 - listed, f"seed {seed}"


def mycache(tmp_path: Path, *args: str) -> Any:
    """Run the mycache command on the programs' catalogue; its --json output, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "my_cache", *args, "--db-file", "cache/catalogue.db"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


@pytest.mark.parametrize("storage", ["in_disk", "in_redis"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_clear_after_clears_racing_writers_leaves_nothing_to_hit(
    tmp_path: Path, mode: str, storage: str, request: pytest.FixtureRequest
) -> None:
    if storage == "in_redis":
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("MYCACHE_TYPE_STORAGE", storage)
        monkeypatch.setenv("MYCACHE_REDIS_URL", request.getfixturevalue("redis_url"))
    writers = [start(tmp_path, mode, first=0, count=300, seed=seed) for seed in range(3)]
    clears = 0
    while clears < 2 or any(writer.poll() is None for writer in writers):
        if clears % 2:
            mycache(tmp_path, "clear", "--yes")
        else:
            clearer = start(tmp_path, "clear", first=0, count=3, seed=0)
            assert clearer.communicate(timeout=120)[1] == ""
            assert clearer.returncode == 0
        clears += 1
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    mycache(tmp_path, "clear", "--yes")  # nothing runs beside this one
    assert mycache(tmp_path, "ls", "--json") == []
    last = start(tmp_path, mode, first=0, count=300, seed=99)
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    assert out.splitlines()[-1] == "executions 300"  # every call recomputes


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_four_processes_share_one_cache(tmp_path: Path, mode: str) -> None:
    processes = [start(tmp_path, mode, first=0, count=600, seed=seed) for seed in range(4)]
    executions = 0
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert err == ""  # no warning, no "database is locked"
        executions += int(out.splitlines()[-1].split()[1])
    # Each key ran at least once; equivalent calls in different processes may both run.
    assert 600 <= executions <= 4 * 600
    last = start(tmp_path, mode, first=0, count=600, seed=99)
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    assert out.splitlines()[-1] == "executions 0"


def test_a_clear_killed_part_way_leaves_every_entry_whole_or_gone(tmp_path: Path) -> None:
    filler = start(tmp_path, "sync", first=0, count=600, seed=0)
    assert filler.communicate(timeout=300)[0].splitlines()[-1] == "executions 600"

    def files() -> int:  # os.walk passes over folders removed while it runs
        return sum(len(names) for _, _, names in os.walk(tmp_path / "cache" / "sync"))

    before = files()
    clear = subprocess.Popen(
        [sys.executable, "-m", "my_cache", "clear", "--yes", "--db-file", "cache/catalogue.db"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert wait_until(lambda: files() < before * 0.7 or clear.poll() is not None)
    clear.send_signal(signal.SIGKILL)
    clear.communicate(timeout=60)
    listed = len(mycache(tmp_path, "ls", "--json"))
    assert 0 < listed < 600  # killed part-way
    survivor = start(tmp_path, "sync", first=0, count=600, seed=1)
    out, err = survivor.communicate(timeout=300)
    assert err == ""  # no entry listed without its value file, none damaged
    assert out.splitlines()[-1] == f"executions {600 - listed}"
