"""Zones over REST and geofence events from live ingest, against a real gateway and Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from tests.gateway.conftest import GatewayHandle, gateway_settings, start_gateway

CENTER = (52.37, 4.89)
M_PER_DEG_LAT = 111_195.0


def circle(zone_id: str, radius_m: float = 200.0, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": zone_id,
        "geometry": {"type": "Point", "coordinates": [CENTER[1], CENTER[0]]},
        "properties": {"name": zone_id, "kind": "customer_stop", "radius_m": radius_m, **props},
    }


async def drive(gateway: GatewayHandle, token: str, offsets_m: list[float]) -> None:
    """Fixes 10 s apart along a meridian through CENTER, at the given metres north of it."""
    t0 = time.time() - 10 * len(offsets_m)
    fixes = [
        {"seq": i + 1, "ts": t0 + 10 * i, "lat": CENTER[0] + d / M_PER_DEG_LAT, "lon": CENTER[1]}
        for i, d in enumerate(offsets_m)
    ]
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        await ws.send_message(json.dumps(fixes))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < len(fixes):
                pass


async def events_of(gateway: GatewayHandle, prefix: str, n: int) -> list[dict[str, Any]]:
    with trio.fail_after(5):
        while True:
            evs = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
            got = [e for e in evs if e["type"].startswith(prefix)]
            if len(got) >= n:
                return got
            await trio.sleep(0.05)


async def test_zone_crud_and_validation(gateway: GatewayHandle) -> None:
    r = await gateway.http.post("/v1/zones", json=circle("depot-1", kind="depot"))
    assert r.status_code == 201 and r.json()["properties"]["radius_m"] == 200.0
    assert (await gateway.http.post("/v1/zones", json=circle("depot-1"))).status_code == 409
    bowtie = {
        "type": "Feature",
        "id": "bad",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        "properties": {},
    }
    r = await gateway.http.post("/v1/zones", json=bowtie)
    assert r.status_code == 422 and r.json()["field"].startswith("geometry")
    r = await gateway.http.post("/v1/zones", json=circle("c", radius_m=-5))  # not the schema's
    assert r.status_code == 400 and r.json()["field"] == "properties.radius_m"
    no_radius = circle("c")
    del no_radius["properties"]["radius_m"]
    r = await gateway.http.post("/v1/zones", json=no_radius)  # the schema's, but no circle
    assert r.status_code == 422 and r.json()["field"] == "properties.radius_m"
    r = await gateway.http.put("/v1/zones/depot-1", json=circle("depot-1", radius_m=300.0))
    assert r.status_code == 200
    listed = (await gateway.http.get("/v1/zones")).json()["features"]
    assert [(f["id"], f["properties"]["radius_m"]) for f in listed] == [("depot-1", 300.0)]
    assert (await gateway.http.delete("/v1/zones/depot-1")).status_code == 204
    assert (await gateway.http.get("/v1/zones/depot-1")).status_code == 404
    assert (await gateway.http.get("/v1/zones")).json()["features"] == []


async def test_driving_through_a_zone_gives_enter_then_exit(gateway: GatewayHandle) -> None:
    assert (await gateway.http.post("/v1/zones", json=circle("stop-a"))).status_code == 201
    token = await gateway.register("van-1")
    await drive(gateway, token, [-600, -400, -100, 0, 100, 400, 600])
    evs = await events_of(gateway, "geofence.", 2)
    assert [(e["type"], e["vehicle"], e["data"]["zone"]) for e in evs] == [
        ("geofence.enter", "van-1", "stop-a"),
        ("geofence.exit", "van-1", "stop-a"),
    ]
    enter = evs[0]
    assert abs(enter["data"]["lat"] - (CENTER[0] - 100 / M_PER_DEG_LAT)) < 1e-9


async def test_sparse_fixes_across_a_zone_give_a_cross(gateway: GatewayHandle) -> None:
    await gateway.http.post("/v1/zones", json=circle("stop-b", radius_m=100.0))
    token = await gateway.register("van-2")
    await drive(gateway, token, [-300, 300])  # 60 m/s: fast, but plausible
    evs = await events_of(gateway, "geofence.", 1)
    assert [(e["type"], e["data"]["zone"]) for e in evs] == [("geofence.cross", "stop-b")]


async def test_zone_change_reaches_another_process(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    one = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    two = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    await one.http.post("/v1/zones", json=circle("shared"))
    with trio.fail_after(2):
        while not (await two.http.get("/v1/zones")).json()["features"]:  # noqa: ASYNC110
            await trio.sleep(0.05)
    await one.http.delete("/v1/zones/shared")
    with trio.fail_after(2):
        while (await two.http.get("/v1/zones")).json()["features"]:  # noqa: ASYNC110
            await trio.sleep(0.05)
    for gw in (one, two):
        await gw.http.aclose()
        gw.scope.cancel()
