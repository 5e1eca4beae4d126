"""Fixtures shared by every test package: real servers on free ports, stopped after."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from hypothesis import settings

from gateway.core.redisproc import RedisProcess, RedisServerError, free_port, start_redis

CLUSTER_NODES: Final = 3  # masters
CLUSTER_BUS_OFFSET: Final = 10_000  # a cluster node also listens on its port + 10000
CLUSTER_READY_S: Final = 20.0
CLUSTER_CREATE_S: Final = 30.0  # redis-cli --cluster create, waiting for the nodes to meet
CLUSTER_ATTEMPTS: Final = 3
CLUSTER_NODE_TIMEOUT_MS: Final = 5000
# A master unreachable this long is failed over to its replica: within a few seconds.
FAILOVER_NODE_TIMEOUT_MS: Final = 1000
# Messages the test broker queues for an absent client with a kept session.
MOSQUITTO_QUEUE: Final = 100_000

# Property tests check behaviour, not speed: hypothesis's per-example deadline (200 ms) fails
# them on a loaded 2-core machine. Speed is measured in bench/.
settings.register_profile("project", deadline=None)
settings.load_profile("project")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real redis-server for the session; use ``redis_url`` for a clean database."""
    proc = start_redis(tmp_path_factory.mktemp("redis"), appendonly=False)
    yield proc
    proc.stop()


def _command(port: int, command: bytes) -> bytes:
    """One inline command to the Redis server on ``port``; its whole (short) reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(command + b"\r\n")
        return s.recv(65536)


def _flushall(port: int) -> None:
    assert _command(port, b"FLUSHALL").startswith(b"+OK")


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """URL of the session's redis-server, emptied before the test."""
    _flushall(redis_server.port)
    return redis_server.url


@dataclass
class RedisClusterProcesses:
    nodes: list[RedisProcess]
    node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS
    appendonly: bool = False

    @property
    def url(self) -> str:
        """The gateway's URL for this cluster (any node; the client finds the others)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def on_every_node(self, command: bytes) -> None:
        """Send ``command`` (inline, e.g. ``b"SCRIPT FLUSH"``) to every node; expect +OK."""
        for node in self.nodes:
            assert _command(node.port, command).startswith(b"+OK")

    def on_every_master(self, command: bytes) -> None:
        """Like ``on_every_node``, skipping replicas (they refuse writes such as FLUSHALL)."""
        for node in self.nodes:
            if node.process.poll() is None and _is_master(node.port):
                assert _command(node.port, command).startswith(b"+OK")

    def node(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def restart(self, node: RedisProcess) -> RedisProcess:
        """Start a stopped node again on its port and folder. It rejoins the cluster as it
        left it (a master failed over while it was down comes back as a replica)."""
        again = _start_cluster_node(
            node.data_dir, port=node.port, node_timeout_ms=self.node_timeout_ms,
            appendonly=self.appendonly,
        )  # fmt: skip
        self.nodes[self.nodes.index(node)] = again
        return again

    def ready(self) -> bool:
        """Every node is up, agrees the cluster is ok, knows every other node, and every
        replica is linked to its master."""
        return all(n.process.poll() is None for n in self.nodes) and _cluster_ready(self.nodes)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + CLUSTER_READY_S
        while not self.ready():
            assert time.monotonic() < deadline, "the Redis Cluster did not become ready"
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET >= 65536:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _start_cluster_node(
    folder: Path,
    *,
    port: int | None = None,
    node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS,
    appendonly: bool = False,
) -> RedisProcess:
    """A cluster-enabled redis-server in ``folder``, on ``port`` or on a free port pair."""
    for _ in range(1 if port is not None else 5):
        try:
            return start_redis(
                folder,
                port if port is not None else _cluster_port(),
                appendonly=appendonly,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(folder / "nodes.conf"),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--repl-diskless-sync-delay", "0",  # replicas sync at once
                ],
            )  # fmt: skip
        except RedisServerError:
            continue  # lost the race for the port
    raise RedisServerError(f"cluster node in {folder} did not start")


def _is_master(port: int) -> bool:
    return b"role:master" in _command(port, b"INFO replication")


def _cluster_ready(nodes: list[RedisProcess]) -> bool:
    replicas = 0
    for node in nodes:
        info = _command(node.port, b"CLUSTER INFO")
        if (
            b"cluster_state:ok" not in info
            or f"cluster_known_nodes:{len(nodes)}".encode() not in info
        ):
            return False
        replication = _command(node.port, b"INFO replication")
        if b"role:slave" in replication:
            if b"master_link_status:up" not in replication:
                return False
            replicas += 1
    # ...and every node has heard which nodes are replicas (the client asks any of them).
    return all(
        sum(b"slave" in line.split(b" ")[2] for line in _cluster_nodes(node.port)) == replicas
        for node in nodes
    )


def _cluster_nodes(port: int) -> list[bytes]:
    """The lines of CLUSTER NODES (one per node: id, address, flags, ...)."""
    reply = _command(port, b"CLUSTER NODES")
    return [line for line in reply.split(b"\r\n")[1].split(b"\n") if line]


@contextlib.contextmanager
def _running_cluster(
    folder: Path,
    *,
    replicas: int,
    node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS,
    appendonly: bool = False,
) -> Iterator[RedisClusterProcesses]:
    """``CLUSTER_NODES`` masters with ``replicas`` replicas each, made with ``redis-cli
    --cluster create`` and ready; every process is stopped after."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is not installed: ./dev.sh test installs Debian's redis-tools")
    failures = []
    # On a loaded machine the nodes now and then never finish meeting: start afresh.
    for attempt in range(CLUSTER_ATTEMPTS):
        cluster = RedisClusterProcesses([], node_timeout_ms, appendonly)
        try:
            for i in range(CLUSTER_NODES * (1 + replicas)):
                cluster.nodes.append(
                    _start_cluster_node(
                        folder / f"try{attempt}" / f"node{i}",
                        node_timeout_ms=node_timeout_ms,
                        appendonly=appendonly,
                    )
                )
            made = subprocess.run(
                [cli, "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=CLUSTER_CREATE_S,
            )  # fmt: skip
            assert made.returncode == 0, made.stdout + made.stderr
            cluster.wait_ready()
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            cluster.stop()
            failures.append(exc)
            continue
        try:
            yield cluster
        finally:
            cluster.stop()
        return
    pytest.fail(f"no Redis Cluster could be made: {failures!r}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """A real Redis Cluster of three redis-server processes (masters, no replicas) for the
    session, made with ``redis-cli --cluster create``; use ``redis_cluster_url``."""
    with _running_cluster(tmp_path_factory.mktemp("redis-cluster"), replicas=0) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_replicated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterProcesses]:
    """A real Redis Cluster of three masters, each with one replica (six redis-server
    processes, append-only), that fails a dead master over to its replica within a few
    seconds (``FAILOVER_NODE_TIMEOUT_MS``). A test that kills a node restarts it after
    (``restart``, then ``wait_ready``), so the next test finds six nodes again."""
    with _running_cluster(
        tmp_path_factory.mktemp("redis-cluster-replicated"),
        replicas=1,
        node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS,
        appendonly=True,
    ) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    """URL (``redis+cluster://``) of the session's Redis Cluster, every node emptied first."""
    redis_cluster.on_every_node(b"FLUSHALL")
    return redis_cluster.url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Mosquitto broker on a free port; yields its mqtt:// URL."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed: ./dev.sh test installs Debian's mosquitto")
    folder = tmp_path_factory.mktemp("mosquitto")
    for _ in range(5):
        port = free_port()
        conf = folder / "mosquitto.conf"
        # Room for what a stopped gateway's kept session collects (1000 by default).
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"max_queued_messages {MOSQUITTO_QUEUE}\n")  # fmt: skip
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("mosquitto did not start")
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(5)
