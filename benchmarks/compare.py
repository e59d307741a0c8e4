"""Hit and miss cost per call of my_cache beside its peers, in one process and one run.

The same workload for every system: a function of ``(int, str, tuple)`` returning a dict of
about 1 KB, ``--keys`` distinct keys; one pass of misses, then ``--hit-passes`` passes of
hits. Prints microseconds per call and ratios to diskcache's memoize; machines are noisy, so
compare ratios from one run, not absolute times across runs.

    make bench            # or: .venv/bin/python benchmarks/compare.py --keys 2000
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import diskcache

from my_cache import CacheStor, TypeStorage

Work = Callable[[int, str, tuple[int, int]], dict[str, Any]]
AsyncWork = Callable[[int, str, tuple[int, int]], Awaitable[dict[str, Any]]]
Arguments = list[tuple[int, str, tuple[int, int]]]


def work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return {"n": n, "name": name, "pair": pair, "payload": "x" * 1000}


async def async_work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return work(n, name, pair)


def calls(keys: int) -> Arguments:
    return [(i, f"name-{i % 97}", (i, i % 7)) for i in range(keys)]


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


def measure(cached: Work, keys: int, hit_passes: int) -> tuple[float, float]:
    arguments = calls(keys)
    miss = per_call_us(cached, arguments)
    hit = min(per_call_us(cached, arguments) for _ in range(hit_passes))
    return miss, hit


async def measure_async(
    stor: CacheStor, cached: AsyncWork, keys: int, hit_passes: int
) -> tuple[float, float]:
    """The caller-visible miss (its write is behind), then hits read from disk."""
    arguments = calls(keys)
    miss = await per_await_us(cached, arguments)
    await stor.join()
    hits = [await per_await_us(cached, arguments) for _ in range(hit_passes)]
    return miss, min(hits)


def async_system(root: Path) -> tuple[CacheStor, AsyncWork]:
    stor = CacheStor(
        db_file=root / "my_cache_async" / "catalogue.db",
        type_storage=TypeStorage.IN_DISK,
        serialiser="bin",
        is_debug_log=False,
    )
    return stor, stor.cache_async(folder=root / "my_cache_async" / "work")(async_work)


def systems(root: Path) -> dict[str, Work]:
    # Every setting is given, so no mycache.toml or MYCACHE_* variable changes what is measured.
    memory = CacheStor(
        type_storage=TypeStorage.IN_MEMORY, serialiser="bin", is_debug_log=False
    )
    disk = CacheStor(
        db_file=root / "my_cache" / "catalogue.db",
        type_storage=TypeStorage.IN_DISK,
        serialiser="bin",
        is_debug_log=False,
    )
    peer = diskcache.Cache(str(root / "diskcache"), eviction_policy="none")
    return {
        "functools.lru_cache": functools.lru_cache(maxsize=None)(work),
        "diskcache memoize": peer.memoize()(work),
        "my_cache IN_MEMORY": memory.cache(folder=root / "memory")(work),
        "my_cache IN_DISK": disk.cache(folder=root / "my_cache" / "work")(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--hit-passes", type=int, default=5)
    options = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="my_cache_bench_"))
    try:
        results = {
            name: measure(cached, options.keys, options.hit_passes)
            for name, cached in systems(root).items()
        }
        stor, cached_async = async_system(root)
        results["my_cache cache_async"] = asyncio.run(
            measure_async(stor, cached_async, options.keys, options.hit_passes)
        )
        stor.close()
    finally:
        shutil.rmtree(root)

    peer_miss, peer_hit = results["diskcache memoize"]
    print(f"{options.keys} keys, ~1 KB values; µs per call (ratio to diskcache memoize)")
    print(f"{'system':<22}{'miss':>10}{'':>9}{'hit':>10}")
    for name, (miss, hit) in results.items():
        miss_ratio, hit_ratio = miss / peer_miss, hit / peer_hit
        print(f"{name:<22}{miss:>10.2f} ({miss_ratio:5.2f}x){hit:>10.2f} ({hit_ratio:5.2f}x)")


if __name__ == "__main__":
    main()
