"""The zones a vehicle is inside, in ``GET /v1/vehicles/{id}``, against real gateways and Redis:
from the engine of the process its fixes reach, and from the state it saves for the others."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from tests.gateway.conftest import GatewayHandle, gateway_settings, start_gateway, until

CENTER = (52.37, 4.89)
M_PER_DEG_LAT = 111_195.0


def circle(zone_id: str, radius_m: float, kind: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": zone_id,
        "geometry": {"type": "Point", "coordinates": [CENTER[1], CENTER[0]]},
        "properties": {"name": zone_id.title(), "kind": kind, "radius_m": radius_m},
    }


async def drive(gw: GatewayHandle, token: str, t0: float, offsets_m: list[float]) -> float:
    """Fixes 10 s apart from ``t0`` along the meridian through CENTER, at the given metres
    north of it, at 8 m/s and 5 m accuracy; returns the last fix's time."""
    fixes = [
        {
            "seq": int(t0) + i,
            "ts": t0 + 10 * i,
            "lat": CENTER[0] + d / M_PER_DEG_LAT,
            "lon": CENTER[1],
            "speed": 8.0,
            "accuracy": 5.0,
        }
        for i, d in enumerate(offsets_m)
    ]
    async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
        await ws.send_message(json.dumps(fixes))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < fixes[-1]["seq"]:
                pass
    return float(fixes[-1]["ts"])


async def zones_of(gw: GatewayHandle, vehicle: str) -> list[dict[str, Any]]:
    r = await gw.http.get(f"/v1/vehicles/{vehicle}")
    assert r.status_code == 200, r.text
    return list(r.json()["zones"])


async def test_vehicle_lists_the_zones_it_is_inside(gateway: GatewayHandle) -> None:
    for feature in (circle("depot", 400.0, "depot"), circle("stop-7", 60.0, "customer_stop")):
        assert (await gateway.http.post("/v1/zones", json=feature)).status_code == 201
    token = await gateway.register("van-z")
    t0 = time.time() - 300
    await drive(gateway, token, t0, [-1000, -700])
    assert await zones_of(gateway, "van-z") == []

    last = await drive(gateway, token, t0 + 20, [-300, -20])
    inside = await zones_of(gateway, "van-z")
    assert [(z["id"], z["name"], z["kind"]) for z in inside] == [
        ("depot", "Depot", "depot"),
        ("stop-7", "Stop-7", "customer_stop"),
    ]
    assert [z["since"] for z in inside] == [t0 + 20, last]

    await drive(gateway, token, t0 + 40, [200])  # left the stop, still in the depot's yard
    assert [z["id"] for z in await zones_of(gateway, "van-z")] == ["depot"]
    spec = (await gateway.http.get("/openapi.json")).json()
    one = spec["paths"]["/v1/vehicles/{id}"]["get"]["responses"]["200"]["content"]
    ref = one["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "zones" in spec["components"]["schemas"][ref]["properties"]
    assert (await gateway.http.get("/v1/vehicles/ghost")).status_code == 404


async def test_another_process_lists_the_zones_from_the_saved_state(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    assert (await a.http.post("/v1/zones", json=circle("stop-9", 60.0, "customer_stop"))).is_success

    async def b_has_the_zone() -> bool:
        return bool((await b.http.get("/v1/zones")).json()["features"])

    await until(b_has_the_zone)
    token = await a.register("van-y")
    t0 = time.time() - 100
    last = await drive(a, token, t0, [-500, 0])

    async def b_sees_it_inside() -> bool:
        r = await b.http.get("/v1/vehicles/van-y")
        return r.status_code == 200 and bool(r.json()["zones"])

    await until(b_sees_it_inside, timeout_s=15.0)  # a saves its live state every few seconds
    assert [(z["id"], z["since"]) for z in await zones_of(b, "van-y")] == [("stop-9", last)]
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()
