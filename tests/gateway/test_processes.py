"""Two gateway processes on one Redis: a browser on either sees every vehicle."""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from .conftest import API_KEY, gateway_settings, start_gateway


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
