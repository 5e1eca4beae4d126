"""The simulator drives the gateway over the wire; an ops browser stream sees the vans move."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from trio_websocket import open_websocket_url

from tests.gateway.conftest import API_KEY, GatewayHandle

VEHICLES = 5


async def test_simulated_fleet_reaches_the_ops_stream(gateway: GatewayHandle) -> None:
    ops_url = gateway.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"
    seen: dict[str, list[tuple[float, float]]] = {}
    first: dict[str, Any] = {}
    report: dict[str, Any] = {}

    async def simulator() -> None:
        result = await trio.run_process(
            [
                sys.executable,
                "-m",
                "simulator",
                "--api",
                gateway.ep.http_url,
                "--ingest",
                gateway.ep.ingest_url,
                "--api-key",
                API_KEY,
                "--vehicles",
                str(VEHICLES),
                "--duration",
                "8",
                "--time-scale",
                "5",
                "--id-prefix",
                "e2e-",
                "--status-interval",
                "0",
                "--report-json",
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
        report.update(json.loads(result.stdout.decode().strip().splitlines()[-1]))

    async with open_websocket_url(ops_url) as ws:
        first.update(json.loads(await ws.get_message()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(simulator)
            with trio.move_on_after(30):
                while len(seen) < VEHICLES or min(len(v) for v in seen.values()) < 5:
                    msg = json.loads(await ws.get_message())
                    if msg["type"] == "positions":
                        for v in msg["vehicles"]:
                            seen.setdefault(v["id"], []).append((v["lat"], v["lon"]))

    assert first["type"] == "snapshot" and first["vehicles"] == []
    assert sorted(seen) == [f"e2e-{i:03d}" for i in range(1, VEHICLES + 1)]
    # The vans moved: each one was seen at more than one place.
    assert all(len(set(track)) > 1 for track in seen.values())
    assert report["sent"] > 0
    assert report["acked"] + sum(report["rejected"].values()) >= report["sent"] * 0.9
    vehicles = (await gateway.http.get("/v1/vehicles")).json()["vehicles"]
    assert sorted(v["vehicle"] for v in vehicles) == sorted(seen)
