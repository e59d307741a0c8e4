"""Large values beside joblib.Memory and diskcache: arrays and data frames, as results and
as arguments. Each number is the median of ``--runs`` fresh processes (a miss in one, then a
hit in the next, on the same folder), the systems taking turns. Times in seconds; memory as
the peak resident memory during the call over the result's size (for a miss, above the
result, which the function made). Arguments are made before the call: no memory column.

    python benchmarks/large_values.py            # part of `make bench`
    python benchmarks/large_values.py --quick    # smaller sizes, one run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SYSTEMS = ("my_cache", "joblib", "diskcache")

# On a virtual machine that gives freed memory back to its host (virtio-balloon's free page
# reporting, a few seconds after it is freed), a process that meets such memory faults its
# pages in from the host: a 200 MB hit took 0.15-0.45 s then, against 0.02 s on memory used
# an instant before, whichever system ran, and which process met which was luck (medians
# swung 0.25-5x between runs). So each large measured process starts right after one that
# used twice its memory: every system meets memory the host still backs, as in a program
# that has been working.
WARM_UP = "import numpy; numpy.ones({} // 8)"

# One cached call in a fresh process: prints {"seconds": ..., "memory": ...}.
WORKER = r"""
import json, sys, time
import numpy as np
import pandas as pd

system, scenario, size, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def frame(rows):
    return pd.DataFrame({
        "i": np.arange(rows, dtype=np.int64),
        "f": np.linspace(0, 1, rows),
        "s": [f"row {n}" for n in range(rows)],
        "c": pd.Categorical(["a", "b", "c"] * (rows // 3) + ["a"] * (rows % 3)),
        "t": pd.date_range("2026-01-01", periods=rows, freq="s", tz="Europe/Paris"),
        "d": pd.to_timedelta(np.arange(rows), unit="ms"),
    })


def make(n):
    if scenario == "array":
        return np.full(n, 1.5)
    if scenario == "frame":
        return frame(n)
    return float(np.sum(n)) if scenario == "array-argument" else len(n)


if system == "my_cache":
    from my_cache import CacheStor
    stor = CacheStor(db_file=f"{folder}/my.db", type_storage="in_disk")
    cached = stor.cache(folder=f"{folder}/values", version=1)(make)
elif system == "joblib":
    import joblib
    cached = joblib.Memory(folder, verbose=0).cache(make)
else:
    import diskcache
    cached = diskcache.Cache(folder).memoize()(make)

if scenario == "array-argument":
    argument = np.random.default_rng(0).random(size // 8)
elif scenario == "frame-argument":
    argument = frame(size)
else:
    argument = size // 8 if scenario == "array" else size
nbytes = size


def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


# Resident memory, as the system counts it: anonymous mappings too, which tracemalloc
# misses. The peak is VmHWM: ru_maxrss carries over the parent's through fork and exec.
base = status("VmRSS")
repeat = 20 if scenario.endswith("argument") else 1
started = time.perf_counter()
for _ in range(repeat):
    result = cached(argument)
seconds = (time.perf_counter() - started) / repeat
peak = status("VmHWM")
if scenario == "frame":
    nbytes = int(result.memory_usage(deep=True).sum())
print(json.dumps({"seconds": seconds, "memory": (peak - base) / nbytes}))
"""


def measure_all(
    systems: tuple[str, ...], scenario: str, size: int, runs: int, warm_up: int = 0
) -> Any:
    """``measure`` for each system, the systems taking turns run by run, each run starting
    with another one: whichever runs first pays the most for the kernel's reclaiming of
    the page cache the one before filled."""
    samples: dict[str, dict[str, list[float]]] = {system: {} for system in systems}
    for run in range(runs):
        for turn in range(len(systems)):
            system = systems[(run + turn) % len(systems)]
            measure(system, scenario, size, samples[system], warm_up)
    return {
        system: {name: statistics.median(values) for name, values in measured.items()}
        for system, measured in samples.items()
    }


def measure(
    system: str, scenario: str, size: int, samples: dict[str, list[float]], warm_up: int
) -> None:
    """Add the miss and hit seconds and memory ratios of a pair of processes to ``samples``,
    each started right after one that used ``warm_up`` bytes (see WARM_UP), if any."""
    folder = tempfile.mkdtemp(prefix="mycache-large-")
    try:
        for phase in ("miss", "hit"):
            # The dirty pages of the last write are flushed first: whoever ran after a large
            # write was otherwise throttled by the kernel for the other's data.
            os.sync()
            if warm_up:
                subprocess.run([sys.executable, "-c", WARM_UP.format(warm_up)], check=True)
            done = subprocess.run(
                [sys.executable, "-c", WORKER, system, scenario, str(size), folder],
                capture_output=True,
                text=True,
                cwd=folder,  # not the project's mycache.toml
            )
            if done.returncode != 0:
                sys.exit(f"{system} {scenario} {phase} failed:\n{done.stderr}")
            result = json.loads(done.stdout)
            samples.setdefault(f"{phase} s", []).append(result["seconds"])
            samples.setdefault(f"{phase} mem", []).append(result["memory"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


ASYNC_PAUSES = r"""
import asyncio, json, sys
import numpy as np
from loop_pauses import longest_loop_pause
from my_cache import CacheStor

kind, folder = sys.argv[1], sys.argv[2]


def result():
    if kind == "objects":  # 1M small Python objects: pickling them holds the GIL
        return [(n, str(n)) for n in range(1_000_000)]
    return np.random.default_rng(0).random(2_000_000)  # 16 MB


def make():
    stor = CacheStor(db_file=f"{folder}/my.db")

    @stor.cache_async(folder=f"{folder}/a", version=1)
    async def value(n):
        return made

    return stor, value


made = result()


async def write():
    stor, value = make()
    await value(1)
    await stor.join()


async def read():
    stor, value = make()
    await value(1)


pauses = [asyncio.run(longest_loop_pause(work)) for work in (write, read)]
print(json.dumps(pauses))
"""


def async_pauses() -> list[tuple[str, float, float]]:
    """The event loop's longest pause while cache_async writes, then reads, each result."""
    rows = []
    here = str(Path(__file__).resolve().parent)
    for kind, label in (("objects", "1M small objects"), ("array", "16 MB array")):
        folder = tempfile.mkdtemp(prefix="mycache-pauses-")
        try:
            done = subprocess.run(
                [sys.executable, "-c", ASYNC_PAUSES, kind, folder],
                capture_output=True,
                text=True,
                cwd=folder,
                env={**os.environ, "PYTHONPATH": here},
            )
            if done.returncode != 0:
                sys.exit(f"async pauses ({kind}) failed:\n{done.stderr}")
            write, read = json.loads(done.stdout)
            rows.append((label, write, read))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument(
        "--only", metavar="TEXT", help="only the scenarios whose label holds TEXT (no pauses)"
    )
    options = parser.parse_args()
    runs = 1 if options.quick else options.runs
    mb = 1_000_000
    scenarios = [
        ("array", 20 * mb if options.quick else 200 * mb, "200 MB float64 array result"),
        ("array", 100 * mb if options.quick else 1000 * mb, "1 GB float64 array result"),
        ("array-argument", 10 * mb, "10 MB array argument"),
        ("frame", 100_000 if options.quick else 1_000_000, "1M-row DataFrame result"),
        ("frame-argument", 100_000 if options.quick else 1_000_000, "1M-row DataFrame argument"),
    ]
    ratios: list[tuple[str, float, float | None]] = []
    header = f"{'scenario':32} {'system':10} {'miss s':>8} {'hit s':>8} {'miss mem':>9}"
    print(f"{header} {'hit mem':>8}")
    if options.only:
        scenarios = [row for row in scenarios if options.only in row[2]]
    for scenario, size, label in scenarios:
        if label.startswith("1 GB"):
            systems: tuple[str, ...] = ("my_cache", "joblib")  # diskcache holds it 3 times
        else:
            systems = SYSTEMS
        # Large results meet memory the host still backs (see WARM_UP): twice theirs (a
        # frame's row takes about 150 bytes).
        warm_up = {"array": 2 * size, "frame": 300 * size}.get(scenario, 0)
        results = measure_all(systems, scenario, size, runs, warm_up)
        for system, result in results.items():
            memory = (
                f"{result['miss mem'] - 1:+9.2f} {result['hit mem']:8.2f}"
                if scenario in ("array", "frame")
                else f"{'-':>9} {'-':>8}"  # the argument is made before: nothing to compare
            )
            print(f"{label:32} {system:10} {result['miss s']:8.3f} {result['hit s']:8.4f} {memory}")
        mine, joblib = results["my_cache"], results["joblib"]
        hit_limit = {"array": 1.0, "array-argument": 0.5, "frame": 1.0}.get(scenario)
        ratios.append((f"{label}: hit / joblib hit", mine["hit s"] / joblib["hit s"], hit_limit))
        if scenario in ("array", "frame"):
            miss_limit = 1.0 if scenario == "array" else None
            miss = mine["miss s"] / joblib["miss s"]
            ratios.append((f"{label}: miss / joblib miss", miss, miss_limit))
        if scenario == "array":  # a frame is arrays and Python strings: no one size to compare
            ratios.append((f"{label}: hit memory / array", mine["hit mem"], 1.15))
            ratios.append((f"{label}: miss memory above it", mine["miss mem"] - 1, 0.25))
    if not options.only:
        print()
        print(f"{'cache_async: longest loop pause, s':36} {'write':>6} {'read':>6}")
        for label, write, read in async_pauses():
            print(f"{label:36} {write:6.3f} {read:6.3f}")
    print()
    print(f"{'target':56} {'ratio':>6} {'limit':>6}")
    for name, ratio, limit in ratios:
        if limit is None:  # measured, no target
            print(f"{name:56} {ratio:6.2f} {'-':>6}")
            continue
        verdict = "ok" if ratio <= limit else "MISSED"
        print(f"{name:56} {ratio:6.2f} {limit:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
