"""REST API, command line and vehicle status against a real gateway and Redis."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import coredis
import httpx
import trio
from trio_websocket import open_websocket_url

from gateway.core import keys
from tests.gateway.conftest import API_KEY, GatewayHandle, gateway_settings, start_gateway


async def test_api_needs_a_key(gateway: GatewayHandle) -> None:
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
            r = await anonymous.get("/v1/vehicles", headers=headers)
            assert r.status_code == 401, headers
        assert (await anonymous.get("/v1/vehicles", headers={"X-API-Key": API_KEY})).is_success
        assert (await anonymous.post("/v1/devices", json={"id": "x"})).status_code == 401


async def test_device_registration_errors_name_the_field(gateway: GatewayHandle) -> None:
    r = await gateway.http.post("/v1/devices", json={"id": "bad id with spaces"})
    assert r.status_code == 400 and r.json()["field"] == "id"
    r = await gateway.http.post("/v1/devices", content=b"not json")
    assert r.status_code == 400
    await gateway.register("van-1")
    r = await gateway.http.post("/v1/devices", json={"id": "van-1"})
    assert r.status_code == 409
    r = await gateway.http.get("/v1/vehicles/van-1/track", params={"since": "yesterday"})
    assert r.status_code == 400 and r.json()["field"] == "since"
    assert (await gateway.http.post("/v1/devices/ghost/revoke")).status_code == 404


async def test_token_rotation_invalidates_the_old_token(gateway: GatewayHandle) -> None:
    old = await gateway.register("van-2")
    r = await gateway.http.post("/v1/devices/van-2/token")
    new = r.json()["token"]
    assert new != old
    stored = (await gateway.http.get("/v1/devices/van-2")).json()
    assert "token" not in stored and "token_hash" not in stored
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={new}") as ws:
        await ws.send_message(json.dumps({"seq": 1, "ts": time.time(), "lat": 1.0, "lon": 2.0}))
        assert json.loads(await ws.get_message())["seq"] == 1


async def test_cli_registers_and_lists_devices(gateway: GatewayHandle) -> None:
    base = [sys.executable, "-m", "gateway", "device"]
    opts = ["--api", gateway.ep.http_url, "--api-key", API_KEY]
    added = await trio.run_process([*base, "add", "cli-van", *opts], capture_stdout=True)
    body = json.loads(added.stdout)
    assert body["id"] == "cli-van" and len(body["token"]) > 20
    listed = await trio.run_process([*base, "list", *opts], capture_stdout=True)
    assert [d["id"] for d in json.loads(listed.stdout)["devices"]] == ["cli-van"]
    again = await trio.run_process(
        [*base, "add", "cli-van", *opts], capture_stdout=True, check=False
    )
    assert again.returncode == 1


async def test_silent_vehicle_goes_offline_with_an_event(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, offline_after_s=1.0))
    token = await gw.register("van-3")
    async with open_websocket_url(f"{gw.ep.ingest_url}?token={token}") as ws:
        await ws.send_message(json.dumps({"seq": 1, "ts": time.time(), "lat": 1.0, "lon": 2.0}))
        await ws.get_message()
    with trio.fail_after(10):
        # Polling the REST API: there is nothing in-process to wait on.
        while (await gw.http.get("/v1/vehicles/van-3")).json()["status"] != "offline":  # noqa: ASYNC110
            await trio.sleep(0.2)
    events = (await gw.http.get("/v1/events")).json()["events"]
    assert [(e["type"], e["vehicle"]) for e in events] == [
        ("vehicle.online", "van-3"),
        ("vehicle.offline", "van-3"),
    ]
    offline = (await gw.http.get("/v1/events", params={"type": "vehicle.offline"})).json()
    assert len(offline["events"]) == 1 and offline["events"][0]["data"]["silent_s"] >= 1.0
    await gw.http.aclose()
    gw.scope.cancel()


async def test_openapi_and_metrics(gateway: GatewayHandle) -> None:
    spec = (await gateway.http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/vehicles/{id}/track" in spec["paths"]
    for path in ("/v1/zones/{id}", "/v1/positions", "/v1/track/{token}", "/v1/deliveries/{id}/pod",
                 "/v1/alerts/{id}/resolve", "/v1/claims", "/v1/kpis"):  # fmt: skip
        assert path in spec["paths"], path
    assert spec["paths"]["/v1/positions"]["post"]["security"] == []  # device token, not a key
    metrics = await gateway.metrics()
    assert "# TYPE gateway_positions_accepted_total counter" in metrics
    assert (await gateway.http.get("/healthz")).json() == {
        "status": "ok",
        "notify": {"sms": "capture", "email": "capture"},
    }


async def test_events_oldest_first_or_newest_first(gateway: GatewayHandle, redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url) as redis:
        for n in range(5):
            await redis.xadd(keys.EVENTS, {"e": json.dumps({"type": "test.event", "n": n})})

    async def ns(**params: str | int) -> list[int]:
        r = await gateway.http.get("/v1/events", params=params)
        assert r.status_code == 200, r.text
        return [e["n"] for e in r.json()["events"]]

    assert await ns() == [0, 1, 2, 3, 4]
    assert await ns(limit=2) == [0, 1]
    assert await ns(order="asc", limit=2) == [0, 1]
    assert await ns(order="desc", limit=2) == [4, 3]
    assert await ns(order="desc") == [4, 3, 2, 1, 0]
    ids = [e["id"] for e in (await gateway.http.get("/v1/events")).json()["events"]]
    assert await ns(after=ids[1], limit=2) == [2, 3]
    assert await ns(order="desc", after=ids[1]) == [4, 3, 2]  # what came since ids[1]
    assert await ns(order="desc", after=ids[1], limit=2) == [4, 3]
    assert await ns(order="desc", after=ids[4]) == []
    r = await gateway.http.get("/v1/events", params={"order": "newest"})
    assert r.status_code == 400 and r.json()["field"] == "order"
