"""IN_REDIS against a real redis-server: shared between processes, catalogued in Redis,
computed once per key across processes, and harmless when Redis is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from my_cache import CacheStor, TypeStorage
from my_cache._writer import CacheWriteError
from my_cache.settings import SettingsError
from tests.conftest import RunPython
from tests.helpers import wait_until
from tests.redis_server import RedisServer, free_port
from tests.test_cli import check_stale_entries_are_listed_and_cleared, ls_json, mycache


def counted_square(stor: CacheStor, folder: str) -> tuple[Any, list[int]]:
    """A cached square function of ``stor`` under ``folder``, and the list of its runs."""
    runs: list[int] = []

    @stor.cache(folder=folder)
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    return square, runs


def value_keys(url: str) -> list[bytes]:
    with redis.Redis.from_url(url) as client:
        return sorted(client.scan_iter("mycache:e:*"))


def test_results_are_stored_in_redis_and_nothing_on_local_disk(
    redis_stor: CacheStor, redis_url: str, tmp_path: Path
) -> None:
    square, runs = counted_square(redis_stor, "cache/squares")

    assert [square(3), square(3), square(n=3), square(4)] == [9, 9, 9, 16]
    assert runs == [3, 4]
    assert square.cache_info().hits == 2
    assert len(value_keys(redis_url)) == 2
    assert list(tmp_path.iterdir()) == []


def test_two_processes_share_results(run_python: RunPython, redis_env: dict[str, str]) -> None:
    program = """
        from my_cache import CacheStor

        stor = CacheStor()

        @stor.cache(folder="cache/shared")
        def slow_square(n):
            print("ran", n)
            return n * n

        print(sum(slow_square(n) for n in range(5)))
    """
    first = run_python(program, env=redis_env)
    second = run_python(program, env=redis_env)
    assert first.stdout.count("ran") == 5 and first.stdout.endswith("30\n")
    assert second.stdout == "30\n"


def test_cache_async_writes_behind_to_redis(
    redis_stor: CacheStor, redis_url: str, tmp_path: Path
) -> None:
    runs: list[int] = []

    # What it has run so far is no part of what it computes.
    @redis_stor.cache_async(folder="cache/async", ignore=["runs"])
    async def double(n: int) -> int:
        runs.append(n)
        await asyncio.sleep(0)
        return 2 * n

    async def main() -> list[int]:
        results = await asyncio.gather(*(double(n % 10) for n in range(100)))
        await redis_stor.join()
        return results

    assert asyncio.run(main()) == [2 * (n % 10) for n in range(100)]
    assert sorted(runs) == list(range(10))
    assert len(value_keys(redis_url)) == 10
    assert list(tmp_path.iterdir()) == []
    other = CacheStor()  # another cache on the same server finds every result
    again = other.cache_async(folder="cache/async", ignore=["runs"])(double.__wrapped__)
    assert asyncio.run(again(7)) == 14
    assert sorted(runs) == list(range(10))
    other.close()


def test_expire_becomes_a_redis_ttl(redis_stor: CacheStor, redis_url: str) -> None:
    @redis_stor.cache(folder="cache/ttl", expire=30)
    def now(n: int) -> int:
        return n

    now(1)
    with redis.Redis.from_url(redis_url) as client:
        (key,) = client.scan_iter("mycache:e:*")
        assert 0 < client.pttl(key) <= 30_000
        client.delete(key)  # as Redis does when the TTL runs out
    runs: list[int] = []

    @redis_stor.cache(folder="cache/ttl", expire=30)
    def again(n: int) -> int:
        runs.append(n)
        return n

    again(1)
    again(1)
    assert runs == [1]


def test_the_cli_lists_counts_and_clears_entries_in_redis(
    run_python: RunPython, redis_env: dict[str, str], tmp_path: Path
) -> None:
    program = run_python(
        """
        import asyncio
        from my_cache import CacheStor

        stor = CacheStor(serialiser="json")

        @stor.cache(folder="cache/squares")
        def square(n):
            return n * n

        @stor.cache_async(folder="./cache//words")
        async def shout(word):
            return word.upper()

        for n in (1, 2, 3):
            square(n)

        async def main():
            await shout("bob")
            await stor.join()

        asyncio.run(main())
        """,
        env=redis_env,
    )
    script = os.path.realpath(program.args[1])
    entries = ls_json(tmp_path)
    assert sorted((e["folder"], e["function"], e["stale"]) for e in entries) == [
        ("cache/squares", f"{script}:square", False),
        ("cache/squares", f"{script}:square", False),
        ("cache/squares", f"{script}:square", False),
        ("cache/words", f"{script}:shout", False),
    ]
    args = sorted(e["arg_string"] for e in entries if e["folder"] == "cache/squares")
    assert args == [f'{{"args":[],"kwargs":{{"n":{n}}}}}' for n in (1, 2, 3)]
    assert [e["key"] for e in ls_json(tmp_path, "--folder", "cache/words")] == [
        e["key"] for e in entries if e["folder"] == "cache/words"
    ]

    stats = mycache("stats", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "cache/squares" in stats.stdout and "cache/words" in stats.stdout

    assert len(ls_json(tmp_path, "--function", f"{script}.square")) == 3
    assert len(ls_json(tmp_path, "--function", f"{script}:shout")) == 1
    cleared = mycache("clear", "--function", "square", "--yes", cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert [e["folder"] for e in ls_json(tmp_path)] == ["cache/words"]
    assert len(value_keys(redis_env["MYCACHE_REDIS_URL"])) == 1


def test_stale_entries_in_redis_are_listed_and_cleared(
    run_python: RunPython, redis_env: dict[str, str], tmp_path: Path
) -> None:
    check_stale_entries_are_listed_and_cleared(tmp_path, run_python)
    assert len(value_keys(redis_env["MYCACHE_REDIS_URL"])) == 3  # the current code's entries
    assert [path.name for path in tmp_path.iterdir() if path.is_dir()] == []  # none on disk


STAMPEDE = """
    import asyncio, sys, time
    from pathlib import Path
    from my_cache import CacheStor

    stor = CacheStor()
    me, workers = sys.argv[1], int(sys.argv[2])

    def work(n):
        with open("executions", "a") as log:
            log.write(me + "\\n")
        Path("started").touch()
        time.sleep(float(sys.argv[3]))  # the work itself, which the others must not repeat
        return n * 100

    @stor.cache(folder="cache/stampede")
    def expensive(n):
        return work(n)

    @stor.cache_async(folder="cache/stampede")
    async def expensive_async(n):
        return work(n)

    async def main():
        value = await expensive_async(7)
        await stor.join()
        return value

    # Every worker calls at about the same moment: each waits until all have started.
    Path(f"ready-{me}").touch()
    while len(list(Path().glob("ready-*"))) < workers:
        time.sleep(0.001)
    print(asyncio.run(main()) if sys.argv[4] == "async" else expensive(7))
"""


def start_workers(
    tmp_path: Path, env: dict[str, str], count: int, work: float, mode: str = "sync"
) -> list[Any]:
    script = tmp_path / "stampede.py"
    script.write_text(STAMPEDE.replace("\n    ", "\n"))
    full_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return [
        subprocess.Popen(
            [sys.executable, str(script), str(n), str(count), str(work), mode],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stampede_of_processes_computes_a_key_once(
    redis_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    workers = start_workers(tmp_path, redis_env, count=4, work=0.5, mode=mode)
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [out for out, _ in outputs] == ["700\n"] * 4, outputs
    assert len((tmp_path / "executions").read_text().split()) == 1


def test_when_the_computing_process_dies_a_waiter_takes_over(
    redis_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**redis_env, "MYCACHE_REDIS_LOCK_TIMEOUT": "1.5"}
    (holder,) = start_workers(tmp_path, env, count=1, work=600)
    assert wait_until(lambda: (tmp_path / "started").exists())
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (tmp_path / "ready-0").unlink()
    (waiter,) = start_workers(tmp_path, env, count=1, work=0)
    out, err = waiter.communicate(timeout=60)
    assert out == "700\n", err
    assert (tmp_path / "executions").read_text().split() == ["0", "0"]


def stored_again(square: Any, runs: list[int]) -> bool:
    """Whether a new call of ``square`` is stored: its repeat is a hit."""
    n = 1000 + len(runs)
    assert square(n) == n * n
    computed = len(runs)
    assert square(n) == n * n
    return len(runs) == computed


def test_an_unreachable_redis_costs_a_warning_and_is_used_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(tmp_path / "late-redis", password="s3cret")
    monkeypatch.setenv("MYCACHE_REDIS_URL", server.url)
    monkeypatch.setenv("MYCACHE_REDIS_CONNECT_TIMEOUT", "0.5")
    stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, runs = counted_square(stor, "cache/late")

    try:
        with capture_logs() as events:
            assert [square(2), square(2), square(2)] == [4, 4, 4]
        assert runs == [2, 2, 2]
        (warning,) = events
        assert warning["event"] == "my_cache.shared_cache_unreachable"
        assert warning["url"] == f"redis://:***@127.0.0.1:{server.port}/0"
        assert "s3cret" not in str(warning)

        server.start()
        with capture_logs() as events:
            assert wait_until(lambda: stored_again(square, runs))
        assert [e["event"] for e in events] == ["my_cache.shared_cache_reachable"]
    finally:
        stor.close()
        server.stop()


def test_redis_stopped_mid_run(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_redis_server.start()
    monkeypatch.setenv("MYCACHE_REDIS_URL", own_redis_server.url)
    stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, runs = counted_square(stor, "cache/midrun")

    @stor.cache_async(folder="cache/midrun")
    async def cube(n: int) -> int:
        return n**3

    try:
        assert square(2) == 4 and square(2) == 4 and runs == [2]
        own_redis_server.stop()
        with capture_logs() as events:
            assert square(2) == 4 and square(5) == 25
            assert asyncio.run(cube(3)) == 27
        assert runs == [2, 2, 5]
        assert "my_cache.shared_cache_unreachable" in [e["event"] for e in events]
        with pytest.raises(CacheWriteError, match=r"1 cached result.*unreachable"):
            asyncio.run(stor.join())

        own_redis_server.start()
        assert wait_until(lambda: stored_again(square, runs))
    finally:
        stor.close()


def test_settings_check_the_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCACHE_REDIS_URL", "http://example.com")
    with pytest.raises(SettingsError, match=r"redis_url.*MYCACHE_REDIS_URL.*redis://"):
        CacheStor(type_storage="in_redis")
    monkeypatch.setenv("MYCACHE_REDIS_URL", f"rediss://:pw@127.0.0.1:{free_port()}/2")
    stor = CacheStor(type_storage="IN_REDIS")
    assert stor.type_storage is TypeStorage.IN_REDIS
    stor.close()


def test_a_damaged_value_is_recomputed(redis_stor: CacheStor, redis_url: str) -> None:
    square, runs = counted_square(redis_stor, "cache/damage")

    square(4)
    with redis.Redis.from_url(redis_url) as client:
        (key,) = client.scan_iter("mycache:e:*")
        data = bytearray(client.hget(key, "d"))
        data[10:12] = b"\xff\xfe"
        client.hset(key, "d", bytes(data))
    with capture_logs() as events:
        assert square(4) == 16
    assert runs == [4, 4]
    assert [e["event"] for e in events] == ["my_cache.damaged_entry"]
    assert square(4) == 16 and runs == [4, 4]


def test_swapped_values_are_never_served_for_each_other(
    redis_stor: CacheStor, redis_url: str
) -> None:
    square, runs = counted_square(redis_stor, "cache/swap")

    assert [square(2), square(3)] == [4, 9]
    with redis.Redis.from_url(redis_url) as client:
        first, second = sorted(client.scan_iter("mycache:e:*"))
        first_value, second_value = client.hget(first, "d"), client.hget(second, "d")
        client.hset(first, "d", second_value)
        client.hset(second, "d", first_value)
    with capture_logs() as events:
        assert [square(2), square(3)] == [4, 9]
    assert runs == [2, 3, 2, 3]
    assert [e["event"] for e in events] == ["my_cache.damaged_entry"] * 2


def test_an_evicted_entry_leaves_nothing_listed(redis_stor: CacheStor, redis_url: str) -> None:
    @redis_stor.cache(folder="cache/evicted")
    def square(n: int) -> int:
        return n * n

    square(1)
    square(2)
    backend = redis_stor._stores.backend
    assert len(backend.entries()) == 2
    with redis.Redis.from_url(redis_url) as client:
        client.delete(next(client.scan_iter("mycache:e:*")))  # as an eviction does
        assert len(backend.entries()) == 1
        assert len(list(client.scan_iter("mycache:*"))) == 1


def test_a_silent_redis_never_stalls_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A socket that accepts connections and never answers: every command waits for its timeout.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        monkeypatch.setenv("MYCACHE_REDIS_URL", f"redis://127.0.0.1:{port}/0")
        monkeypatch.setenv("MYCACHE_REDIS_READ_TIMEOUT", "0.5")
        stor = CacheStor(type_storage=TypeStorage.IN_REDIS)

        @stor.cache_async(folder="cache/silent")
        async def triple(n: int) -> int:
            return 3 * n

        async def main(events: list[dict[str, Any]]) -> tuple[int, list[str]]:
            warned_when_done: list[str] = []

            async def bystander() -> None:
                # Needs the loop several times: it ends only if the call lets the loop run.
                for _ in range(3):
                    await asyncio.sleep(0)
                warned_when_done.extend(e["event"] for e in events)

            # Created before the call, so it starts only once the call suspends.
            other = asyncio.create_task(bystander())
            value = await triple(5)
            await other
            return value, warned_when_done

        with capture_logs() as events:
            value, warned_when_done = asyncio.run(main(events))
        stor.close()
    assert value == 15
    # The read waited for Redis's timeout (0.5 s), then gave up with a warning.
    assert [e["event"] for e in events][:1] == ["my_cache.shared_cache_unreachable"]
    # Meanwhile the loop ran the other task to its end, before the call gave up on Redis. A
    # read on the loop's own thread would have given up (and warned) before the task's first
    # step: other suspensions later in the call could still let it finish before the call.
    assert warned_when_done == []


def test_a_password_and_tls_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(tmp_path / "tls-redis", password="pw-over-tls", tls=True)
    server.start()
    try:
        monkeypatch.setenv("MYCACHE_REDIS_URL", server.url)
        stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
        square, runs = counted_square(stor, "cache/tls")

        with capture_logs() as events:
            assert [square(9), square(9)] == [81, 81]
        assert runs == [9] and events == []
        stor.close()
        with server.client() as client:
            assert len(list(client.scan_iter("mycache:e:*"))) == 1
    finally:
        server.stop()


def test_the_cli_says_when_redis_is_unreachable(tmp_path: Path) -> None:
    result = mycache(
        "ls",
        cwd=tmp_path,
        MYCACHE_TYPE_STORAGE="in_redis",
        MYCACHE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert result.returncode == 1
    assert "Error: the shared cache at redis://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_controls_clear_and_invalidate_entries_in_redis(
    redis_stor: CacheStor, redis_url: str
) -> None:
    square, runs = counted_square(redis_stor, "cache/controls")

    @redis_stor.cache(folder="cache/controls")
    def cube(n: int) -> int:
        return n**3

    for n in (1, 2, 3):
        square(n)
    cube(2)
    assert square.invalidate(2) is True and square.invalidate(2) is False
    assert len(value_keys(redis_url)) == 3
    square.cache_clear()
    assert len(value_keys(redis_url)) == 1  # cube's entry stays
    square(1)
    assert runs == [1, 2, 3, 1] and cube(2) == 8


def test_expired_entries_leave_nothing_behind(redis_stor: CacheStor, redis_url: str) -> None:
    @redis_stor.cache(folder="cache/short", expire=0.05)
    def brief(n: int) -> int:
        return n

    for n in range(63):
        brief(n)
    # Redis drops each entry whole when its TTL runs out: no description is left to prune.
    assert wait_until(lambda: not value_keys(redis_url))
    with redis.Redis.from_url(redis_url) as client:
        assert list(client.scan_iter("mycache:*")) == []
    assert redis_stor._stores.backend.entries() == []
