"""IN_REDIS as production servers run: with maxmemory and eviction, full, stalled, killed
holders, cancelled waiters, keys of other applications, large values."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from my_cache import CacheStor, CacheStoreError, TypeStorage
from my_cache._storages import redis_store
from my_cache._storages._envelope import dump_result
from tests.helpers import wait_until
from tests.redis_server import RedisServer, free_port
from tests.test_cli import mycache


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's server; memory settings changed by a test are undone."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.flushall()
    client.config_set("maxmemory", 0)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()


def squares(
    redis_stor: CacheStor, folder: str, expire: float | None = None
) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @redis_stor.cache(folder=folder, expire=expire)
    def padded_square(n: int) -> tuple[int, bytes]:
        runs.append(n)
        return n * n, b"p" * 10_000

    return padded_square, runs


def our_keys(client: redis.Redis) -> list[bytes]:
    return sorted(client.scan_iter("mycache:*"))


@pytest.mark.parametrize(
    "policy", ["allkeys-lru", "allkeys-random", "volatile-lru", "volatile-ttl"]
)
def test_under_eviction_every_entry_left_is_listed_and_clears_leave_nothing_to_hit(
    redis_stor: CacheStor,
    server: redis.Redis,
    redis_env: dict[str, str],
    tmp_path: Path,
    policy: str,
) -> None:
    used = int(server.info("memory")["used_memory"])
    server.config_set("maxmemory", used + 1_500_000)
    server.config_set("maxmemory-policy", policy)
    square, runs = squares(redis_stor, "cache/evicted", expire=None if policy[0] == "a" else 600)
    with capture_logs():
        for n in range(400):  # ~4 MB into 1.5 MB: most are evicted
            square(n)
    listed = redis_stor._stores.backend.entries()
    assert 0 < len(listed) < 400
    # Everything of ours in Redis is an entry, which lists itself: no description without
    # its value, no rows of evicted values piling up. (Redis may evict more while we look.)
    keys = our_keys(server)
    assert all(key.startswith(b"mycache:e:{") for key in keys)
    assert len(keys) <= len(listed)
    runs.clear()
    with capture_logs():
        assert [square(n)[0] for n in range(400)] == [n * n for n in range(400)]
    hits = 400 - len(runs)
    assert hits <= len(listed)
    result = mycache("clear", "--yes", cwd=tmp_path, **redis_env)
    assert result.returncode == 0, result.stderr
    assert our_keys(server) == []
    runs.clear()
    with capture_logs():
        for n in range(50):
            square(n)
    assert runs == list(range(50))  # nothing left to hit


def test_clear_by_folder_and_function_and_cache_clear_reach_every_entry(
    redis_stor: CacheStor, server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    square, _ = squares(redis_stor, "cache/a")
    other, _ = squares(redis_stor, "cache/b")

    @redis_stor.cache(folder="cache/a")
    def cube(n: int) -> int:
        return n**3

    for n in range(20):
        square(n), other(n), cube(n)
    assert len(our_keys(server)) == 60
    assert (
        mycache("clear", "--yes", "--function", "cube", cwd=tmp_path, **redis_env).returncode == 0
    )
    assert len(our_keys(server)) == 40
    assert (
        mycache("clear", "--yes", "--folder", "cache/b", cwd=tmp_path, **redis_env).returncode == 0
    )
    assert len(our_keys(server)) == 20
    square.cache_clear()
    assert our_keys(server) == []


def test_a_full_server_still_serves_what_it_holds_and_can_be_cleared(
    redis_stor: CacheStor, server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    square, runs = squares(redis_stor, "cache/full")
    for n in range(40):
        square(n)
    # Another application fills the server up to its limit; nothing may be evicted.
    server.config_set("maxmemory-policy", "noeviction")
    server.config_set("maxmemory", int(server.info("memory")["used_memory"]) + 200_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for n in range(1000):
            server.set(f"other-app:{n}", b"o" * 10_000)
    runs.clear()
    with capture_logs() as events:
        assert [square(n)[0] for n in range(40)] == [n * n for n in range(40)]
        assert runs == []  # every stored value served
        for n in range(40, 60):
            assert square(n)[0] == n * n  # computed; not stored
    warnings = [e for e in events if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["my_cache.write_failed"]  # once per folder
    assert "full (out of memory)" in warnings[0]["reason"]
    assert "maxmemory" in warnings[0]["reason"]
    result = mycache("clear", "--yes", "--folder", "cache/full", cwd=tmp_path, **redis_env)
    assert result.returncode == 0, result.stderr
    assert our_keys(server) == []
    square(1)
    square.cache_clear()


HOLDER = """
import os, sys, time
from my_cache import CacheStor
redis_stor = CacheStor(type_storage="in_redis")

@redis_stor.cache(folder="cache/held")
def slow(n: int) -> int:
    open(sys.argv[1], "w").close()
    while True:
        time.sleep(1)

slow(1)
"""


def test_a_holder_killed_with_kill_9_frees_its_key_within_a_lease(
    redis_stor: CacheStor, server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    started = tmp_path / "started"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(started)],
        env={**os.environ, **redis_env, "MYCACHE_REDIS_LOCK_TIMEOUT": "120"},
    )
    try:
        assert wait_until(started.exists)
        (lock,) = server.scan_iter("mycache:l:*")
        assert 0 < server.pttl(lock) <= redis_store.LEASE * 1000
    finally:
        holder.kill()
        holder.wait()
    # Not renewed any more: gone within one lease, not the 120 s lock timeout.
    assert wait_until(lambda: not server.exists(lock), timeout=redis_store.LEASE + 5)


def test_a_lease_is_renewed_while_its_holder_computes(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    computing, finish = threading.Event(), threading.Event()

    @redis_stor.cache(folder="cache/long", ignore=["computing", "finish"])
    def long_job(n: int) -> int:
        computing.set()
        finish.wait(30)
        return n

    worker = threading.Thread(target=long_job, args=(1,))
    worker.start()
    assert computing.wait(30)
    (lock,) = server.scan_iter("mycache:l:*")
    times_to_live = [server.pttl(lock)]

    def renewed() -> bool:
        times_to_live.append(server.pttl(lock))
        return times_to_live[-1] > times_to_live[-2] + 100

    assert wait_until(renewed, timeout=redis_store.LEASE * 2)
    finish.set()
    worker.join()
    assert not server.exists(lock)


JOBS = """
import asyncio, os, pathlib
from my_cache import CacheStor

redis_stor = CacheStor(type_storage="in_redis")
signals = pathlib.Path(os.environ["JOB_SIGNALS"])


@redis_stor.cache_async(folder="cache/jobs")
async def job(n: int) -> int:
    (signals / f"started-{n}").touch()
    while not (signals / "finish").exists():
        await asyncio.sleep(0.02)
    if (signals / "fail").exists():
        raise RuntimeError("the holder's run fails")
    return n
"""
HOLD_JOBS = "import asyncio, sys, jobs; asyncio.run(jobs.run(int(sys.argv[1])))"
RUN = """

async def run(count: int) -> None:
    await asyncio.gather(*(job(n) for n in range(count)), return_exceptions=True)
"""


@pytest.fixture
def jobs(
    tmp_path: Path, redis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Path, Callable[[int], subprocess.Popen[bytes]]]]:
    """A module of cached async jobs, imported here and by holder processes, which compute
    ``count`` jobs until the test creates the ``finish`` file (and fail if ``fail`` exists)."""
    (tmp_path / "jobs.py").write_text(JOBS + RUN)
    signals = tmp_path / "signals"
    signals.mkdir()
    monkeypatch.setenv("JOB_SIGNALS", str(signals))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("jobs")
    holders: list[subprocess.Popen[bytes]] = []

    def hold(count: int) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD_JOBS, str(count)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        holders.append(process)
        assert wait_until(lambda: len(list(signals.glob("started-*"))) == count)
        return process

    yield module, signals, hold
    (signals / "finish").touch()
    for process in holders:
        process.wait(30)
    module.redis_stor.close()
    sys.modules.pop("jobs")


def test_a_cancelled_waiter_never_takes_the_lock(
    server: redis.Redis, jobs: tuple[Any, Path, Callable[[int], Any]]
) -> None:
    module, signals, hold = jobs
    (signals / "fail").touch()
    holder = hold(1)

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(module.job(0), 0.3)

    asyncio.run(give_up())
    module.redis_stor._locker.shutdown()  # any attempt still under way has ended
    (signals / "finish").touch()
    holder.wait(30)  # its run failed: its lock is released, and no waiter takes it
    assert list(server.scan_iter("mycache:l:*")) == []


def test_a_result_that_cannot_be_stored_releases_its_lock(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    @redis_stor.cache(folder="cache/unpicklable")
    def make(n: int) -> Any:
        return lambda: n

    with capture_logs() as events:
        assert make(1)() == 1
    assert [e["event"] for e in events] == ["my_cache.unstorable_result"]
    assert our_keys(server) == []


def test_a_value_over_the_size_limit_is_returned_and_warned_of(
    redis_stor: CacheStor, server: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "MAX_VALUE", 1_000_000)
    square, _ = squares(redis_stor, "cache/sizes")
    square(1)

    @redis_stor.cache(folder="cache/sizes")
    def big(n: int) -> bytes:
        return b"b" * 2_000_000

    with capture_logs() as events:
        assert len(big(1)) == 2_000_000
        assert square(1)[0] == 1  # other functions keep their cache
    (warning,) = events
    assert warning["event"] == "my_cache.unstorable_result"
    assert warning["function"].endswith("big") and "MiB" in warning["reason"]
    assert len(our_keys(server)) == 1


def test_writing_a_large_value_takes_about_one_copy_of_it(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    value = os.urandom(64 * 2**20)

    @redis_stor.cache(folder="cache/large", ignore=["value"])
    def large(n: int) -> bytes:
        return value

    tracemalloc.start()
    try:
        large(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * len(value)
    assert large(1) == value


def test_keys_of_other_applications_cost_only_themselves(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    square, runs = squares(redis_stor, "cache/foreign")
    for n in range(60):
        square(n)
    (name,) = [k for k in server.scan_iter("mycache:e:*") if server.hget(k, "d") is not None][:1]
    server.delete(name)
    server.set(name, b"another application's string")
    server.set("mycache:e:{not-ours}", b"x")
    runs.clear()
    with capture_logs() as events:
        assert [square(n)[0] for n in range(60)] == [n * n for n in range(60)]
    assert len(runs) == 1  # only the call whose key was taken over
    assert [e["event"] for e in events] == ["my_cache.foreign_key"]
    assert server.get(name) == b"another application's string"  # left alone
    assert len(redis_stor._stores.backend.entries()) == 59
    square.cache_clear()
    assert sorted(server.scan_iter("mycache:*")) == sorted([name, b"mycache:e:{not-ours}"])


def test_management_calls_raise_one_public_error_naming_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYCACHE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    redis_stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, _ = squares(redis_stor, "cache/down")
    with capture_logs():
        assert square(2)[0] == 4  # decorated calls never raise
        with pytest.raises(CacheStoreError, match=r"cannot clear .*padded_square.*unreachable"):
            square.cache_clear()
        with pytest.raises(CacheStoreError, match="cannot invalidate"):
            square.invalidate(2)
    redis_stor.close()


def test_waiting_for_other_processes_leaves_the_event_loops_executor_free(
    server: redis.Redis, jobs: tuple[Any, Path, Callable[[int], Any]]
) -> None:
    module, signals, hold = jobs
    hold(10)  # another process computes jobs 0-9

    async def main() -> list[int]:
        waiters = [asyncio.create_task(module.job(n)) for n in range(10)]
        await asyncio.sleep(0)
        # The program's own threads, and a key no one computes, while ten callers wait.
        own = await asyncio.wait_for(
            asyncio.gather(*(asyncio.to_thread(lambda: 7) for _ in range(40))), 30
        )
        (signals / "finish").touch()  # lets module.job(99) end too, once it runs
        unrelated = await asyncio.wait_for(module.job(99), 30)
        assert own == [7] * 40 and unrelated == 99
        return await asyncio.gather(*waiters)

    assert asyncio.run(main()) == list(range(10))


def test_a_stalled_server_holds_no_lock_for_longer_than_a_lease(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_redis_server.start()
    monkeypatch.setenv("MYCACHE_REDIS_URL", own_redis_server.url)
    monkeypatch.setenv("MYCACHE_REDIS_READ_TIMEOUT", "0.3")
    redis_stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, runs = squares(redis_stor, "cache/stall")
    assert own_redis_server.process is not None
    own_redis_server.process.send_signal(signal.SIGSTOP)
    try:
        with capture_logs() as events:
            assert square(3)[0] == 9
            assert square(3)[0] == 9  # straight to the function while it is away
    finally:
        own_redis_server.process.send_signal(signal.SIGCONT)
    assert runs == [3, 3]
    assert [e["event"] for e in events][:1] == ["my_cache.shared_cache_unreachable"]
    with own_redis_server.client() as client:
        for lock in client.scan_iter("mycache:l:*"):  # a request that ran after we gave up
            assert client.pttl(lock) <= redis_store.LEASE * 1000
    redis_stor.close()


def test_entries_of_the_older_layout_are_listed_as_stale_and_cleared(
    server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    """Before an entry was one key, a value, its JSON row and its expiry were three keys."""
    key = f"{'a' * 16}:{'b' * 12}:{'c' * 32}"
    server.set(f"mycache:value:cache/old:{key}", bytes(dump_result(5, key).joined()))
    row = {"function": "m:f", "arg_string": "n=1", "size": 20, "created": 1.0e9, "expires": None}
    server.hset("mycache:rows:cache/old", key, json.dumps(row))
    server.hset("mycache:rows:cache/old", "garbage", "{not json")
    server.sadd("mycache:folders", "cache/old")
    server.set(f"mycache:value:cache/old:{'d' * 16}:{'e' * 12}:x", b"another application's")
    result = mycache("ls", "--json", cwd=tmp_path, **redis_env)
    assert result.returncode == 0, result.stderr
    (listed,) = json.loads(result.stdout)
    assert listed["folder"] == "cache/old" and listed["key"] == key
    assert listed["arg_string"] == "n=1" and listed["stale"] is True
    result = mycache("clear", "--stale", "--yes", cwd=tmp_path, **redis_env)
    assert result.returncode == 0, result.stderr
    assert not server.exists(f"mycache:value:cache/old:{key}")
    assert server.hkeys("mycache:rows:cache/old") == [b"garbage"]
    assert server.get(f"mycache:value:cache/old:{'d' * 16}:{'e' * 12}:x") is not None


@pytest.mark.parametrize(
    "auth",
    [
        "redis://:S3cr3tPw@{where}",
        "redis://user:S3cr3tPw@{where}",
        "redis://{where}?password=S3cr3tPw",
    ],
)
def test_the_password_is_never_printed(
    auth: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = auth.format(where=f"127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("MYCACHE_REDIS_URL", url)
    monkeypatch.setenv("MYCACHE_TYPE_STORAGE", "in_redis")
    redis_stor = CacheStor()
    square, _ = squares(redis_stor, "cache/secret")
    with capture_logs() as events:
        assert square(2)[0] == 4
        with pytest.raises(CacheStoreError) as raised:
            square.cache_clear()
    redis_stor.close()
    printed = [repr(redis_stor), str(raised.value), repr(raised.value.__cause__), *map(str, events)]
    result = mycache("ls", cwd=tmp_path)
    printed += [result.stdout, result.stderr]
    assert result.returncode == 1 and "unreachable" in result.stderr
    assert events and not [text for text in printed if "S3cr3tPw" in text]


class SilentServer:
    """Accepts connections and reads what is sent, never answering: a stalled server."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.received = bytearray()
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.socket.getsockname()[1]}/0"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                with self.lock:
                    self.connections += 1
                threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            while data := connection.recv(65536):
                with self.lock:
                    self.received += data

    def commands_since(self, mark: int) -> set[bytes]:
        with self.lock:
            words = bytes(self.received[mark:]).split(b"\r\n")
        return {word.upper() for word in words if word.isalpha()}


def test_once_a_server_stalls_calls_send_it_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = SilentServer()
    monkeypatch.setenv("MYCACHE_REDIS_URL", silent.url)
    monkeypatch.setenv("MYCACHE_REDIS_READ_TIMEOUT", "0.3")
    redis_stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, runs = squares(redis_stor, "cache/silent")
    with capture_logs() as events:
        square(0)  # waits for the timeout once
        mark, connected = len(silent.received), silent.connections
        for n in range(1, 30):
            square(n)
        connected_since = silent.connections - connected
    redis_stor.close()
    silent.socket.close()
    assert runs == list(range(30))
    # After the first call, nothing but the probe's connection (one a second) and PING.
    assert silent.commands_since(mark) <= {b"PING", b"CLIENT", b"SETINFO", b"HELLO"}
    assert connected_since <= 2
    assert [e["event"] for e in events] == ["my_cache.shared_cache_unreachable"]


def test_another_applications_hash_and_lock_cost_only_their_call(
    redis_stor: CacheStor, server: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    square, runs = squares(redis_stor, "cache/theirs")
    square(1)
    square(2)
    (first, second) = sorted(server.scan_iter("mycache:e:*"))
    server.delete(first)
    server.hset(first, mapping={"d": b"their data", "owner": b"another app"})
    lock = second.replace(b"mycache:e:", b"mycache:l:", 1)
    server.delete(second)
    server.set(lock, b"their lock, no expiry")
    monkeypatch.setattr(redis_stor._stores.backend._server, "lock_timeout", 600)
    runs.clear()
    done: list[int] = []
    with capture_logs() as events:
        caller = threading.Thread(target=lambda: done.extend(square(n)[0] for n in (1, 2)))
        caller.start()
        caller.join(60)  # were the foreign lock waited for, this would take 600 s
    assert done == [1, 4] and sorted(runs) == [1, 2]
    assert {e["event"] for e in events} == {"my_cache.foreign_key"}
    square.cache_clear()
    assert server.hgetall(first) == {b"d": b"their data", b"owner": b"another app"}
    assert server.get(lock) == b"their lock, no expiry"


def fork_child_calls(redis_stor: CacheStor, square: Any) -> None:
    def child() -> None:
        with capture_logs():
            assert [square(n)[0] for n in range(5)] == [n * n for n in range(5)]
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    if process.is_alive():
        process.kill()
    assert process.exitcode == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_threads_call_the_cache_works(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    square, _ = squares(redis_stor, "cache/forked")
    for _ in range(3):
        callers = [threading.Thread(target=square, args=(n,)) for n in range(4)]
        for caller in callers:
            caller.start()
        fork_child_calls(redis_stor, square)  # while the threads take the client's pool lock
        for caller in callers:
            caller.join()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_during_an_outage_uses_the_server_once_back(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_redis_server.start()
    monkeypatch.setenv("MYCACHE_REDIS_URL", own_redis_server.url)
    redis_stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, _ = squares(redis_stor, "cache/outage")
    own_redis_server.stop()
    with capture_logs():
        square(9)  # the parent now waits for its probe
    own_redis_server.start()
    fork_child_calls(redis_stor, square)
    with own_redis_server.client() as client:
        assert len(list(client.scan_iter("mycache:e:*"))) == 5  # the child stored its values
    redis_stor.close()


def test_a_cluster_that_cannot_be_reached_is_an_outage_not_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MYCACHE_REDIS_URL", f"redis://:S3cr3tPw@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("MYCACHE_REDIS_CLUSTER", "true")
    redis_stor = CacheStor(type_storage=TypeStorage.IN_REDIS)
    square, runs = squares(redis_stor, "cache/nocluster")
    with capture_logs() as events:
        assert [square(n)[0] for n in range(10)] == [n * n for n in range(10)]
    redis_stor.close()
    assert runs == list(range(10))
    assert [e["event"] for e in events] == ["my_cache.shared_cache_unreachable"]
    assert "S3cr3tPw" not in str(events)


def test_a_cluster_setting_error_never_prints_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    redis_env = {
        "MYCACHE_TYPE_STORAGE": "in_redis",
        "MYCACHE_REDIS_CLUSTER": "true",
        "MYCACHE_REDIS_URL": "redis://:S3cr3tPw@cache.internal:6379/1",
    }
    result = mycache("ls", cwd=tmp_path, **redis_env)
    assert result.returncode == 1 and "database 0" in result.stderr
    assert "S3cr3tPw" not in result.stderr + result.stdout


def test_cli_folder_is_a_name_not_a_local_path(
    redis_stor: CacheStor, server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    square, _ = squares(redis_stor, "reports")
    square(1)
    (tmp_path / "reports").write_text("a local file of the same name")
    result = mycache("ls", "--json", "--folder", "reports", cwd=tmp_path, **redis_env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 1


def test_a_hash_with_an_entrys_fields_and_more_is_not_ours(
    redis_stor: CacheStor, server: redis.Redis
) -> None:
    square, runs = squares(redis_stor, "cache/lookalike")
    square(1)
    (name,) = server.scan_iter("mycache:e:*")
    lookalike = {b"d": b"MC\x03 theirs", b"f": b"m:f", b"a": b"", b"c": b"1", b"owner": b"them"}
    server.delete(name)
    server.hset(name, mapping=lookalike)
    with capture_logs():
        assert square(1)[0] == 1  # a miss, damaged or not: computed
        square.cache_clear()
    assert runs == [1, 1]
    assert server.hgetall(name) == lookalike  # neither overwritten nor deleted


def test_listings_and_clears_take_only_what_is_provably_an_entry(
    redis_stor: CacheStor, server: redis.Redis, redis_env: dict[str, str], tmp_path: Path
) -> None:
    square, _ = squares(redis_stor, "a")
    square(1)
    # Another application's keys under the prefix: a name that is not UTF-8, a hash with an
    # entry's fields and one more, one naming no function, and older-layout names of its own.
    server.set(b"mycache:e:{a:\xff}", b"theirs")
    extra = {b"d": b"MC\x03x", b"f": b"m:g", b"a": b"", b"c": b"1", b"y": b"theirs"}
    server.hset("mycache:e:{a:k1}", mapping=extra)
    unnamed = {b"d": b"MC\x03x", b"f": b"", b"a": b"", b"c": b"1"}
    server.hset("mycache:e:{a:k}", mapping=unnamed)
    server.set("mycache:value:a:k", b"OTHER APP DATA")
    server.hset("mycache:rows:a", mapping={"k": "other", "keep": "1"})
    for args in (("ls", "--json"), ("ls", "--json", "--folder", "a")):
        result = mycache(*args, cwd=tmp_path, **redis_env)
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == 1  # square(1)'s entry only
    result = mycache("clear", "--yes", cwd=tmp_path, **redis_env)
    assert result.returncode == 0 and result.stdout.startswith("deleted 1 entries")
    assert server.get(b"mycache:e:{a:\xff}") == b"theirs"
    assert server.hgetall("mycache:e:{a:k1}") == extra
    assert server.hgetall("mycache:e:{a:k}") == unnamed
    assert server.get("mycache:value:a:k") == b"OTHER APP DATA"
    assert server.hgetall("mycache:rows:a") == {b"k": b"other", b"keep": b"1"}
