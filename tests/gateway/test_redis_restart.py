"""Redis restarts under a running gateway: no acks while it is down, nothing lost after."""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from gateway.redisproc import start_redis

from .conftest import gateway_settings, start_gateway


async def test_gateway_rides_out_a_redis_restart(data_dir: Path, nursery: trio.Nursery) -> None:
    folder = data_dir / "own-redis"
    redis = start_redis(folder, appendonly=True)
    gw = await start_gateway(nursery, gateway_settings(redis.url, data_dir, notify=False))
    token = await gw.register("van-r")
    t0 = time.time() - 60

    def fix(seq: int) -> str:
        return json.dumps({"seq": seq, "ts": t0 + seq, "lat": 52.0 + seq * 1e-5, "lon": 4.0})

    try:
        async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
            for seq in range(1, 6):
                await ws.send_message(fix(seq))
            with trio.fail_after(5):
                while json.loads(await ws.get_message())["seq"] < 5:
                    pass
            redis.stop()  # a clean shutdown: the append-only file holds everything acked
            for seq in range(6, 11):
                await ws.send_message(fix(seq))
            with trio.move_on_after(1.5):
                while True:
                    assert json.loads(await ws.get_message())["seq"] <= 5, "acked while down"
            redis = start_redis(folder, port=redis.port, appendonly=True)
            with trio.fail_after(20):
                while json.loads(await ws.get_message())["seq"] < 10:
                    pass
        track = (await gw.http.get("/v1/vehicles/van-r/track", params={"since": t0})).json()
        assert [p["seq"] for p in track["positions"]] == list(range(1, 11))
        assert "gateway_writer_errors_total" in await gw.metrics()
    finally:
        await gw.http.aclose()
        gw.scope.cancel()
        redis.stop()
