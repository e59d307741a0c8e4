"""A real three-node Redis Cluster on loopback, for the IN_REDIS tests against a cluster.

Each node is a server process of its own (``server_executable()``: ``redis-server`` from PATH,
else the dev extra's ``valkey-server``), in cluster mode, with a folder, a port and a cluster bus
port of its own. The cluster is formed from Python, as ``redis-cli --cluster create`` would form
it, so no ``redis-cli`` is needed: the 16384 slots are split in three, one range per node, each
node is given a config epoch of its own, each pair of nodes MEETs, and ``start()`` returns once
every node says ``cluster_state:ok`` and maps every slot to the node that was given it: about
2 s, which Redis and Valkey themselves take (below). Three primaries, no replicas: a node that
stops takes its slots with it.

The cluster bus port is set (``--cluster-port``, Redis 7.0 / Valkey 7.2 and later) rather than
left at the default of port + 10000, which is past 65535 for many of the ports ``free_port()``
hands out.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import wait_until
from tests.redis_server import free_port, server_executable

SLOTS = 16384
NODES = 3
# A cluster's node (Redis and Valkey alike) only says ``cluster_state:ok`` 2 s after its cluster
# logic first ran (CLUSTER_WRITABLE_DELAY), however soon its slots are covered: start() takes
# about that long, and gives up after READY_TIMEOUT.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# The longest that one call to a node waits for its reply: while the cluster forms, and after.
PING_TIMEOUT = 0.2
POLL_TIMEOUT = 5.0
CALL_TIMEOUT = 20.0


def distinct_free_ports(count: int) -> list[int]:
    """``count`` ports of ``free_port()``, no two the same."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def slot_ranges(nodes: int = NODES) -> list[range]:
    """The 16384 slots split into ``nodes`` ranges of nearly equal size, in order."""
    bounds = [SLOTS * index // nodes for index in range(nodes + 1)]
    return [range(start, end) for start, end in itertools.pairwise(bounds)]


def end_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate every process of ``processes`` (all at once: each takes up to a server cron
    tick, 100 ms, to act on SIGTERM), kill those still there after STOP_TIMEOUT, reap them all
    and empty the list. No process is left running, even if this is interrupted."""
    try:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        processes.clear()


@contextlib.contextmanager
def polling_clients(ports: list[int], timeout: float) -> Iterator[list[redis.Redis]]:
    """A client per port that gives up on a call after ``timeout``, without retrying, and is
    closed on leaving: one connection per node for all the polls (a new one per poll costs more
    CPU than the nodes themselves use while they form the cluster)."""
    clients = [
        redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        for port in ports
    ]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


class RedisCluster:
    """``start()`` and ``stop()`` three cluster nodes; they keep their ports across restarts and
    each ``start()`` forms a new, empty cluster. Also a context manager: ``with RedisCluster(d)
    as cluster: ...`` starts it and stops it."""

    def __init__(self, directory: Path) -> None:
        self.executable = server_executable()
        self.directory = directory
        ports = distinct_free_ports(2 * NODES)
        self.ports = ports[:NODES]  # clients' ports
        self.bus_ports = ports[NODES:]  # the cluster bus: nodes talk to one another there
        self.slot_ranges = slot_ranges()
        self.processes: list[subprocess.Popen[bytes]] = []
        # Also ends the processes when the interpreter exits without stop() having run.
        self._finalizer = weakref.finalize(self, end_processes, self.processes)
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """The URL of one node, from which ``redis.cluster.RedisCluster.from_url`` finds all."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def urls(self) -> list[str]:
        """The URL of each node, in the order of ``ports``."""
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    def node_directory(self, index: int) -> Path:
        return self.directory / f"node-{index}"

    def log(self, index: int) -> Path:
        return self.node_directory(index) / "server.log"

    def port_for_slot(self, slot: int) -> int:
        """The port of the node that ``start()`` gave ``slot`` to."""
        for port, slots in zip(self.ports, self.slot_ranges, strict=True):
            if slot in slots:
                return port
        raise ValueError(f"no such slot: {slot}")

    def client(self, **options: Any) -> redis.cluster.RedisCluster:
        """A cluster client that has read the cluster's slot map; the caller closes it."""
        return redis.cluster.RedisCluster.from_url(self.url, **options)

    def node_client(self, port: int) -> redis.Redis:
        """A plain client of the one node on ``port``: it sees only that node's keys."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=CALL_TIMEOUT,
            socket_connect_timeout=CALL_TIMEOUT,
        )

    def flush(self) -> None:
        """Empty every node, scripts included."""
        for port in self.ports:
            with self.node_client(port) as node:
                node.flushall()
                node.script_flush()

    def start(self) -> None:
        if self.processes:
            raise RuntimeError("the cluster is already running")
        began = time.monotonic()
        try:
            for index, (port, bus_port) in enumerate(zip(self.ports, self.bus_ports, strict=True)):
                self._start_node(index, port, bus_port)
            # A short timeout for PING: a port that another program took may accept and never
            # answer, while the node that could not listen on it exits; the next poll sees that.
            with polling_clients(self.ports, PING_TIMEOUT) as nodes:
                if not wait_until(lambda: self._answer(nodes), timeout=READY_TIMEOUT):
                    raise RuntimeError(f"{self.executable}: nodes did not answer\n{self._logs()}")
            with polling_clients(self.ports, POLL_TIMEOUT) as nodes:
                self._form(nodes)
                if not wait_until(lambda: self._ready(nodes), timeout=READY_TIMEOUT):
                    raise RuntimeError(f"{self.executable}: no cluster formed\n{self._logs()}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _start_node(self, index: int, port: int, bus_port: int) -> None:
        directory = self.node_directory(index)
        directory.mkdir(parents=True, exist_ok=True)
        # A node reads its nodes.conf back on start: a restart forms a new cluster, not the old.
        (directory / "nodes.conf").unlink(missing_ok=True)
        arguments = [self.executable, "--bind", "127.0.0.1", "--port", str(port)]
        arguments += ["--cluster-enabled", "yes", "--cluster-port", str(bus_port)]
        arguments += ["--cluster-config-file", str(directory / "nodes.conf")]
        arguments += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        arguments += ["--logfile", str(self.log(index))]
        self.processes.append(
            subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    def _check_running(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.executable} exited with {process.returncode}\n{self._logs()}"
                )

    def _logs(self) -> str:
        tails = []
        for index in range(NODES):
            log = self.log(index)
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            tails.append(f"--- node {index} ({log}):\n{text[-2000:]}")
        return "\n".join(tails)

    def _answer(self, nodes: list[redis.Redis]) -> bool:
        for node in nodes:
            self._check_running()  # before each call: a node that could not listen is gone
            try:
                node.ping()
            except (redis.ConnectionError, redis.TimeoutError):
                return False
        return True

    def _form(self, nodes: list[redis.Redis]) -> None:
        """What ``redis-cli --cluster create`` does, without replicas: slots, a config epoch of
        each node's own (so no epoch collisions to resolve), then MEET."""
        for epoch, (node, slots) in enumerate(zip(nodes, self.slot_ranges, strict=True), 1):
            node.cluster("ADDSLOTS", *slots)
            node.cluster("SET-CONFIG-EPOCH", epoch)
        # Each pair meets: a node that only hears of another through gossip can take seconds
        # to. MEET's third argument is the bus port, without which a node tries port + 10000.
        addresses = list(zip(self.ports, self.bus_ports, strict=True))
        for index, node in enumerate(nodes):
            for port, bus_port in addresses[index + 1 :]:
                node.cluster("MEET", "127.0.0.1", port, bus_port)

    def _ready(self, nodes: list[redis.Redis]) -> bool:
        """Whether every node says the cluster is ok and maps each slot to the node given it."""
        self._check_running()
        try:
            return self._formed(nodes)
        except redis.TimeoutError:
            return False

    def _formed(self, nodes: list[redis.Redis]) -> bool:
        for node in nodes:
            info: dict[str, Any] = node.cluster("INFO")
            if str(info.get("cluster_state")) != "ok":
                return False
            if int(info.get("cluster_known_nodes", 0)) != NODES:
                return False
            if int(info.get("cluster_slots_ok", 0)) != SLOTS:
                return False
        expected = sorted(
            (slots.start, slots.stop - 1, port)
            for port, slots in zip(self.ports, self.slot_ranges, strict=True)
        )
        for node in nodes:
            slot_map: list[list[Any]] = node.cluster("SLOTS")
            seen = sorted((int(row[0]), int(row[1]), int(row[2][1])) for row in slot_map)
            if seen != expected:
                return False
            if any(row[2][0] not in (b"127.0.0.1", "127.0.0.1") for row in slot_map):
                return False
        return True

    def stop(self) -> None:
        """End every node's process (terminated, killed if it lingers); harmless when stopped."""
        end_processes(self.processes)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
