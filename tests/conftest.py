"""Fixtures shared by every test package: real servers on free ports, stopped after."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from gateway.redisproc import RedisProcess, RedisServerError, free_port, start_redis

CLUSTER_NODES: Final = 3
CLUSTER_BUS_OFFSET: Final = 10_000  # a cluster node also listens on its port + 10000
CLUSTER_READY_S: Final = 20.0


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

    @property
    def url(self) -> str:
        """The gateway's URL for this cluster (any node; the client finds the others)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def on_every_node(self, command: bytes) -> None:
        """Send ``command`` (inline, e.g. ``b"SCRIPT FLUSH"``) to every node; expect +OK."""
        for node in self.nodes:
            assert _command(node.port, command).startswith(b"+OK")

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


def _start_cluster_node(folder: Path) -> RedisProcess:
    for _ in range(5):
        try:
            return start_redis(
                folder,
                _cluster_port(),
                appendonly=False,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(folder / "nodes.conf"),
                    "--cluster-node-timeout", "5000",
                ],
            )  # fmt: skip
        except RedisServerError:
            continue  # lost the race for the port
    raise RedisServerError(f"cluster node in {folder} did not start")


def _cluster_ready(nodes: list[RedisProcess]) -> bool:
    for node in nodes:
        info = _command(node.port, b"CLUSTER INFO")
        if (
            b"cluster_state:ok" not in info
            or f"cluster_known_nodes:{len(nodes)}".encode() not in info
        ):
            return False
    return True


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """A real Redis Cluster of three redis-server processes (masters, no replicas) for the
    session, made with ``redis-cli --cluster create``; use ``redis_cluster_url``."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is not installed: ./dev.sh test installs Debian's redis-tools")
    folder = tmp_path_factory.mktemp("redis-cluster")
    cluster = RedisClusterProcesses([])
    try:
        for i in range(CLUSTER_NODES):
            cluster.nodes.append(_start_cluster_node(folder / f"node{i}"))
        made = subprocess.run(
            [cli, "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        deadline = time.monotonic() + CLUSTER_READY_S
        while not _cluster_ready(cluster.nodes):
            assert time.monotonic() < deadline, "the Redis Cluster did not become ready"
            time.sleep(0.1)
        yield cluster
    finally:
        cluster.stop()


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
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
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
