from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import coredis
import httpx
import msgspec
import pytest
import trio

from gateway.app import Endpoints, run_gateway
from gateway.config import Settings, load_settings
from gateway.core import keys
from gateway.demo import DemoFleet
from gateway.fleet.position import Position

API_KEY = "test-agent-key"


def gateway_settings(redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "http_port": 0,
        "ingest_port": 0,
        "device_http_port": 0,
        "api_keys": API_KEY,
        "tile_url": "",
        "quiet_hours": "",  # messages are sent whatever the hour the tests run at
        "notify_capture": True,  # SMS and email to local capture servers
    }
    return load_settings(
        env={}, redis_url=redis_url, data_dir=str(data_dir), **(defaults | overrides)
    )


class GatewayHandle:
    def __init__(self, ep: Endpoints, scope: trio.CancelScope) -> None:
        self.ep = ep
        self.scope = scope
        self.http = httpx.AsyncClient(
            base_url=ep.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        )

    async def register(self, device_id: str, vehicle: str | None = None) -> str:
        r = await self.http.post(
            "/v1/devices", json={"id": device_id, "vehicle": vehicle or device_id}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def metrics(self) -> str:
        return (await self.http.get("/metrics")).text


def metric(text: str, series: str) -> float:
    """The value of ``series`` (name and labels as rendered) in a /metrics text; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


async def start_gateway(
    nursery: trio.Nursery, settings: Settings, fleet: DemoFleet | None = None
) -> GatewayHandle:
    scope = trio.CancelScope()

    async def runner(task_status: trio.TaskStatus[Endpoints]) -> None:
        with scope:
            await run_gateway(settings, fleet=fleet, task_status=task_status)

    ep = await nursery.start(runner)
    return GatewayHandle(ep, scope)


@pytest.fixture
async def gateway(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    yield gw
    await gw.http.aclose()
    gw.scope.cancel()


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, poll_s: float = 0.05
) -> None:
    """Wait until ``condition()`` (awaited if need be) is true; fail after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        while True:
            met = condition()
            if met if isinstance(met, bool) else await met:
                return
            await trio.sleep(poll_s)


async def wait_metric(
    http: httpx.AsyncClient, series: str, at_least: float, timeout_s: float = 10.0
) -> None:
    """Wait until the /metrics series ``series`` reaches ``at_least``."""

    async def reached() -> bool:
        return metric((await http.get("/metrics")).text, series) >= at_least

    await until(reached, timeout_s)


async def wait_tracked(gw: GatewayHandle, vehicle: str) -> None:
    """Wait until the live stage tracks a started route on ``vehicle``."""
    with trio.fail_after(5):
        while vehicle not in (await gw.http.get("/v1/live")).json()["routes"]:  # noqa: ASYNC110
            await trio.sleep(0.02)


async def handshake(url: str, token: str | None) -> httpx.Response:
    """A plain WebSocket upgrade request. (trio-websocket's client leaks its socket when the
    server rejects the handshake, which this suite's warnings-as-errors would flag.)"""
    hdrs = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as client:
        return await client.get(url.replace("ws://", "http://"), headers=hdrs)


_positions = msgspec.msgpack.Decoder(list[Position])


async def stored_seqs(redis: coredis.Redis[bytes], vehicle: str) -> list[int]:
    """Every position's ``seq`` in ``vehicle``'s history stream as stored, repeats included
    (the REST history read drops repeats, so it cannot show them)."""
    entries = await redis.xrange(keys.track(vehicle))
    return [p.seq for e in entries for p in _positions.decode(_raw(e.field_values[b"p"]))]


def _raw(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
