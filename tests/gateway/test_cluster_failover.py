"""A Redis Cluster master dies (SIGKILL) under two running gateways; its replica is promoted
and the gateways carry on by themselves (``redis_cluster_replicated``).

Devices are the simulator's clients: they keep every position until it is acknowledged and
resend the rest after a reconnect. The master killed owns a vehicle's slot and the slot of
the live-states channel, and is the one node the gateways' URL names: writes, sharded
pub/sub between the processes and the client's map of the cluster all have to move to the
promoted replica.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, cast

import coredis
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from gateway.core import keys
from gateway.core.connect import connect_redis
from gateway.fleet.peers import CHANNEL as LIVE_CHANNEL
from gateway.zones.store import CHANNEL as ZONES_CHANNEL
from notify.redis_client import RedisClient
from simulator.device import DeviceClient, DeviceConfig
from simulator.vehicle import Fix
from tests.conftest import RedisClusterProcesses
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    start_gateway,
    stored_seqs,
    until,
)
from tests.gateway.live.test_zones import circle

VEHICLES: Final = 6
BEFORE: Final = 5  # fixes each device has acknowledged before the crash
ROUND_S: Final = 0.2  # between two fixes of one device
TIMEOUT_S: Final = 90.0  # generous: a loaded two-core machine must not make this flaky


@pytest.fixture
def cluster(redis_cluster_replicated: RedisClusterProcesses) -> Iterator[RedisClusterProcesses]:
    """The replicated cluster, emptied; made whole again (six nodes) after the test."""
    redis_cluster_replicated.on_every_master(b"FLUSHALL")
    yield redis_cluster_replicated
    for node in list(redis_cluster_replicated.nodes):
        if node.process.poll() is not None:
            redis_cluster_replicated.restart(node)
    redis_cluster_replicated.wait_ready()


async def shard(redis: RedisClient[bytes], name: str) -> tuple[int, int]:
    """Ports of the master and of the replica serving the slot of key or channel ``name``."""
    slot = await redis.cluster_keyslot(name)
    for entry in await redis.cluster_shards():
        ranges = cast("list[int]", entry[b"slots"])
        if any(start <= slot <= end for start, end in zip(ranges[::2], ranges[1::2], strict=True)):
            nodes = cast("list[dict[bytes, Any]]", entry[b"nodes"])
            role = {n[b"role"]: int(n[b"port"]) for n in nodes}
            return role[b"master"], role[b"replica"]
    raise AssertionError(f"no node serves slot {slot}")


async def replica_caught_up(master: int) -> bool:
    async with coredis.Redis(host="127.0.0.1", port=master) as node:
        info = await node.info("replication")
    replica = info.get("slave0")
    return isinstance(replica, dict) and replica["offset"] >= info["master_repl_offset"]


async def promoted(replica: int) -> bool:
    """The node on ``replica`` is a master now and sees the cluster as whole again."""
    async with coredis.Redis(host="127.0.0.1", port=replica) as node:
        role = await node.role()
        state = (await node.cluster_info())["cluster_state"]
    return role.role == "master" and state == "ok"


def lat(n: int, vehicle_no: int) -> float:
    """Fix ``n`` of vehicle ``vehicle_no``: about a metre north of the one before."""
    return 48.85 + vehicle_no * 0.01 + n * 1e-5


def fix(n: int, vehicle_no: int) -> Fix:
    return Fix(
        ts=time.time(), lat=lat(n, vehicle_no), lon=2.35, speed=5.0, heading=0.0,
        accuracy=5.0, alt=35.0, battery=90.0, odometer=float(n),
    )  # fmt: skip


async def sees(
    browser: WebSocketConnection, vehicle: str, at: float, *, exactly: bool = False
) -> None:
    """Read ops messages until one shows ``vehicle`` at latitude ``at`` (or further north,
    where a later fix is: unless ``exactly``)."""
    while True:
        msg: dict[str, Any] = json.loads(await browser.get_message())
        if msg["type"] == "positions" and any(
            v["id"] == vehicle and (v["lat"] == at or (v["lat"] > at and not exactly))
            for v in msg["vehicles"]
        ):
            return


def ops_url(gw: GatewayHandle) -> str:
    return gw.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"


async def first_ack(device: DeviceClient, acked: int, at: dict[str, float]) -> None:
    """Note when ``device`` has more than ``acked`` positions acknowledged."""
    while device.stats.acked <= acked:  # noqa: ASYNC110
        await trio.sleep(0.05)
    at["first ack"] = trio.current_time()


class Fleet:
    """The devices of the test, each sending one fix per round."""

    def __init__(self, devices: list[DeviceClient]) -> None:
        self.devices = devices
        self.sent = 0  # rounds submitted: every device's seqs are 1..sent

    def round(self) -> None:
        self.sent += 1
        for i, d in enumerate(self.devices):
            assert d.submit(fix(self.sent, i)) == self.sent

    async def all_acked(self) -> None:
        while any(d.backlog for d in self.devices):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_gateways_carry_on_after_a_master_fails_over(
    cluster: RedisClusterProcesses, data_dir: Path, nursery: trio.Nursery
) -> None:
    async with connect_redis(cluster.url) as probe:
        master, replica = await shard(probe, LIVE_CHANNEL)
        names = [f"van-{i:03d}" for i in range(200)]
        owner = {v: (await shard(probe, keys.vehicle(v)))[0] for v in names}
    # The victim's keys live on the master to be killed; the other vehicles anywhere (one
    # writer serves them all, so they wait for the failover too).
    victim = next(v for v in names if owner[v] == master)
    vehicles = [victim, *[v for v in names if v != victim][: VEHICLES - 1]]
    url = f"redis+cluster://127.0.0.1:{master}"
    a = await start_gateway(nursery, gateway_settings(url, data_dir))
    b = await start_gateway(nursery, gateway_settings(url, data_dir))
    redis = connect_redis(f"redis+cluster://127.0.0.1:{replica}")
    async with redis, trio.open_nursery() as devices_running:
        with trio.fail_after(TIMEOUT_S):
            for channel in (LIVE_CHANNEL, ZONES_CHANNEL):
                while (await redis.pubsub_shardnumsub(channel)).get(channel.encode(), 0) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.05)
        fleet = Fleet(
            [
                DeviceClient(
                    v, await a.register(v), DeviceConfig(a.ep.ingest_url, backoff_max_s=2.0)
                )
                for v in vehicles
            ]
        )
        for d in fleet.devices:
            devices_running.start_soon(d.run)
        async with open_websocket_url(ops_url(a)) as ops_a, open_websocket_url(ops_url(b)) as ops_b:
            for _ in range(BEFORE):
                fleet.round()
                await trio.sleep(ROUND_S)
            with trio.fail_after(TIMEOUT_S):
                await fleet.all_acked()
                await sees(ops_a, victim, lat(BEFORE, 0), exactly=True)
                await sees(ops_b, victim, lat(BEFORE, 0), exactly=True)
                # Redis replicates asynchronously: what a master acknowledged in its last
                # moments may never reach its replica. Wait for it, so that the test is
                # about the gateway's part.
                await until(lambda: replica_caught_up(master), TIMEOUT_S)

            cluster.node(master).kill()
            at = {"kill": trio.current_time()}  # when each step of the failover was seen
            devices_running.start_soon(first_ack, fleet.devices[0], BEFORE, at)
            with trio.fail_after(TIMEOUT_S):
                # Devices go on sending while the replica takes over, until their positions
                # are acknowledged again and the other process's browser follows the victim
                # again: states it missed while resubscribing are not replayed (pub/sub),
                # the ones published after are delivered.
                while True:
                    fleet.round()
                    if "promoted" not in at and await promoted(replica):
                        at["promoted"], first_after = trio.current_time(), lat(fleet.sent, 0)
                    with trio.move_on_after(ROUND_S):
                        if "promoted" in at:
                            await sees(ops_b, victim, first_after)
                            at["followed"] = trio.current_time()
                            break
                        await trio.sleep_forever()
                # One more fix, once all are acknowledged: the live view goes on, on the
                # writing process and, by sharded pub/sub through the promoted replica, on
                # the other one.
                await fleet.all_acked()
                fleet.round()
                await fleet.all_acked()
                await sees(ops_a, victim, lat(fleet.sent, 0), exactly=True)
                await sees(ops_b, victim, lat(fleet.sent, 0), exactly=True)
            print(
                "failover, seconds after the kill:",
                {step: round(t - at["kill"], 1) for step, t in at.items() if step != "kill"},
                f"({fleet.sent} fixes per device)",
            )
        devices_running.cancel_scope.cancel()

        # Every acknowledged position is stored, each exactly once; nothing was given up.
        for d in fleet.devices:
            assert d.stats.dropped == 0 and not d.stats.rejected, (d.device_id, d.stats)
            seqs = await stored_seqs(cast("coredis.Redis[bytes]", redis), d.device_id)
            assert seqs == list(range(1, fleet.sent + 1)), (d.device_id, seqs)
        state = (await b.http.get(f"/v1/vehicles/{victim}")).json()
        assert (state["seq"], state["lat"]) == (fleet.sent, lat(fleet.sent, 0))

        # Zone changes cross processes again too.
        assert (await a.http.post("/v1/zones", json=circle("after-failover"))).is_success
        with trio.fail_after(TIMEOUT_S):
            while not (await b.http.get("/v1/zones")).json()["features"]:  # noqa: ASYNC110
                await trio.sleep(0.05)
        for gw in (a, b):
            assert (await gw.http.get("/healthz")).status_code == 200
            assert "gateway_writer_errors_total" in await gw.metrics()
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()
