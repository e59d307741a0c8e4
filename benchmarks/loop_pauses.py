"""The event loop's longest pause while cache_async waits on slow work: the rows of
``compare.py`` that were once wall-clock bounds in unit tests (timings belong here).

- 12 x 16 MB results written through ``cache_async`` (to ``join()``), then read back by a new
  CacheStor: the copies and pickles happen in threads, and the loop keeps ticking;
- a Redis that accepts connections and never answers (a plain socket, no redis-server; needs
  redis-py, in the dev extra): the call waits for its read timeout (0.5 s, twice the limit)
  off the loop.

Each measurement checks its results after its measured window (comparing 192 MB would pause
the loop too). ``python benchmarks/loop_pauses.py`` runs these rows alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage

LIMIT_S = 0.25
LARGE_COUNT, LARGE_MB = 12, 16
SILENT_READ_TIMEOUT_S = 0.5


async def longest_loop_pause(work: Callable[[], Awaitable[object]]) -> float:
    """The longest gap between ticks of a 1 ms ticker task while ``work`` runs."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        await work()
    finally:
        done = True
        await ticking
    return longest


def bench_stor(root: Path, type_storage: TypeStorage) -> CacheStor:
    # Every setting is given, so no mycache.toml or MYCACHE_* variable changes what is measured.
    return CacheStor(
        db_file=root / "catalogue.db",
        type_storage=type_storage,
        serialiser="bin",
        is_debug_log=False,
    )


async def write_and_read_pauses(root: Path, payloads: list[bytes]) -> tuple[float, float]:
    """The loop's longest pause while the payloads are written through cache_async, and
    while they are read back by a new CacheStor; each value is checked afterwards."""
    writer = bench_stor(root, TypeStorage.IN_DISK)
    runs: list[int] = []

    # Left out of the identity: hashing 192 MB once at the first call would pause the loop.
    @writer.cache_async(folder=root / "large", ignore=["payloads", "runs"])
    async def large(i: int) -> bytes:
        runs.append(i)
        return payloads[i]

    written: list[bytes] = []
    read_back: list[bytes] = []

    async def write_all() -> None:
        written.extend(await asyncio.gather(*(large(i) for i in range(len(payloads)))))
        await writer.join()

    write_pause = await longest_loop_pause(write_all)
    writer.close()
    reader = bench_stor(root, TypeStorage.IN_DISK)
    read_large = reader.cache_async(folder=root / "large", ignore=["payloads", "runs"])(
        large.__wrapped__
    )

    async def read_all() -> None:
        read_back.extend(await asyncio.gather(*(read_large(i) for i in range(len(payloads)))))

    read_pause = await longest_loop_pause(read_all)
    reader.close()
    # Compared outside the measured windows: 192 MB of comparison would pause the loop too.
    if written != payloads or read_back != payloads:
        raise RuntimeError("cache_async gave back other values than the large results written")
    if sorted(runs) != list(range(len(payloads))):
        raise RuntimeError(f"the large results were computed {len(runs)} times, not once each")
    return write_pause, read_pause


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def silent_redis_pause(root: Path) -> float:
    """The loop's longest pause while a call waits on a Redis that never answers; the call's
    value and the unreachable warning (so the wait happened) are checked afterwards."""
    # A socket that accepts connections (its backlog does) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with environment(
            MYCACHE_REDIS_URL=url, MYCACHE_REDIS_READ_TIMEOUT=str(SILENT_READ_TIMEOUT_S)
        ):
            stor = bench_stor(root / "silent", TypeStorage.IN_REDIS)
        try:

            @stor.cache_async(folder="bench/silent")
            async def triple(n: int) -> int:
                return 3 * n

            values: list[int] = []

            async def call() -> None:
                values.append(await triple(5))

            with capture_logs() as events:
                pause = asyncio.run(longest_loop_pause(call))
        finally:
            stor.close()
    if values != [15]:
        raise RuntimeError(f"a call behind a silent Redis returned {values}, not [15]")
    if "my_cache.shared_cache_unreachable" not in [e["event"] for e in events]:
        raise RuntimeError("a call behind a silent Redis did not wait for it and give up")
    return pause


@dataclass
class LoopPauses:
    """The longest pause of each kind, in seconds, over ``rounds`` rounds of the large ones."""

    writes_s: list[float]
    reads_s: list[float]
    silent_redis_s: float | None  # None: redis-py is not installed

    def targets(self) -> list[tuple[str, float, float]]:
        """Rows of compare.py's target table: (name, value, limit)."""
        large = f"{LARGE_COUNT} x {LARGE_MB} MB"
        rows = [
            (f"longest loop pause, cache_async writing {large} (s)", max(self.writes_s), LIMIT_S),
            (f"longest loop pause, cache_async reading {large} (s)", max(self.reads_s), LIMIT_S),
        ]
        if self.silent_redis_s is not None:
            rows.append(("longest loop pause, a silent Redis (s)", self.silent_redis_s, LIMIT_S))
        return rows

    def describe(self) -> list[str]:
        def seconds(values: list[float]) -> str:
            return ", ".join(f"{value:.3f}" for value in values)

        lines = [
            f"longest loop pause, cache_async {LARGE_COUNT} x {LARGE_MB} MB, per round: "
            f"writing {seconds(self.writes_s)} s, reading {seconds(self.reads_s)} s"
        ]
        if self.silent_redis_s is None:
            lines.append("silent Redis row skipped: redis-py is not installed (the dev extra)")
        else:
            lines.append(
                f"longest loop pause while a call waits on a silent Redis "
                f"(read timeout {SILENT_READ_TIMEOUT_S:g} s): {self.silent_redis_s:.3f} s"
            )
        return lines


def loop_pauses(root: Path, rounds: int = 3) -> LoopPauses:
    """Every row, in folders under ``root``; the large results in ``rounds`` fresh rounds."""
    size = LARGE_MB * 1024 * 1024
    # Payload 10 is 16 MB of newlines: diskcache given bytes would write it line by line.
    payloads = [bytes([i]) * size for i in range(LARGE_COUNT)]
    pauses = [
        asyncio.run(write_and_read_pauses(root / f"large-{n}", payloads)) for n in range(rounds)
    ]
    del payloads
    # IN_REDIS needs redis-py (the dev extra, which `make bench` installs).
    silent = silent_redis_pause(root) if importlib.util.find_spec("redis") else None
    return LoopPauses([w for w, _ in pauses], [r for _, r in pauses], silent)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="my_cache_bench_pauses_"))
    try:
        pauses = loop_pauses(root, rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    finally:
        shutil.rmtree(root)
    print("\n".join(pauses.describe()))
    targets = pauses.targets()
    width = max(len(name) for name, _, _ in targets) + 2
    print(f"\n{'target':<{width}}{'ratio':>8}{'limit':>8}")
    for name, value, limit in targets:
        print(f"{name:<{width}}{value:>8.2f}{limit:>8.2f}  {'ok' if value <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
