"""The three-node Redis Cluster of tests/redis_cluster.py is a real cluster: every node serves
its third of the slots, a cluster client reaches keys on all of them, scans every primary, runs
MULTI/EXEC on one hash tag and Lua scripts on one key; and stopping it ends every process."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.cluster
from redis.exceptions import CrossSlotTransactionError, ResponseError, WatchError

from tests.redis_cluster import SLOTS, RedisCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def client(cluster: RedisCluster) -> Iterator[redis.cluster.RedisCluster]:
    """A cluster client of the module's cluster, emptied for this test."""
    cluster.flush()
    with cluster.client() as cluster_client:
        yield cluster_client


def keyslot(client: redis.cluster.RedisCluster, key: str) -> int:
    """``client.keyslot(key)``, which redis-py leaves unannotated."""
    return int(cast(Any, client).keyslot(key))


def pipeline(client: redis.cluster.RedisCluster, *, transaction: bool) -> Any:
    """``client.pipeline(transaction=...)``, which redis-py leaves unannotated."""
    return cast(Any, client).pipeline(transaction=transaction)


def port_of(client: redis.cluster.RedisCluster, key: str) -> int:
    """The port of the node that the cluster client sends ``key`` to."""
    return int(client.nodes_manager.get_node_from_slot(keyslot(client, key)).port)


def keys_on(cluster: RedisCluster, port: int, pattern: str = "*") -> set[bytes]:
    """The keys that the one node on ``port`` holds: a plain client sees no other node's."""
    with cluster.node_client(port) as node:
        return set(node.scan_iter(match=pattern))


def test_each_node_serves_its_third_of_the_slots(
    cluster: RedisCluster, client: redis.cluster.RedisCluster
) -> None:
    primaries = client.nodes_manager.get_nodes_by_server_type("primary")
    assert sorted(node.port for node in primaries) == sorted(cluster.ports)
    for slot in range(SLOTS):
        node = client.nodes_manager.get_node_from_slot(slot)
        assert node.port == cluster.port_for_slot(slot)
    for port in cluster.ports:
        with cluster.node_client(port) as node:
            info = node.cluster("INFO")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_known_nodes"]) == 3
            assert int(info["cluster_slots_ok"]) == SLOTS
    # Any node's URL leads a client to the whole cluster.
    for url in cluster.urls:
        with redis.cluster.RedisCluster.from_url(url) as other:
            other.set(f"from:{url}", url)
            assert client.get(f"from:{url}") == url.encode()


def test_keys_land_on_all_three_nodes(
    cluster: RedisCluster, client: redis.cluster.RedisCluster
) -> None:
    keys = [f"spread:{number}" for number in range(30)]
    expected: dict[int, set[bytes]] = {port: set() for port in cluster.ports}
    for key in keys:
        slot = keyslot(client, key)
        assert slot == client.cluster_keyslot(key)  # the server's own count
        port = port_of(client, key)
        assert port == cluster.port_for_slot(slot)
        expected[port].add(key.encode())
        assert client.set(key, key)
    assert all(expected.values()), expected
    for port, names in expected.items():
        assert keys_on(cluster, port) == names
        with cluster.node_client(port) as node:
            for name in names:
                assert node.get(name) == name


def test_300_keys_round_trip(cluster: RedisCluster, client: redis.cluster.RedisCluster) -> None:
    values = {f"key:{number}": f"value {number}".encode() for number in range(300)}
    for key, value in values.items():
        assert client.set(key, value)
    for key, value in values.items():
        assert client.get(key) == value
    assert client.mget_nonatomic(list(values)) == list(values.values())
    # DBSIZE goes to one node (the default node) unless told to go to every primary.
    assert client.dbsize(target_nodes=redis.cluster.RedisCluster.PRIMARIES) == 300
    per_node = [len(keys_on(cluster, port)) for port in cluster.ports]
    assert sum(per_node) == 300
    assert min(per_node) > 50


def test_scan_iter_finds_the_keys_of_every_primary(
    cluster: RedisCluster, client: redis.cluster.RedisCluster
) -> None:
    wanted = {f"scan:{number}".encode() for number in range(300)}
    for key in wanted:
        client.set(key, b"1")
    for number in range(50):
        client.set(f"other:{number}", b"1")
    # SCAN goes to every primary by default; a small count makes each node's cursor turn.
    assert set(client.scan_iter(match="scan:*", count=10)) == wanted
    assert (
        set(client.scan_iter(match="scan:*", target_nodes=redis.cluster.RedisCluster.PRIMARIES))
        == wanted
    )
    for port in cluster.ports:  # one node's own SCAN sees only its share
        share = keys_on(cluster, port, "scan:*")
        assert share and share < wanted
    # Delete by pattern: DEL split by slot, a command per slot.
    assert client.delete(*client.scan_iter(match="scan:*", count=100)) == 300
    assert list(client.scan_iter(match="scan:*")) == []
    assert len(list(client.scan_iter(match="other:*"))) == 50


def test_multi_exec_on_one_hash_tag(
    cluster: RedisCluster, client: redis.cluster.RedisCluster
) -> None:
    keys = ["{tag}:a", "{tag}:count", "{tag}:b"]
    port = port_of(client, keys[0])
    assert {port_of(client, key) for key in keys} == {port}
    with cluster.node_client(port) as node:
        node.config_resetstat()
    with pipeline(client, transaction=True) as transaction:
        transaction.set(keys[0], "1")
        transaction.incr(keys[1])
        transaction.incr(keys[1])
        transaction.get(keys[0])
        # A cluster transaction leaves SET's reply raw (b"OK") where a plain one says True.
        assert transaction.execute() in ([b"OK", 1, 2, b"1"], [True, 1, 2, b"1"])
    with cluster.node_client(port) as node:
        stats = node.info("commandstats")
        assert stats["cmdstat_multi"]["calls"] == 1
        assert stats["cmdstat_exec"]["calls"] == 1
    assert keys_on(cluster, port) == {keys[0].encode(), keys[1].encode()}
    # WATCH on the tag's slot: a change by another client aborts the transaction.
    with pipeline(client, transaction=True) as transaction:
        transaction.watch(keys[2])
        assert transaction.get(keys[2]) is None
        client.set(keys[2], "theirs")
        transaction.multi()
        transaction.set(keys[2], "ours")
        with pytest.raises(WatchError):
            transaction.execute()
    assert client.get(keys[2]) == b"theirs"
    # Keys of several slots are refused before anything is sent.
    with pipeline(client, transaction=True) as transaction:
        transaction.set("untagged:a", "1")
        transaction.set("untagged:b", "1")
        with pytest.raises(CrossSlotTransactionError):
            transaction.execute()


def test_lua_script_on_one_key(cluster: RedisCluster, client: redis.cluster.RedisCluster) -> None:
    add = client.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    keys = [f"lua:{number}" for number in range(30)]
    assert {port_of(client, key) for key in keys} == set(cluster.ports)
    for key in keys:
        assert add(keys=[key], args=[5]) == 5
        assert add(keys=[key], args=[2], client=client) == 7
    cluster.flush()  # scripts too: the next call loads the script again (NOSCRIPT)
    assert add(keys=[keys[0]], args=[3]) == 3
    with cluster.node_client(port_of(client, keys[0])) as node:
        assert node.script_exists(add.sha) == [True]


def test_pipeline_across_nodes(cluster: RedisCluster, client: redis.cluster.RedisCluster) -> None:
    """A pipeline without a transaction is split by node, its replies back in order; EVAL goes
    through execute_command (redis-py's ClusterPipeline has no working eval())."""
    keys = [f"hash:{number}" for number in range(30)]
    assert {port_of(client, key) for key in keys} == set(cluster.ports)
    client.set("plain", "not a hash")
    with pipeline(client, transaction=False) as batch:
        for key in keys:
            batch.hset(key, mapping={"d": key, "f": "function"})
        assert batch.execute() == [2] * len(keys)
    with pipeline(client, transaction=False) as batch:
        for key in [*keys, "plain"]:
            batch.hmget(key, "d", "f")
            batch.hstrlen(key, "d")
        replies = batch.execute(raise_on_error=False)
    for key, fields, size in zip(keys, replies[0:-2:2], replies[1:-2:2], strict=True):
        assert fields == [key.encode(), b"function"]
        assert size == len(key)
    assert all(isinstance(reply, ResponseError) for reply in replies[-2:])
    with pipeline(client, transaction=False) as batch:
        for key in keys:
            batch.execute_command("EVAL", "return redis.call('del', KEYS[1])", 1, key)
        assert batch.execute() == [1] * len(keys)
    assert client.exists(*keys) == 0


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_ends_every_node_and_start_forms_a_new_cluster(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "cluster")
    with cluster:
        processes = list(cluster.processes)
        with cluster.client() as client:
            client.set("before", "restart")
    assert [process.poll() is not None for process in processes] == [True] * 3
    assert cluster.processes == []
    assert all(refuses_connections(port) for port in cluster.ports)
    cluster.stop()  # harmless when stopped
    with cluster, cluster.client() as client:
        assert client.get("before") is None
        assert client.set("after", "restart")
        primaries = client.nodes_manager.get_nodes_by_server_type("primary")
        assert {node.port for node in primaries} == set(cluster.ports)
    assert all(refuses_connections(port) for port in cluster.ports)


def test_a_failed_start_leaves_no_node_running(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "cluster")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", cluster.ports[1]))
        squatter.listen()
        with pytest.raises(RuntimeError, match="exited"):
            cluster.start()
    assert cluster.processes == []
    assert refuses_connections(cluster.ports[0])
    assert refuses_connections(cluster.ports[2])
