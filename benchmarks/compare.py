"""my_cache beside its peers: the same workload, in one process and one run.

A function of ``(int, str, tuple)`` returning a dict of about 1 KB, ``--keys`` distinct keys:
misses (the sync systems' in rounds, taking turns: see MISS_ROUNDS), then the best of
``--hit-passes`` passes of hits, in microseconds per call. Then a scale run (opening a cache
and a hit, with 1,000 and 50,000 entries) and the targets as ratios. Machines are noisy:
compare ratios from one run, not times across runs.

Last, unless ``--no-scale-100k``, the 100k rows: one IN_DISK folder filled with
``--scale-entries`` (100,000) small entries, then ``python -m my_cache stats`` on it, in fresh
subprocesses, in seconds above the command's own start-up (``--help``); and the bytes on disk
beside diskcache's ``Cache.memoize`` holding the same entries.

And, unless ``--no-loop-pauses``, the event loop's longest pause while cache_async writes and
reads 12 x 16 MB results and while a call waits on a silent Redis (``loop_pauses.py``).

    make bench        # installs the peers (the "bench" extra), then runs this
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import pickle
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachetools
import cachier
import diskcache
import joblib
from cashews import Cache as CashewsCache
from loop_pauses import LoopPauses, bench_stor, loop_pauses

from my_cache import CacheStor, SerialiseBin, TypeStorage
from my_cache._keys import make_normaliser

Arguments = list[tuple[int, str, tuple[int, int]]]
Work = Callable[[int, str, tuple[int, int]], dict[str, Any]]
AsyncWork = Callable[[int, str, tuple[int, int]], Awaitable[dict[str, Any]]]


def work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return {"n": n, "name": name, "pair": pair, "payload": "x" * 1000}


async def async_work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return work(n, name, pair)


def calls(keys: int, first: int = 0) -> Arguments:
    return [(i, f"name-{i % 97}", (i, i % 7)) for i in range(first, first + keys)]


def per_call_us(cached: Work, arguments: Arguments) -> float:
    started = time.perf_counter()
    for n, name, pair in arguments:
        cached(n, name, pair)
    return (time.perf_counter() - started) / len(arguments) * 1e6


async def per_await_us(cached: AsyncWork, arguments: Arguments) -> float:
    started = time.perf_counter()
    for n, name, pair in arguments:
        await cached(n, name, pair)
    return (time.perf_counter() - started) / len(arguments) * 1e6


# One call before timing, on a key outside the timed ones: what a system does once (open its
# store, learn a function's identity) is not a per-miss cost; the scale run times opening.
WARM_UP = (-1, "warm-up", (-1, -1))


# Misses are timed in rounds, each system in turn on its share of the keys: a drift of the
# machine's speed during the run (this one's is +-5% over seconds) then falls on every
# system alike, where one pass each, one system after the other, gave it to whichever ran
# then. A system's miss is the median of its rounds.
MISS_ROUNDS = 5


def measure(
    systems: dict[str, Work], arguments: Arguments, hit_passes: int
) -> dict[str, tuple[float, float]]:
    """Each system's µs per miss (see MISS_ROUNDS) and per hit (the best of ``hit_passes``
    passes over every key)."""
    for cached in systems.values():
        cached(*WARM_UP)
    rounds: dict[str, list[float]] = {name: [] for name in systems}
    for first in range(MISS_ROUNDS):
        share = arguments[first::MISS_ROUNDS]
        for name, cached in systems.items():
            rounds[name].append(per_call_us(cached, share))
    return {
        name: (
            statistics.median(rounds[name]),
            min(per_call_us(cached, arguments) for _ in range(hit_passes)),
        )
        for name, cached in systems.items()
    }


async def measure_async(
    cached: AsyncWork, arguments: Arguments, hit_passes: int, settle: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """The miss as the caller sees it; ``settle`` (outside the timing) lets writes land."""
    await cached(*WARM_UP)
    await settle()
    miss = await per_await_us(cached, arguments)
    await settle()
    return miss, min([await per_await_us(cached, arguments) for _ in range(hit_passes)])


def sync_systems(root: Path) -> dict[str, Work]:
    peer = diskcache.Cache(str(root / "diskcache"), eviction_policy="none")
    memory = bench_stor(root / "memory", TypeStorage.IN_MEMORY)
    disk = bench_stor(root / "disk", TypeStorage.IN_DISK)
    return {
        "functools.lru_cache": functools.lru_cache(maxsize=None)(work),
        "cachetools.cached": cachetools.cached(cache={})(work),
        "diskcache memoize": peer.memoize()(work),
        "joblib.Memory": joblib.Memory(root / "joblib", verbose=0).cache(work),
        "cachier (separate files)": cachier.cachier(
            cache_dir=root / "cachier", separate_files=True
        )(work),
        "my_cache IN_MEMORY": memory.cache(folder=root / "memory" / "work")(work),
        "my_cache IN_DISK": disk.cache(folder=root / "disk" / "work")(work),
    }


async def async_results(root: Path, arguments: Arguments, hit_passes: int) -> dict[str, Any]:
    cashews = CashewsCache()
    cashews.setup(f"disk://?directory={root / 'cashews'}&shards=0")
    stor = bench_stor(root / "async", TypeStorage.IN_DISK)

    async def nothing() -> None:
        return None

    try:
        return {
            "cashews (disk)": await measure_async(
                cashews(ttl="1d")(async_work), arguments, hit_passes, nothing
            ),
            "my_cache cache_async": await measure_async(
                stor.cache_async(folder=root / "async" / "work")(async_work),
                arguments,
                hit_passes,
                stor.join,
            ),
        }
    finally:
        stor.close()
        await cashews.close()


def floor_hit_us(root: Path, arguments: Arguments, hit_passes: int) -> float:
    """Normalise and hash the arguments, one SQLite primary-key SELECT, one unpickle. In WAL
    mode, as diskcache opens its database (a read then costs 4.0 us here, against 7.1 us in
    the default rollback mode)."""
    normalise, serialiser = make_normaliser(work), SerialiseBin()
    connection = sqlite3.connect(root / "floor.db")
    connection.execute("PRAGMA journal_mode = wal")
    connection.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB)")
    connection.executemany(
        "INSERT INTO entries VALUES (?, ?)",
        [
            (serialiser._call_hash(*normalise(a, {})), pickle.dumps(work(*a), 5))
            for a in arguments
        ],
    )
    connection.commit()

    def hit(n: int, name: str, pair: tuple[int, int]) -> Any:
        key = serialiser._call_hash(*normalise((n, name, pair), {}))
        (value,) = connection.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return pickle.loads(value)

    return min(per_call_us(hit, arguments) for _ in range(hit_passes))


def cachier_default_miss_us(root: Path, entries: int) -> float:
    """cachier's default mode keeps one pickle file per function, rewritten on every miss."""
    cached = cachier.cachier(cache_dir=root / f"cachier-default-{entries}")(work)
    arguments = calls(entries, first=entries * 1000)
    per_call_us(cached, arguments[: entries - 20])
    return per_call_us(cached, arguments[entries - 20 :])


def scale(root: Path, entries: int, repeats: int = 5) -> tuple[float, float]:
    """Opening an IN_DISK cache holding ``entries`` (to its first hit), and a hit (µs)."""
    folder = root / f"scale-{entries}"
    stor = bench_stor(folder, TypeStorage.IN_DISK)
    fill = stor.cache(folder=folder / "work")(work)
    for n, name, pair in calls(entries):
        fill(n, name, pair)
    stor.close()
    opens = []
    for _ in range(repeats):
        started = time.perf_counter()
        stor = bench_stor(folder, TypeStorage.IN_DISK)
        cached = stor.cache(folder=folder / "work")(work)
        cached(0, "name-0", (0, 0))
        opens.append((time.perf_counter() - started) * 1e6)
        stor.close()
    stor = bench_stor(folder, TypeStorage.IN_DISK)
    cached = stor.cache(folder=folder / "work")(work)
    sample = random.Random(entries).sample(calls(entries), min(entries, 2000))
    hit = min(per_call_us(cached, sample) for _ in range(repeats))
    stor.close()
    return min(opens), hit


def small_work(n: int, name: str) -> str:
    return f"v{n}"


def small_calls(entries: int) -> list[tuple[int, str]]:
    return [(i, f"k{i % 1000}") for i in range(entries)]


@dataclass
class ScaleRows:
    """The 100k rows: ``mycache stats`` on ``entries`` small entries, and their bytes on disk."""

    entries: int
    fill_s: float  # my_cache IN_DISK, every entry a miss through the decorator
    peer_fill_s: float  # diskcache memoize, likewise
    startup_s: float  # median of `python -m my_cache --help`
    stats_s: float  # median of `python -m my_cache stats --db-file ...`
    store_bytes: int  # every file under the folder
    catalogue_bytes: int  # db_file and its -wal and -shm
    peer_bytes: int  # every file under diskcache's directory

    @property
    def stats_above_startup_s(self) -> float:
        return self.stats_s - self.startup_s

    @property
    def disk_bytes(self) -> int:
        return self.store_bytes + self.catalogue_bytes


def bytes_under(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def median_run_s(command: list[str], cwd: Path, repeats: int = 3) -> tuple[float, str]:
    """Median wall time of ``command`` in fresh processes, and the output of its last run.

    The working directory is ``cwd`` and no MYCACHE_* variable is passed on, so no
    mycache.toml or environment setting changes what is measured.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYCACHE_")}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return statistics.median(times), done.stdout


def scale_rows(root: Path, entries: int) -> ScaleRows:
    """Fill an IN_DISK folder and a diskcache memoize with the same ``entries``, then measure."""
    base = root / f"rows-{entries}"
    db_file, folder = base / "my.db", base / "small"
    base.mkdir()
    arguments = small_calls(entries)
    # Every setting is given, so no mycache.toml or MYCACHE_* variable changes what is measured.
    stor = CacheStor(
        db_file=db_file, type_storage=TypeStorage.IN_DISK, serialiser="bin", is_debug_log=False
    )
    fill = stor.cache(folder=folder)(small_work)
    started = time.perf_counter()
    for n, name in arguments:
        fill(n, name)
    fill_s = time.perf_counter() - started
    stor.close()  # checkpoints the WAL

    # eviction_policy="none" as my_cache's own folders use without a size_limit (and as the
    # peer above): no index for eviction on either side.
    peer = diskcache.Cache(str(base / "diskcache"), eviction_policy="none")
    peer_fill = peer.memoize()(small_work)
    started = time.perf_counter()
    for n, name in arguments:
        peer_fill(n, name)
    peer_fill_s = time.perf_counter() - started
    peer.close()

    # Sizes first: listing drops the catalogue rows of entries it no longer finds.
    catalogue = [Path(f"{db_file}{suffix}") for suffix in ("", "-wal", "-shm")]
    store_bytes = bytes_under(folder)
    catalogue_bytes = sum(path.stat().st_size for path in catalogue if path.is_file())
    peer_bytes = bytes_under(base / "diskcache")

    command = [sys.executable, "-m", "my_cache"]
    startup_s, _ = median_run_s([*command, "--help"], cwd=base)
    stats_s, output = median_run_s([*command, "stats", "--db-file", str(db_file)], cwd=base)
    total = [line.split() for line in output.splitlines() if line.startswith("total")]
    if not total or total[0][1] != str(entries):
        raise RuntimeError(f"mycache stats did not count {entries} entries:\n{output}")
    return ScaleRows(
        entries,
        fill_s,
        peer_fill_s,
        startup_s,
        stats_s,
        store_bytes,
        catalogue_bytes,
        peer_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--hit-passes", type=int, default=5)
    parser.add_argument("--scale", type=int, nargs=2, default=[1_000, 50_000])
    parser.add_argument(
        "--scale-100k",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the 100k rows: `mycache stats` time and bytes on disk (default: on)",
    )
    parser.add_argument(
        "--scale-entries",
        type=int,
        default=100_000,
        help="entries of the 100k rows (default: 100000)",
    )
    parser.add_argument(
        "--loop-pauses",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the event loop's longest pauses under cache_async (default: on)",
    )
    parser.add_argument(
        "--pause-rounds",
        type=int,
        default=3,
        help="rounds of the 12 x 16 MB loop-pause rows; the worst is the row (default: 3)",
    )
    options = parser.parse_args()
    logging.disable(logging.WARNING)  # peers' own chatter
    warnings.simplefilter("ignore")

    root = Path(tempfile.mkdtemp(prefix="my_cache_bench_"))
    arguments = calls(options.keys)
    try:
        results = measure(sync_systems(root), arguments, options.hit_passes)
        results |= asyncio.run(async_results(root, arguments, options.hit_passes))
        floor = floor_hit_us(root, arguments, options.hit_passes)
        cachier_default = {n: cachier_default_miss_us(root, n) for n in (100, 400)}
        small, large = options.scale
        scaled = {n: scale(root, n) for n in (small, large)}
        rows = scale_rows(root, options.scale_entries) if options.scale_100k else None
        pauses = loop_pauses(root, options.pause_rounds) if options.loop_pauses else None
    finally:
        shutil.rmtree(root)

    report(options.keys, results, floor, cachier_default, scaled, rows, pauses)


def report(
    keys: int,
    results: dict[str, tuple[float, float]],
    floor: float,
    cachier_default: dict[int, float],
    scaled: dict[int, tuple[float, float]],
    rows: ScaleRows | None = None,
    pauses: LoopPauses | None = None,
) -> None:
    print(f"{keys} keys, ~1 KB values; µs per call")
    print(f"{'system':<34}{'miss':>10}{'hit':>10}")
    for name, (miss, hit) in results.items():
        print(f"{name:<34}{miss:>10.1f}{hit:>10.2f}")
    print(f"{'floor: hash + SQLite SELECT + unpickle':<34}{'':>10}{floor:>10.2f}")
    for entries, miss in cachier_default.items():
        print(f"cachier default mode, miss at {entries} entries: {miss:.0f} µs")
    (small, (open_small, hit_small)), (large, (open_large, hit_large)) = scaled.items()
    print(f"IN_DISK open: {open_small:.0f} µs at {small} entries, {open_large:.0f} µs at {large}")
    print(f"IN_DISK hit:  {hit_small:.2f} µs at {small} entries, {hit_large:.2f} µs at {large}")
    if rows is not None:
        print(
            f"{rows.entries} small entries filled in {rows.fill_s:.1f} s (IN_DISK), "
            f"{rows.peer_fill_s:.1f} s (diskcache memoize)"
        )
        print(
            f"mycache stats at {rows.entries}: {rows.stats_s:.3f} s, start-up (--help) "
            f"{rows.startup_s:.3f} s: {rows.stats_above_startup_s:.3f} s above start-up"
        )
        print(
            f"disk at {rows.entries}: my_cache {rows.disk_bytes} bytes (folder "
            f"{rows.store_bytes} + catalogue {rows.catalogue_bytes}), "
            f"diskcache memoize {rows.peer_bytes} bytes"
        )
    if pauses is not None:
        print("\n".join(pauses.describe()))

    miss = {name: values[0] for name, values in results.items()}
    hit = {name: values[1] for name, values in results.items()}
    memory, disk, aio = "my_cache IN_MEMORY", "my_cache IN_DISK", "my_cache cache_async"
    targets = [
        ("IN_MEMORY hit / cachetools hit", hit[memory] / hit["cachetools.cached"], 2.0),
        ("IN_DISK hit / diskcache memoize hit", hit[disk] / hit["diskcache memoize"], 0.5),
        ("IN_DISK hit / floor", hit[disk] / floor, 3.0),
        ("IN_DISK miss / diskcache memoize miss", miss[disk] / miss["diskcache memoize"], 1.0),
        ("IN_DISK hit / joblib.Memory hit", hit[disk] / hit["joblib.Memory"], 1 / 5),
        ("IN_DISK hit / cachier hit", hit[disk] / hit["cachier (separate files)"], 1 / 3),
        ("cache_async hit / cashews hit", hit[aio] / hit["cashews (disk)"], 0.25),
        ("cache_async miss / IN_DISK miss", miss[aio] / miss[disk], 0.5),
        (f"open at {large} / open at {small}", open_large / open_small, 3.0),
        (f"hit at {large} / hit at {small}", hit_large / hit_small, 1.5),
    ]
    if rows is not None:
        targets += [
            (f"stats at {rows.entries} - start-up (s)", rows.stats_above_startup_s, 0.2),
            (f"disk at {rows.entries} / diskcache memoize", rows.disk_bytes / rows.peer_bytes, 1.2),
        ]
    if pauses is not None:
        targets += pauses.targets()
    width = max(42, *(len(name) + 2 for name, _, _ in targets))
    print(f"\n{'target':<{width}}{'ratio':>8}{'limit':>8}")
    for name, value, limit in targets:
        print(f"{name:<{width}}{value:>8.2f}{limit:>8.2f}  {'ok' if value <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
