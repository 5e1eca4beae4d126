"""REDIS_WAIT_REPLICAS: a position is acknowledged only once Redis replicas have it, so a
failover to a replica loses nothing acknowledged. Runs against a real primary and a real
replica (``redis-server --replicaof``) started on free ports; "the replica is away" is the
replica process stopped with SIGSTOP (it keeps its connection, answers nothing, and carries
on where it was after SIGCONT)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio
from trio_websocket import open_websocket_url

from gateway.config import ConfigError, load_settings
from gateway.core import keys
from gateway.core.connect import connect_redis
from gateway.core.redisproc import RedisProcess, start_redis
from tests.conftest import RedisClusterProcesses
from tests.gateway.conftest import (
    GatewayHandle,
    gateway_settings,
    metric,
    start_gateway,
    stored_seqs,
    until,
)
from tests.gateway.test_cluster_failover import cluster as cluster  # a fixture
from tests.gateway.test_cluster_failover import shard

SHORT = "gateway_writer_replica_wait_short_total"


def _info_replication(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"INFO replication\r\n")
        return s.recv(65536).decode()


@dataclass
class Replicated:
    primary: RedisProcess
    replica: RedisProcess

    def pause_replica(self) -> None:
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        os.kill(self.replica.process.pid, signal.SIGCONT)


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Replicated]:
    """A primary and one replica of it, in sync."""
    primary = start_redis(
        tmp_path / "primary",
        appendonly=False,
        extra_args=["--repl-diskless-sync-delay", "0"],  # the replica syncs at once
    )
    replica = start_redis(
        tmp_path / "replica",
        appendonly=False,
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    )
    pair = Replicated(primary, replica)
    try:
        deadline = time.monotonic() + 10
        while "state=online" not in _info_replication(primary.port):
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        yield pair
    finally:
        pair.resume_replica()  # a stopped process would not see SIGTERM
        replica.stop()
        primary.stop()


@pytest.fixture
async def replica_redis(replicated: Replicated) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client of the replica itself, to read what it holds."""
    async with coredis.Redis.from_url(replicated.replica.url) as r:
        yield r


@pytest.fixture
async def primary_redis(replicated: Replicated) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(replicated.primary.url) as r:
        yield r


async def device_on(
    nursery: trio.Nursery, pair: Replicated, data_dir: Path, device: str, **overrides: Any
) -> tuple[GatewayHandle, str]:
    """A gateway on the primary (settings ``overrides``), and the ingest URL of a new
    device ``device`` on it."""
    gw = await start_gateway(
        nursery, gateway_settings(pair.primary.url, data_dir, notify=False, **overrides)
    )
    token = await gw.register(device)
    return gw, f"{gw.ep.ingest_url}?token={token}"


def fix(seq: int) -> str:
    return json.dumps(
        {"seq": seq, "ts": time.time() - 30 + seq * 0.1, "lat": 52.37 + seq * 1e-5, "lon": 4.89}
    )


async def next_ack(ws: Any) -> int:
    while True:
        msg = json.loads(await ws.get_message())
        if msg["type"] == "ack":
            return int(msg["seq"])


async def send(ws: Any, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        await ws.send_message(fix(seq))


async def acked_through(ws: Any, seq: int, timeout: float = 5) -> int:
    """Read acks until one reaches ``seq``; returns its ``seq``."""
    with trio.fail_after(timeout):
        while (acked := await next_ack(ws)) < seq:
            pass
    return acked


async def send_acked(ws: Any, first: int, last: int) -> int:
    """Send ``first`` to ``last`` and wait for their ack, as when the replica is there."""
    await send(ws, first, last)
    return await acked_through(ws, last)


async def written_not_acked(
    ws: Any, primary: coredis.Redis[bytes], vehicle: str, first: int, last: int
) -> None:
    """Send ``first`` to ``last`` while the replica is away: they reach the primary, but no
    ack comes, as the WAITs come back short."""
    await send(ws, first, last)
    with trio.fail_after(5):
        while set(range(first, last + 1)) - set(await stored_seqs(primary, vehicle)):  # noqa: ASYNC110
            await trio.sleep(0.05)
    with trio.move_on_after(1.5) as waited:
        await next_ack(ws)
    assert waited.cancelled_caught, "an ack came while the replica was away"


async def stop(gw: GatewayHandle) -> None:
    await gw.http.aclose()
    gw.scope.cancel()


async def test_acked_positions_are_on_the_replica(
    replicated: Replicated,
    replica_redis: coredis.Redis[bytes],
    data_dir: Path,
    nursery: trio.Nursery,
) -> None:
    gw, url = await device_on(
        nursery, replicated, data_dir, "van-r", redis_wait_replicas=1, redis_wait_timeout_ms=5000
    )
    async with open_websocket_url(url) as ws:
        acked = await send_acked(ws, 1, 20)
        # read the replica the moment the ack is in: everything acked is there
        assert set(range(1, acked + 1)) <= set(await stored_seqs(replica_redis, "van-r"))

        # The replica lags (stopped for a moment, less than one WAIT's timeout): the ack
        # waits for it, and the replica has the positions when the ack comes.
        replicated.pause_replica()
        resumed_at = trio.current_time() + 0.5

        async def resume() -> None:
            await trio.sleep_until(resumed_at)
            replicated.resume_replica()

        nursery.start_soon(resume)
        await send(ws, 21, 30)
        await acked_through(ws, 30, timeout=10)
        assert trio.current_time() >= resumed_at
        assert set(range(1, 31)) <= set(await stored_seqs(replica_redis, "van-r"))
    assert metric(await gw.metrics(), SHORT) == 0
    await stop(gw)


async def test_no_ack_while_the_replica_is_away(
    replicated: Replicated,
    primary_redis: coredis.Redis[bytes],
    replica_redis: coredis.Redis[bytes],
    data_dir: Path,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, url = await device_on(
        nursery, replicated, data_dir, "van-a", redis_wait_replicas=1, redis_wait_timeout_ms=200
    )
    async with open_websocket_url(url) as ws:
        await send_acked(ws, 1, 5)

        replicated.pause_replica()
        caplog.set_level(logging.WARNING, logger="gateway.ingest.writer")
        # A busy machine can make the replica miss a 200 ms WAIT for the first positions: that
        # was an episode of its own, already over.
        caplog.clear()
        await written_not_acked(ws, primary_redis, "van-a", 6, 15)
        assert metric(await gw.metrics(), SHORT) >= 3
        warnings = [r for r in caplog.records if "replica" in r.getMessage()]
        assert len(warnings) == 1  # once per episode, not once per WAIT

        replicated.resume_replica()
        acked = await acked_through(ws, 15, timeout=10)
        assert set(range(1, acked + 1)) <= set(await stored_seqs(replica_redis, "van-a"))
    assert metric(await gw.metrics(), "gateway_writer_errors_total") == 0
    await stop(gw)


async def test_a_failover_to_the_replica_loses_nothing_acknowledged(
    replicated: Replicated,
    primary_redis: coredis.Redis[bytes],
    replica_redis: coredis.Redis[bytes],
    data_dir: Path,
    nursery: trio.Nursery,
) -> None:
    """The primary dies (SIGKILL) while a device streams and the replica lags; the replica
    is promoted. Every position acknowledged before the crash is on it: the point of
    REDIS_WAIT_REPLICAS (with it off, this test fails: the lagging replica misses positions
    the primary had acknowledged)."""
    gw, url = await device_on(
        nursery, replicated, data_dir, "van-f", redis_wait_replicas=1, redis_wait_timeout_ms=1000
    )
    acked = 0
    async with open_websocket_url(url) as ws:

        async def stream_fixes() -> None:
            for seq in range(1, 100_000):
                await ws.send_message(fix(seq))
                await trio.sleep(0.002)

        async def read_acks() -> None:
            nonlocal acked
            while True:
                with trio.move_on_after(2.0) as silent:
                    acked = max(acked, await next_ack(ws))
                if silent.cancelled_caught:
                    return  # no ack for a while: the primary is gone

        async with trio.open_nursery() as flows:
            flows.start_soon(stream_fixes)
            flows.start_soon(read_acks)
            await until(lambda: acked >= 300, poll_s=0.01)
            # The replica falls behind: stopped, and its link cut, so what the primary
            # takes from now on is not even in the replica's socket buffer. The device
            # streams on for a second and the primary dies with what the replica never
            # got: without the WAIT, those were acknowledged already, and are lost.
            replicated.pause_replica()
            await primary_redis.client_kill(type_=coredis.PureToken.REPLICA)
            await trio.sleep(1.0)
            replicated.primary.kill()
            replicated.resume_replica()
            await trio.sleep(2.5)  # any ack on its way arrives; then there are none
            flows.cancel_scope.cancel()
    await replica_redis.replicaof()  # REPLICAOF NO ONE: the replica takes over
    stored = set(await stored_seqs(replica_redis, "van-f"))
    assert acked >= 300
    assert set(range(1, acked + 1)) <= stored, "an acknowledged position was lost"
    await stop(gw)


async def test_off_acks_without_the_replica(
    replicated: Replicated,
    primary_redis: coredis.Redis[bytes],
    data_dir: Path,
    nursery: trio.Nursery,
) -> None:
    """REDIS_WAIT_REPLICAS=0 (the default): acks as soon as the primary has the positions,
    whatever the replica does, and no WAIT (no wait mark written either)."""
    gw, url = await device_on(nursery, replicated, data_dir, "van-o")
    replicated.pause_replica()
    async with open_websocket_url(url) as ws:
        await send_acked(ws, 1, 10)
    assert set(range(1, 11)) <= set(await stored_seqs(primary_redis, "van-o"))
    assert await primary_redis.exists(["writer:waitmark"]) == 0
    assert metric(await gw.metrics(), SHORT) == 0
    await stop(gw)


def test_refused_without_a_redis_of_ones_own() -> None:
    with pytest.raises(ConfigError, match="needs redis_url"):
        load_settings(env={"REDIS_URL": "", "REDIS_WAIT_REPLICAS": "1"})
    assert load_settings(env={"REDIS_URL": ""}).redis_wait_replicas == 0
    on_cluster = {"REDIS_URL": "redis+cluster://127.0.0.1:7000", "REDIS_WAIT_REPLICAS": "1"}
    assert load_settings(env=on_cluster).redis_wait_replicas == 1


async def replica_seqs(port: int, vehicle: str) -> list[int]:
    """``stored_seqs`` as a cluster replica holds them (one connection: READONLY is the
    connection's own)."""
    async with coredis.Redis(host="127.0.0.1", port=port, max_connections=1) as node:
        await node.readonly()
        return await stored_seqs(node, vehicle)


async def test_on_a_cluster_acks_wait_for_the_vehicles_replica(
    cluster: RedisClusterProcesses, data_dir: Path, nursery: trio.Nursery
) -> None:
    """On a Redis Cluster each batch's writes are followed by a WAIT on every node that took
    them: acked positions are on the vehicle's replica, and while that replica is away
    nothing is acked."""
    gw = await start_gateway(
        nursery,
        gateway_settings(
            cluster.url, data_dir, notify=False, redis_wait_replicas=1,
            redis_wait_timeout_ms=200,
        ),
    )  # fmt: skip
    token = await gw.register("van-c")
    async with connect_redis(cluster.url) as redis:
        master, replica = await shard(redis, keys.vehicle("van-c"))
    replica_node = cluster.node(replica)
    async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
        acked = await send_acked(ws, 1, 20)
        assert set(range(1, acked + 1)) <= set(await replica_seqs(replica, "van-c"))

        os.kill(replica_node.process.pid, signal.SIGSTOP)
        try:
            async with coredis.Redis(host="127.0.0.1", port=master) as m:
                await written_not_acked(ws, m, "van-c", 21, 30)
            assert metric(await gw.metrics(), SHORT) >= 1
        finally:
            os.kill(replica_node.process.pid, signal.SIGCONT)
        await acked_through(ws, 30, timeout=15)
        assert set(range(1, 31)) <= set(await replica_seqs(replica, "van-c"))
    await stop(gw)
