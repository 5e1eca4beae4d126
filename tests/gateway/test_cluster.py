"""The gateway on a real Redis Cluster of three redis-server processes (``redis_cluster``).

Vehicles' keys land on every node; scripts and transactions stay in one slot; live states,
zone changes and alerts cross processes by sharded pub/sub.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from gateway.core import keys
from gateway.core.connect import connect_redis
from gateway.dispatch.store import delivery_key
from gateway.fleet.peers import CHANNEL as LIVE_CHANNEL
from gateway.fleet.position import Position
from gateway.fleet.store import Store, VehicleWrite
from gateway.zones.store import CHANNEL as ZONES_CHANNEL
from notify.keys import ALERTS_CHANNEL
from notify.redis_client import RedisClient
from tests.conftest import RedisClusterProcesses
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    handshake,
    start_gateway,
    wait_tracked,
)
from tests.gateway.customer.test_claims_reschedule import failed_delivery
from tests.gateway.customer.test_links import two_stop_route
from tests.gateway.live.test_zones import circle
from tests.gateway.test_notifications import wait_notifications

VEHICLES = 24  # enough that every node of the three owns some of them
FIXES = 5


@pytest.fixture
async def cluster(redis_url: str) -> AsyncIterator[RedisClient[bytes]]:
    async with connect_redis(redis_url) as client:
        yield client


@pytest.fixture
def redis_url(redis_cluster_url: str) -> str:
    """Every gateway of this module (the ``gateway`` fixture too) runs on the cluster."""
    return redis_cluster_url


async def node_of_slot(cluster: RedisClient[bytes]) -> dict[int, str]:
    """Every slot's master, as ``host:port``."""
    owner: dict[int, str] = {}
    for (start, end), nodes in (await cluster.cluster_slots()).items():
        for slot in range(int(start), int(end) + 1):
            owner[slot] = f"{nodes[0]['host']!r}:{nodes[0]['port']}"
    return owner


def fixes(vehicle_no: int) -> list[dict[str, Any]]:
    t0 = time.time() - 60
    return [
        {"seq": i + 1, "ts": t0 + 10 * i, "lat": 48.85 + vehicle_no * 0.01 + i * 1e-4,
         "lon": 2.35, "speed": 5.0}
        for i in range(FIXES)
    ]  # fmt: skip


async def send_and_ack(ingest_url: str, token: str, batch: list[dict[str, Any]]) -> None:
    async with open_websocket_url(f"{ingest_url}?token={token}") as ws:
        await ws.send_message(json.dumps(batch))
        with trio.fail_after(10):
            while True:
                msg = json.loads(await ws.get_message())
                assert msg["type"] == "ack" and msg["rejected"] == [], msg
                if msg["seq"] == batch[-1]["seq"]:
                    return


async def test_ingest_from_vehicles_on_every_node(
    gateway: GatewayHandle,
    cluster: RedisClient[bytes],
    redis_url: str,
    data_dir: Path,
    nursery: trio.Nursery,
) -> None:
    vehicles = [f"van-{i:02d}" for i in range(VEHICLES)]
    owner = await node_of_slot(cluster)
    nodes = {owner[await cluster.cluster_keyslot(keys.vehicle(v))] for v in vehicles}
    assert len(nodes) == 3, "the vehicles' keys must span every node"
    tokens = {v: await gateway.register(v) for v in vehicles}
    async with trio.open_nursery() as devices:
        for i, v in enumerate(vehicles):
            devices.start_soon(send_and_ack, gateway.ep.ingest_url, tokens[v], fixes(i))
    for i, v in enumerate(vehicles):
        state = (await gateway.http.get(f"/v1/vehicles/{v}")).json()
        assert (state["seq"], state["lat"]) == (FIXES, fixes(i)[-1]["lat"])
        track = (await gateway.http.get(f"/v1/vehicles/{v}/track", params={"since": "0"})).json()
        assert [p["seq"] for p in track["positions"]] == list(range(1, FIXES + 1)), track
        # Written where the cluster keeps it, not somewhere a single-server client would.
        assert await cluster.hget(keys.vehicle(v), "state") is not None
        assert await cluster.xlen(keys.track(v)) >= 1
    # A second batch of the same positions is recognised as duplicates, not stored again.
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={tokens['van-00']}") as ws:
        await ws.send_message(json.dumps(fixes(0)))
        reply = json.loads(await ws.get_message())
    assert {r["reason"] for r in reply["rejected"]} == {"duplicate"}
    assert (await gateway.http.get("/healthz")).status_code == 200
    # A process started now reads every vehicle's state back from the nodes.
    late = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    listed = (await late.http.get("/v1/vehicles")).json()["vehicles"]
    assert sorted(v["vehicle"] for v in listed) == vehicles
    await late.http.aclose()
    late.scope.cancel()


async def test_batch_written_again_after_the_script_cache_is_lost(
    cluster: RedisClient[bytes], redis_cluster: RedisClusterProcesses
) -> None:
    """A node that lost its scripts (restarted) gets the write script again; a batch
    written twice (the writer's retry after a partial failure) is stored once: each
    device's stored cursor drops what Redis already has."""
    store = Store(cluster, track_retention_s=3600)
    now = time.time()
    writes = [
        VehicleWrite.of(
            f"van-{i:02d}",
            f"dev-{i:02d}",
            b"state",
            [Position(seq=s, ts=now - 10 + s, lat=48.85, lon=2.35) for s in (1, 2)],
        )
        for i in range(VEHICLES)
    ]
    assert await store.write_batch(writes, now) == 0
    redis_cluster.on_every_node(b"SCRIPT FLUSH")
    assert await store.write_batch(writes, now) == 2 * VEHICLES
    for w in writes:
        assert await cluster.xlen(keys.track(w.vehicle)) == 1
        track = await store.read_track(w.vehicle, now - 60, now, 100, skew_s=0)
        assert [(d, p.seq) for d, p in track] == [(w.device, 1), (w.device, 2)]


async def test_device_tokens_rotate_and_revoke(gateway: GatewayHandle) -> None:
    old = await gateway.register("van-t")
    r = await gateway.http.post("/v1/devices/van-t/token")
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert (await handshake(gateway.ep.ingest_url, old)).status_code == 401
    assert (await handshake(gateway.ep.ingest_url, new)).status_code == 101
    assert (await gateway.http.post("/v1/devices/van-t/revoke")).status_code == 200
    assert (await handshake(gateway.ep.ingest_url, new)).status_code == 401


async def test_routes_start_and_customers_are_notified(
    gateway: GatewayHandle, cluster: RedisClient[bytes]
) -> None:
    await gateway.register("van-link")
    body = two_stop_route(time.time())
    for stop in body["routes"][0]["stops"]:
        stop["deliveries"][0]["recipient"]["channels"] = ["sms", "email"]
    r = await gateway.http.put("/v1/routes", json=body)
    assert r.status_code == 200, r.text
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    await wait_tracked(gateway, "van-link")
    d1 = (await gateway.http.get("/v1/deliveries/D-S1")).json()
    assert d1["status"] == "out_for_delivery"
    assert json.loads(await cluster.get(delivery_key(d1["id"])) or b"{}")["status"] == (
        "out_for_delivery"
    )
    sent = await wait_notifications(gateway, d1["id"], 2)
    assert sorted(x["channel"] for x in sent) == ["email", "sms"]
    d2 = (await gateway.http.get("/v1/deliveries/D-S2")).json()
    await wait_notifications(gateway, d2["id"], 2)
    captured = (await gateway.http.get("/v1/capture/messages")).json()
    assert len(captured["sms"]) == 2 and len(captured["email"]) == 2
    # Importing the same routes again is one more single-slot transaction, and changes nothing.
    assert (await gateway.http.put("/v1/routes", json=body)).status_code == 200
    assert (await gateway.http.get("/v1/deliveries/D-S1")).json()["status"] == "out_for_delivery"


async def next_of_type(browser: Any, kind: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            msg: dict[str, Any] = json.loads(await browser.get_message())
            if msg["type"] == kind:
                return msg


async def test_two_gateways_share_vehicles_zones_and_alerts(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, cluster: RedisClient[bytes]
) -> None:
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    # Both follow every channel by sharded pub/sub, on the shard that owns the channel.
    for channel in (LIVE_CHANNEL, ZONES_CHANNEL, ALERTS_CHANNEL):
        with trio.fail_after(5):
            while (await cluster.pubsub_shardnumsub(channel)).get(channel.encode(), 0) < 2:  # noqa: ASYNC110
                await trio.sleep(0.05)

    await a.http.post("/v1/zones", json=circle("shared"))
    with trio.fail_after(5):
        while not (await b.http.get("/v1/zones")).json()["features"]:  # noqa: ASYNC110
            await trio.sleep(0.05)

    token = await a.register("van-x")
    ops_b = b.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"
    async with open_websocket_url(ops_b) as browser:
        assert json.loads(await browser.get_message())["type"] == "snapshot"
        fix = {"seq": 1, "ts": time.time(), "lat": 52.1, "lon": 4.3, "speed": 6.0}
        await send_and_ack(a.ep.ingest_url, token, [fix])
        msg = await next_of_type(browser, "positions")
        assert [(v["id"], v["lat"]) for v in msg["vehicles"]] == [("van-x", 52.1)]

        # A failed delivery on one process raises an alert that the other's browsers get.
        await failed_delivery(a)
        # The event log (one stream) is tailed by every process with blocking reads.
        while (await next_of_type(browser, "event"))["event"]["type"] != "delivery.failed":
            pass
        alert = (await next_of_type(browser, "alert"))["alert"]
        d1 = (await b.http.get("/v1/deliveries/D-S1")).json()
        assert (alert["kind"], alert["delivery"]) == ("delivery.failed", d1["id"])
    assert (await b.http.get("/v1/vehicles/van-x")).json()["lat"] == 52.1
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()
