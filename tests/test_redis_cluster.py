"""IN_REDIS against a real three-node Redis Cluster (``redis_cluster = true``): entries spread
over the nodes; hits, locks, listings and clears reach every node."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from my_cache import CacheStor
from tests.redis_cluster import RedisCluster
from tests.test_cli import mycache


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def env(cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cluster.flush()
    values = {
        "MYCACHE_TYPE_STORAGE": "in_redis",
        "MYCACHE_REDIS_URL": cluster.url,
        "MYCACHE_REDIS_CLUSTER": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def entries_per_node(cluster: RedisCluster) -> list[int]:
    counts = []
    for port in cluster.ports:
        with cluster.node_client(port) as node:
            counts.append(len(list(node.scan_iter("mycache:e:*"))))
    return counts


def test_entries_spread_over_every_node_and_are_served_from_them(
    cluster: RedisCluster, env: dict[str, str], tmp_path: Path
) -> None:
    stor = CacheStor()
    runs: list[int] = []

    @stor.cache(folder="cache/spread")
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    with capture_logs() as events:
        assert [square(n) for n in range(90)] == [n * n for n in range(90)]
        assert [square(n) for n in range(90)] == [n * n for n in range(90)]
    assert runs == list(range(90)) and events == []
    assert all(count > 0 for count in entries_per_node(cluster))
    assert sum(entries_per_node(cluster)) == 90
    assert len(stor._stores.backend.entries()) == 90
    listed = mycache("ls", "--json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count('"key"') == 90
    assert square.invalidate(3) is True
    square.cache_clear()
    assert entries_per_node(cluster) == [0, 0, 0]
    stor.close()


def test_clear_reaches_every_node(
    cluster: RedisCluster, env: dict[str, str], tmp_path: Path
) -> None:
    stor = CacheStor()

    @stor.cache(folder="cache/a")
    def double(n: int) -> int:
        return 2 * n

    @stor.cache_async(folder="cache/b")
    async def triple(n: int) -> int:
        return 3 * n

    async def fill() -> None:
        for n in range(30):
            await triple(n)
        await stor.join()

    for n in range(30):
        double(n)
    asyncio.run(fill())
    assert sum(entries_per_node(cluster)) == 60
    result = mycache("clear", "--yes", "--folder", "cache/b", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert sum(entries_per_node(cluster)) == 30
    assert mycache("clear", "--yes", cwd=tmp_path, **env).returncode == 0
    assert entries_per_node(cluster) == [0, 0, 0]
    stor.close()


def test_one_computation_per_key_across_callers(cluster: RedisCluster, env: dict[str, str]) -> None:
    stors = [CacheStor() for _ in range(4)]  # four caches, as four processes would have
    runs: collections.Counter[int] = collections.Counter()

    async def slow(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(0.05)  # the work itself, long enough for callers to overlap
        return n

    cached = [stor.cache_async(folder="cache/once")(slow) for stor in stors]

    async def main() -> list[int]:
        return await asyncio.gather(*(f(n) for f in cached for n in range(20)))

    assert asyncio.run(main()) == [n for _ in cached for n in range(20)]
    assert runs == collections.Counter(range(20))  # each key computed once
    for stor in stors:
        stor.close()
