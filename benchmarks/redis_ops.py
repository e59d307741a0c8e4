"""my_cache's IN_REDIS against a real Redis server, in one process and one run.

The script starts its own server (``tests/redis_server.py``: ``redis-server`` from PATH, else
the dev extra's packaged ``valkey-server``) on a free loopback port, and measures:

1. per call, in microseconds, on 1,000 distinct keys with ~1 KB dict values: a pass of misses
   and the best of 3 passes of hits, through ``cache`` and ``cache_async`` (``join()``
   outside the timing, so writes land) beside cashews with its redis backend;
2. an outage: a loop calling a cached function (1 ms of its own work) on new keys for 4 s,
   while the server is stopped (SIGSTOP) for 3 s of them, with a 0.5 s read timeout: the
   seconds the loop spent in the cache rather than in the function, and the longest call;
3. busy waiters: another process computes 10 keys of a ``cache_async`` function (until a
   signal file appears) while 10 callers here wait for them; meanwhile the longest
   ``asyncio.to_thread(lambda: 1)`` of 40, and a ``cache_async`` miss on an unrelated key;
4. a 64 MiB bytes result stored through ``cache``: the peak memory traced (tracemalloc)
   beyond the value itself, as a multiple of its size.

Then the targets, as compare.py prints them. Each row has a hard timeout: one that does not
finish is reported as timed out. Machines are noisy: compare ratios from one run.

    .venv-3.11/bin/python benchmarks/redis_ops.py      # from the repository's root
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from cashews import Cache as CashewsCache
from structlog.testing import capture_logs

import my_cache
from my_cache import CacheStor

# RedisServer lives in the repository's tests/; a PYTHONPATH given first (another worktree's)
# still wins, for my_cache as for tests.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from compare import WARM_UP, Arguments, AsyncWork, per_await_us, per_call_us  # noqa: E402
from loop_pauses import environment  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402

T = TypeVar("T")

KEYS, HIT_PASSES = 1000, 3
OUTAGE_LOOP_S, OUTAGE_STOP_AT_S, OUTAGE_STOPPED_S = 4.0, 0.5, 3.0
OUTAGE_READ_TIMEOUT_S = 0.5
OUTAGE_WORK_S = 0.001
STALL_S = 0.05  # an outage call longer than this is a stall
WAITERS, PROBES, PROBE_EVERY_S = 10, 40, 0.02
WAITERS_MEASURE_TIMEOUT_S = 10.0  # the probes and the unrelated miss, together
WAITERS_FINISH_TIMEOUT_S = 20.0  # starting the other process; the waiters once it computes
LARGE_BYTES = 64 * 2**20
ROW_TIMEOUT_S = 45.0
WAITERS_MODULE = "redis_ops_waiters"
WAITERS_SOURCE = '''\
"""Written by benchmarks/redis_ops.py: a cache_async function that two processes import by
one name, so that they share its entries and its locks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from my_cache import CacheStor

stor = CacheStor(type_storage="in_redis", serialiser="bin", is_debug_log=False)
DIRECTORY = Path(os.environ["REDIS_OPS_WAITERS_DIR"])
GO = DIRECTORY / "go"
computed: list[int] = []  # in this process


@stor.cache_async(folder="bench/redis-ops/waiters")
async def slow(n: int) -> int:
    computed.append(n)
    (DIRECTORY / f"running-{n}").touch()
    while not GO.exists():
        await asyncio.sleep(0.005)
    return n * n


@stor.cache_async(folder="bench/redis-ops/unrelated")
async def unrelated(n: int) -> int:
    return -n


async def compute(keys: int) -> list[int]:
    values = list(await asyncio.gather(*(slow(n) for n in range(keys))))
    await stor.join()
    stor.close()
    return values
'''


# --- helpers ---------------------------------------------------------------------------------


def redis_stor() -> CacheStor:
    """An IN_REDIS CacheStor; the server and timeouts come from MYCACHE_* in the environment."""
    return CacheStor(type_storage="in_redis", serialiser="bin", is_debug_log=False)


class RowTimedOut(Exception):
    """A row that did not finish within its timeout (its thread may still be running)."""


def run_row(name: str, function: Callable[[], T], timeout: float = ROW_TIMEOUT_S) -> T:
    """``function()`` in a thread of its own; RowTimedOut if it has not returned by
    ``timeout``. Its exception, if it raises one, is raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name=f"row-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RowTimedOut(f"{name}: no result after {timeout:g} s")
    if failure:
        raise failure[0]
    return outcome[0]


def warnings_said(events: Sequence[Mapping[str, Any]]) -> str:
    counted = Counter(str(event["event"]) for event in events)
    return ", ".join(f"{name} x{count}" for name, count in sorted(counted.items())) or "none"


# --- 1. per call -----------------------------------------------------------------------------


def work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return {"n": n, "name": name, "pair": pair, "payload": "x" * 1000}


async def async_work(n: int, name: str, pair: tuple[int, int]) -> dict[str, Any]:
    return work(n, name, pair)


def calls(keys: int) -> Arguments:
    return [(i, f"name-{i % 97}", (i, i % 7)) for i in range(keys)]


# One call before timing, on a key outside the timed ones: connecting and learning a
# function's identity happen once, not per miss.
async def measure_async(
    cached: AsyncWork, arguments: Arguments, settle: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """The miss as the caller sees it, and the best hit pass; ``settle`` is not timed."""
    await cached(*WARM_UP)
    await settle()
    miss = await per_await_us(cached, arguments)
    await settle()
    return miss, min([await per_await_us(cached, arguments) for _ in range(HIT_PASSES)])


async def check_async(cached: AsyncWork, arguments: Arguments) -> None:
    for n, name, pair in arguments[:: len(arguments) // 10]:
        if await cached(n, name, pair) != work(n, name, pair):
            raise RuntimeError(f"{cached.__name__} returned a wrong value for {n}")


async def async_per_call(stor: CacheStor, url: str, arguments: Arguments) -> dict[str, Any]:
    cashews = CashewsCache()
    cashews.setup(url)

    async def nothing() -> None:
        return None

    try:
        peer = cashews(ttl="1d")(async_work)
        ours = stor.cache_async(folder="bench/redis-ops/async")(async_work)
        results = {
            "my_cache IN_REDIS cache_async": await measure_async(ours, arguments, stor.join),
            "cashews (redis)": await measure_async(peer, arguments, nothing),
        }
        await check_async(ours, arguments)
        await check_async(peer, arguments)
        return results
    finally:
        await cashews.close()


def per_call_row(url: str) -> dict[str, tuple[float, float]]:
    arguments = calls(KEYS)
    stor = redis_stor()
    try:
        cached = stor.cache(folder="bench/redis-ops/sync")(work)
        cached(*WARM_UP)
        miss = per_call_us(cached, arguments)
        hit = min(per_call_us(cached, arguments) for _ in range(HIT_PASSES))
        info = cached.cache_info()
        if info.misses != KEYS + 1 or info.hits != KEYS * HIT_PASSES:
            raise RuntimeError(f"IN_REDIS cache: {info}, not {KEYS + 1} misses and all hits")
        results = {"my_cache IN_REDIS cache": (miss, hit)}
        results |= asyncio.run(
            asyncio.wait_for(async_per_call(stor, url, arguments), ROW_TIMEOUT_S - 5)
        )
        return results
    finally:
        stor.close()


# --- 2. outage -------------------------------------------------------------------------------


@dataclass
class Outage:
    wall_s: float
    calls: int
    own_s: float  # the function's own time, summed
    longest_s: float
    stalls: int  # calls longer than STALL_S
    stalled_s: float  # their time above the function's own

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.own_s


def pause_server(server: RedisServer, started: float, done: threading.Event) -> None:
    """SIGSTOP the server OUTAGE_STOP_AT_S after ``started``, SIGCONT it OUTAGE_STOPPED_S later
    (or as soon as ``done`` is set)."""
    process = server.process
    assert process is not None
    if done.wait(max(0.0, started + OUTAGE_STOP_AT_S - time.perf_counter())):
        return
    process.send_signal(signal.SIGSTOP)
    try:
        done.wait(max(0.0, started + OUTAGE_STOP_AT_S + OUTAGE_STOPPED_S - time.perf_counter()))
    finally:
        process.send_signal(signal.SIGCONT)


def outage_row(server: RedisServer) -> Outage:
    with environment(MYCACHE_REDIS_READ_TIMEOUT=str(OUTAGE_READ_TIMEOUT_S)):
        stor = redis_stor()
    own = [0.0]
    try:

        @stor.cache(folder="bench/redis-ops/outage", ignore=["own"])
        def step(n: int) -> int:
            started = time.perf_counter()
            time.sleep(OUTAGE_WORK_S)
            own[0] += time.perf_counter() - started
            return 2 * n

        for n in range(-10, 0):  # connects, learns the function's identity
            step(n)
        own[0] = 0.0
        done = threading.Event()
        n, longest, stalls, stalled, wrong = 0, 0.0, 0, 0.0, 0
        started = time.perf_counter()
        pauser = threading.Thread(target=pause_server, args=(server, started, done))
        pauser.start()
        try:
            while (now := time.perf_counter()) - started < OUTAGE_LOOP_S:
                own_before = own[0]
                wrong += step(n) != 2 * n
                took = time.perf_counter() - now
                longest = max(longest, took)
                if took > STALL_S:
                    stalls += 1
                    stalled += took - (own[0] - own_before)
                n += 1
            wall = time.perf_counter() - started
        finally:
            done.set()
            pauser.join()
        if wrong:
            raise RuntimeError(f"the outage loop got {wrong} wrong values of {n}")
        return Outage(wall, n, own[0], longest, stalls, stalled)
    finally:
        stor.close()


# --- 3. busy waiters -------------------------------------------------------------------------


@dataclass
class Waiters:
    probes: list[float]  # each asyncio.to_thread(lambda: 1), in seconds
    probes_timed_out: bool
    unrelated_miss_s: float | None  # None: timed out
    computed_here: int  # keys the waiters computed themselves instead of waiting (0 expected)
    other_stderr: str

    @property
    def longest_probe_s(self) -> float | None:
        return None if self.probes_timed_out else max(self.probes)


async def probe_executor(deadline: float) -> tuple[list[float], bool]:
    """Latencies of PROBES ``asyncio.to_thread(lambda: 1)``; True if one was still waiting at
    ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    for _ in range(PROBES):
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.to_thread(lambda: 1), deadline - loop.time())
        except TimeoutError:
            return latencies, True
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(PROBE_EVERY_S)
    return latencies, False


async def timed_miss(waiters: ModuleType, deadline: float) -> float | None:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        value = await asyncio.wait_for(waiters.unrelated(12345), deadline - loop.time())
    except TimeoutError:
        return None
    if value != -12345:
        raise RuntimeError(f"the unrelated cache_async miss returned {value!r}")
    return time.perf_counter() - started


async def wait_for_files(paths: list[Path], other: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAITERS_FINISH_TIMEOUT_S
    while not all(path.exists() for path in paths):
        if other.poll() is not None:
            _, stderr = other.communicate()
            raise RuntimeError(f"the computing process exited with {other.returncode}:\n{stderr}")
        if time.monotonic() > deadline:
            raise RuntimeError("the computing process did not start its 10 computations")
        await asyncio.sleep(0.01)


async def busy_waiters(directory: Path) -> Waiters:
    directory.mkdir()
    (directory / f"{WAITERS_MODULE}.py").write_text(WAITERS_SOURCE)
    env = dict(os.environ, REDIS_OPS_WAITERS_DIR=str(directory))
    # The same module, by the same name, in both processes: one function identity.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    sys.path.insert(0, str(directory))
    command = f"import asyncio, json, {WAITERS_MODULE} as w; "
    command += f"print(json.dumps(asyncio.run(w.compute({WAITERS}))))"
    go = directory / "go"
    other = subprocess.Popen(
        [sys.executable, "-c", command],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with environment(REDIS_OPS_WAITERS_DIR=str(directory)):
            waiters = __import__(WAITERS_MODULE)
        try:
            await wait_for_files([directory / f"running-{n}" for n in range(WAITERS)], other)
            waiting = [asyncio.ensure_future(waiters.slow(n)) for n in range(WAITERS)]
            await asyncio.sleep(0.05)  # all of them waiting
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAITERS_MEASURE_TIMEOUT_S
            (probes, timed_out), miss = await asyncio.gather(
                probe_executor(deadline), timed_miss(waiters, deadline)
            )
            go.touch()
            values = await asyncio.wait_for(asyncio.gather(*waiting), WAITERS_FINISH_TIMEOUT_S)
            if values != [n * n for n in range(WAITERS)]:
                raise RuntimeError(f"the waiters got {values}")
            await waiters.stor.join()
        finally:
            go.touch()
            waiters.stor.close()
        stdout, stderr = other.communicate(timeout=WAITERS_FINISH_TIMEOUT_S)
        if other.returncode != 0 or json.loads(stdout) != [n * n for n in range(WAITERS)]:
            raise RuntimeError(f"the computing process ended {other.returncode}:\n{stderr}")
        return Waiters(probes, timed_out, miss, len(waiters.computed), stderr.strip())
    finally:
        go.touch()
        if other.poll() is None:
            other.kill()
            other.wait()
        sys.path.remove(str(directory))


def waiters_row(directory: Path) -> Waiters:
    return asyncio.run(asyncio.wait_for(busy_waiters(directory), ROW_TIMEOUT_S - 5))


# --- 4. large write memory -------------------------------------------------------------------


@dataclass
class LargeWrite:
    peak_above_value: int  # bytes traced at the peak, beyond the value itself
    seconds: float

    @property
    def ratio(self) -> float:
        return self.peak_above_value / LARGE_BYTES


def large_write_row() -> LargeWrite:
    stor = redis_stor()
    try:

        @stor.cache(folder="bench/redis-ops/large")
        def large(n: int) -> bytes:
            return bytes([n]) * LARGE_BYTES  # built inside: no captured copy to hash

        @stor.cache(folder="bench/redis-ops/large")
        def small(n: int) -> int:
            return n

        small(1)  # connects
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            started = time.perf_counter()
            value = large(7)
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        again = large(7)
        if large.cache_info() != (1, 1) or again != value or value != bytes([7]) * LARGE_BYTES:
            raise RuntimeError(
                f"the 64 MiB result was not stored and read back: {large.cache_info()}"
            )
        return LargeWrite(peak - before - LARGE_BYTES, seconds)
    finally:
        stor.close()


# --- the run ---------------------------------------------------------------------------------


def server_version(server: RedisServer) -> str:
    with server.client() as client:
        info = client.info("server")
    for name in ("valkey_version", "redis_version"):
        if name in info:
            return f"{name.partition('_')[0]} {info[name]}"
    return "unknown version"


def seconds_or_timeout(value: float | None) -> str:
    return "timed out" if value is None else f"{value:.3f} s"


def main() -> None:
    # Only what this script sets: no MYCACHE_* variable or mycache.toml of the caller's.
    for name in [name for name in os.environ if name.startswith("MYCACHE_")]:
        del os.environ[name]
    root = Path(tempfile.mkdtemp(prefix="my_cache_bench_redis_"))
    (root / "empty.toml").write_text("")
    os.environ["MYCACHE_CONFIG"] = str(root / "empty.toml")
    server = RedisServer(root / "server")
    lines = [f"my_cache: {my_cache.__file__}"]
    failed: list[str] = []
    try:
        server.start()
        os.environ["MYCACHE_REDIS_URL"] = server.url
        lines.append(
            f"server: {Path(server.executable).name} ({server_version(server)}), {server.url}"
        )
        rows: dict[str, Any] = {}
        for name, row in [
            ("per call", lambda: per_call_row(server.url)),
            ("outage", lambda: outage_row(server)),
            ("busy waiters", lambda: waiters_row(root / "waiters")),
            ("large write", large_write_row),
        ]:
            with capture_logs() as events:
                try:
                    rows[name] = run_row(name, row)
                except RowTimedOut as error:
                    rows[name] = None
                    failed.append(str(error))
            rows[f"{name} warnings"] = warnings_said(events)
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)  # were a row stopped while it paused it
        server.stop()
        if not failed:  # a row still running may still use it
            shutil.rmtree(root)
    lines += report(rows)
    lines += [f"timed out: {reason}" for reason in failed]
    print("\n".join(lines), flush=True)
    if failed:
        # A row's thread may be stuck for good: leave without waiting for it (or for its
        # stores' exit handlers).
        os._exit(0)


def report(rows: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    targets: list[tuple[str, float | None, float]] = []

    per_call: dict[str, tuple[float, float]] | None = rows["per call"]
    lines.append(f"\n1. {KEYS} keys, ~1 KB values; µs per call (hit: best of {HIT_PASSES})")
    if per_call is None:
        lines.append("timed out")
        targets += [("IN_REDIS hit / cashews hit", None, 1.0)]
        targets += [("cache_async miss / cashews miss", None, 1.0)]
    else:
        lines.append(f"{'system':<34}{'miss':>10}{'hit':>10}")
        for name, (miss, hit) in per_call.items():
            lines.append(f"{name:<34}{miss:>10.1f}{hit:>10.2f}")
        sync, aio = per_call["my_cache IN_REDIS cache"], per_call["my_cache IN_REDIS cache_async"]
        peer = per_call["cashews (redis)"]
        targets += [("IN_REDIS hit / cashews hit", sync[1] / peer[1], 1.0)]
        targets += [("cache_async miss / cashews miss", aio[0] / peer[0], 1.0)]
    lines.append(f"my_cache warnings: {rows['per call warnings']}")

    outage: Outage | None = rows["outage"]
    lines.append(
        f"\n2. outage: {OUTAGE_LOOP_S:g} s of calls on new keys ({OUTAGE_WORK_S * 1000:g} ms "
        f"each), server stopped for {OUTAGE_STOPPED_S:g} s of them, read timeout "
        f"{OUTAGE_READ_TIMEOUT_S:g} s"
    )
    if outage is None:
        lines.append("timed out")
    else:
        lines.append(
            f"{outage.calls} calls in {outage.wall_s:.3f} s, the function's own time "
            f"{outage.own_s:.3f} s: {outage.overhead_s:.3f} s in the cache, of which "
            f"{outage.stalled_s:.3f} s in {outage.stalls} calls over {STALL_S * 1000:g} ms; "
            f"longest call {outage.longest_s:.3f} s"
        )
    lines.append(f"my_cache warnings: {rows['outage warnings']}")
    targets += [("outage: time in cache overhead (s)", outage.overhead_s if outage else None, 1.0)]

    waiters: Waiters | None = rows["busy waiters"]
    lines.append(
        f"\n3. busy waiters: {WAITERS} cache_async callers wait for another process's "
        f"computation of their keys"
    )
    if waiters is None:
        lines.append("timed out")
        targets += [("busy waiters: longest to_thread (s)", None, 0.1)]
        targets += [("busy waiters: unrelated cache_async miss (s)", None, 0.5)]
    else:
        probes = (
            f"timed out after {WAITERS_MEASURE_TIMEOUT_S:g} s ({len(waiters.probes)} of "
            f"{PROBES} done)"
            if waiters.probes_timed_out
            else f"longest {max(waiters.probes):.4f} s of {PROBES}"
        )
        lines.append(f"asyncio.to_thread(lambda: 1): {probes}")
        lines.append(
            f"cache_async miss on an unrelated key: {seconds_or_timeout(waiters.unrelated_miss_s)}"
        )
        lines.append(f"keys the waiters computed themselves: {waiters.computed_here} (expected 0)")
        if waiters.other_stderr:
            lines.append(
                "the computing process said: " + textwrap.shorten(waiters.other_stderr, 300)
            )
        targets += [("busy waiters: longest to_thread (s)", waiters.longest_probe_s, 0.1)]
        targets += [("busy waiters: unrelated cache_async miss (s)", waiters.unrelated_miss_s, 0.5)]
        targets += [("busy waiters: keys computed here", waiters.computed_here, 0)]
    lines.append(f"my_cache warnings: {rows['busy waiters warnings']}")

    large: LargeWrite | None = rows["large write"]
    lines.append(f"\n4. a {LARGE_BYTES // 2**20} MiB bytes result stored through cache")
    if large is None:
        lines.append("timed out")
    else:
        lines.append(
            f"peak traced memory beyond the value: {large.peak_above_value / 2**20:.1f} MiB "
            f"({large.ratio:.2f}x its size); the call took {large.seconds:.3f} s"
        )
    lines.append(f"my_cache warnings: {rows['large write warnings']}")
    targets += [("64 MiB write: peak memory / value size", large.ratio if large else None, 1.3)]

    width = max(len(name) for name, _, _ in targets) + 2
    lines.append(f"\n{'target':<{width}}{'value':>10}{'limit':>8}")
    for name, value, limit in targets:
        if value is None:
            lines.append(f"{name:<{width}}{'timed out':>10}{limit:>8.2f}  MISSED")
        else:
            status = "ok" if value <= limit else "MISSED"
            lines.append(f"{name:<{width}}{value:>10.2f}{limit:>8.2f}  {status}")
    return lines


if __name__ == "__main__":
    main()
