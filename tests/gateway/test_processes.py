"""Two gateway processes on one Redis: a browser on either sees every vehicle; a route
started through one is tracked by the other when the device moves there."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import coredis
import msgspec
import trio
from trio_websocket import open_websocket_url

from gateway.core.connect import connect_redis
from gateway.core.pubsub import follow_channel
from gateway.fleet.peers import ALONE_RECHECK_S
from gateway.fleet.peers import CHANNEL as PEERS_CHANNEL
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    metric,
    start_gateway,
    stored_seqs,
    wait_metric,
    wait_tracked,
)
from tests.gateway.live.test_routes import M_PER_DEG_LAT


async def test_a_vehicle_on_one_process_shows_on_the_other(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir, offline_after_s=1.0))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir, offline_after_s=1.0))
    token = await a.register("van-x")
    ops_b = b.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"
    async with open_websocket_url(ops_b) as browser:
        assert json.loads(await browser.get_message())["type"] == "snapshot"
        async with open_websocket_url(f"{a.ep.ingest_url}?token={token}") as device:
            fix = {"seq": 1, "ts": time.time(), "lat": 52.1, "lon": 4.3, "speed": 6.0}
            await device.send_message(json.dumps(fix))
            await device.get_message()
        with trio.fail_after(5):
            while True:
                msg = json.loads(await browser.get_message())
                if msg["type"] == "positions":
                    break
        assert [(v["id"], v["lat"], v["status"]) for v in msg["vehicles"]] == [
            ("van-x", 52.1, "moving")
        ]
    v = (await b.http.get("/v1/vehicles/van-x")).json()
    assert (v["seq"], v["lat"]) == (1, 52.1)
    # Silent now: it goes offline once, marked by the process that wrote its last state.
    with trio.fail_after(10):
        while (await b.http.get("/v1/vehicles/van-x")).json()["status"] != "offline":  # noqa: ASYNC110
            await trio.sleep(0.1)
    await trio.sleep(2.5)  # both sweepers had time to run again
    offline = (await a.http.get("/v1/events", params={"type": "vehicle.offline"})).json()
    assert len(offline["events"]) == 1
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()


def leg(first_seq: int, t0: float, start: tuple[float, float], end: tuple[float, float],
        n: int) -> list[dict[str, Any]]:  # fmt: skip
    """``n`` fixes 10 s apart from ``start`` to ``end`` (both included when ``n`` > 1)."""
    out = []
    for i in range(n):
        f = i / (n - 1) if n > 1 else 1.0
        lat = start[0] + (end[0] - start[0]) * f
        lon = start[1] + (end[1] - start[1]) * f
        out.append({"seq": first_seq + i, "ts": t0 + 10 * i, "lat": lat, "lon": lon,
                    "speed": 0.0 if start == end else 10.0})  # fmt: skip
    return out


async def stream(gw: GatewayHandle, token: str, fixes: list[dict[str, Any]]) -> None:
    async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
        for f in fixes:
            await ws.send_message(json.dumps(f))
        with trio.fail_after(5):
            while json.loads(await ws.get_message()).get("seq", 0) < fixes[-1]["seq"]:
                pass


async def stop_events(gw: GatewayHandle, want: dict[tuple[str, str], int]) -> list[Any]:
    """Wait until the event log holds at least ``want[(type, stop external id)]`` of each."""
    with trio.fail_after(10):
        while True:
            evs = (await gw.http.get("/v1/events", params={"limit": 1000})).json()["events"]
            got = [(e["type"], e["stop"]) for e in evs if e["type"].startswith("stop.")]
            if all(got.count(k) >= n for k, n in want.items()):
                return got
            await trio.sleep(0.05)


async def test_a_route_carries_on_when_its_device_moves_to_another_process(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    token = await a.register("van-h")
    now = time.time()
    s1, s2 = (48.85, 2.35), (48.85 + 2000 / M_PER_DEG_LAT, 2.35)
    south = (48.85 - 2000 / M_PER_DEG_LAT, 2.35)
    stops = [
        {"external_id": sid, "location": {"lat": lat, "lon": lon}, "service_s": 60,
         "address": f"{sid} Main Street",
         "window": {"start": now - 3600, "end": now + 3600},
         "deliveries": [{"external_id": f"D-{sid}", "recipient": {"name": "Bo", "channels": []}}]}
        for sid, (lat, lon) in (("H1", s1), ("H2", s2))
    ]  # fmt: skip
    route = {"external_id": "HAND-1", "vehicle": "van-h", "driver": {"name": "Ann"},
             "date": "2026-11-23", "stops": stops}  # fmt: skip
    body = {"routes": [route]}
    r = await a.http.put("/v1/routes", json=body)
    assert r.status_code == 200, r.text
    assert (await a.http.post("/v1/routes/HAND-1/start")).status_code == 200
    # Started through A's API, the route is tracked on B as well.
    await wait_tracked(a, "van-h")
    await wait_tracked(b, "van-h")
    r1, r2 = (await a.http.get("/v1/routes/HAND-1")).json()["stops"][:2]
    h1, h2 = r1["id"], r2["id"]

    # On A: drive to the first stop and wait there.
    t0 = now - 1200
    first = leg(1, t0, south, s1, 21) + leg(22, t0 + 210, s1, s1, 6)
    await stream(a, token, first)
    await stop_events(a, {("stop.arrived", h1): 1})
    # B heard that A wrote the van's newest state.
    with trio.fail_after(5):
        while (await b.http.get("/v1/vehicles/van-h")).json()["seq"] < 27:  # noqa: ASYNC110
            await trio.sleep(0.05)

    # The device reconnects to B: it leaves the first stop and drives to the second.
    second = leg(28, t0 + 270, s1, s1, 3) + leg(31, t0 + 300, s1, s2, 21)
    second += leg(52, t0 + 510, s2, s2, 6)
    await stream(b, token, second)
    got = await stop_events(b, {("stop.departed", h1): 1, ("stop.arrived", h2): 1})
    await trio.sleep(0.5)  # anything duplicated would be logged by now
    got = await stop_events(b, {})
    # B carried on from A's tracker: the first stop is not arrived at again.
    assert got.count(("stop.arriving", h1)) == 1
    assert got.count(("stop.arrived", h1)) == 1
    assert got.count(("stop.departed", h1)) == 1
    assert got.count(("stop.arrived", h2)) == 1
    assert "gateway_route_takeovers_total 1" in await b.metrics()
    # The dwell at the first stop (finished on B) and the leg to the second are recorded,
    # the dwell with its location, in the ETA observations stream; A learns them from there,
    # and so does a process started afterwards (as after a restart), which never tracked
    # the route.
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as redis:
        entries = [e.field_values for e in await redis.xrange("eta:observed")]
    assert [(f["k"], f["i"]) for f in entries] == [("d", "0"), ("l", "1")]
    dwelt, drove = entries
    assert dwelt["s"] == f"{s1[0]:.5f},{s1[1]:.5f}" and dwelt["p"] == "60.0"
    assert 60.0 <= float(dwelt["a"]) <= 120.0  # standing there from 210 s to 300 s, about
    assert 150.0 <= float(drove["a"]) <= 240.0  # 2 km from 300 s to 510 s, circle to circle
    c = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    for gw in (a, b, c):
        await wait_metric(gw.http, "gateway_eta_observations_read_total", 2.0)
        text = await gw.metrics()
        assert metric(text, "gateway_eta_sites") == metric(text, "gateway_eta_routes") == 1.0
    for gw in (a, b, c):
        await gw.http.aclose()
        gw.scope.cancel()


async def test_a_device_on_two_processes_is_stored_once(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """Each process checks a device against the cursor it read when the device connected;
    Redis, holding the newest cursor, keeps what another process already wrote from being
    stored twice, and what is new from being lost."""
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    token = await a.register("van-2p")
    t0 = time.time() - 600
    fixes = leg(1, t0, (52.0, 4.0), (52.01, 4.0), 15)
    async with open_websocket_url(f"{b.ep.ingest_url}?token={token}") as on_b:
        await stream(a, token, fixes[:10])  # B's session still knows nothing of these
        for f in fixes[4:]:
            await on_b.send_message(json.dumps(f))
        with trio.fail_after(5):
            while json.loads(await on_b.get_message()).get("seq", 0) < 15:
                pass
    raw = await b.http.get("/v1/vehicles/van-2p/track", params={"since": t0 - 60})
    track = raw.json()["positions"]
    assert [p["seq"] for p in track] == list(range(1, 16))
    # Positions re-packed by the write script keep their values exactly.
    assert [(p["ts"], p["lat"], p["lon"]) for p in track] == [
        (f["ts"], f["lat"], f["lon"]) for f in fixes
    ]
    async with coredis.Redis.from_url(redis_url) as redis:
        assert await stored_seqs(redis, "van-2p") == list(range(1, 16))
    assert "\ngateway_writer_already_stored_total 6\n" in await b.metrics()
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()


async def test_a_lone_process_stops_publishing_until_another_listens(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """Alone on the states channel, a process skips publishing (no one to tell) and looks
    again every ``ALONE_RECHECK_S``: a listener that joins hears it within about that."""
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    token = await gw.register("van-l")
    heard: list[tuple[str, list[tuple[str, bytes]]]] = []

    async def received(data: bytes) -> None:
        heard.append(msgspec.msgpack.decode(data))

    async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as device:
        t0 = time.time() - 30

        async def send(seq: int) -> None:
            fix = {"seq": seq, "ts": t0 + seq, "lat": 52.1 + seq * 1e-5, "lon": 4.3}
            await device.send_message(json.dumps(fix))
            while json.loads(await device.get_message())["seq"] < seq:
                pass

        for seq in range(1, 6):  # acknowledged one by one: five write batches
            await send(seq)
        assert metric(await gw.metrics(), "gateway_peer_publish_skipped_total") >= 1
        async with connect_redis(redis_url) as listener, trio.open_nursery() as inner:
            await inner.start(follow_channel, listener, PEERS_CHANNEL, received)
            seq = 6
            with trio.fail_after(ALONE_RECHECK_S + 5):
                while not heard:
                    await send(seq)
                    seq += 1
                    await trio.sleep(0.05)
            _, states = heard[0]
            assert [vehicle for vehicle, _ in states] == ["van-l"]
            # From now on every batch is told again.
            before = len(heard)
            await send(seq)
            with trio.fail_after(5):
                while len(heard) == before:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            inner.cancel_scope.cancel()
    await gw.http.aclose()
    gw.scope.cancel()
