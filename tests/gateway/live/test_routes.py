"""Started routes are tracked live: stop and delivery events from real ingest."""

from __future__ import annotations

import json
import time
from typing import Any

import coredis
import pytest
import trio
from trio_websocket import open_websocket_url

from gateway.core.events import EventLog
from gateway.dispatch.records import delivery_id, route_id
from gateway.dispatch.store import DispatchStore
from tests.gateway.conftest import GatewayHandle, metric, wait_tracked

STOP = (48.85, 2.35)
M_PER_DEG_LAT = 111_195.0


def route_body(now: float) -> dict[str, Any]:
    recipient = {"name": "Ada", "phone": "+33612345678", "email": "ada@example.com",
                 "language": "en", "timezone": "Europe/Paris", "channels": ["sms"]}  # fmt: skip
    return {
        "routes": [
            {
                "external_id": "LIVE-1",
                "vehicle": "van-live",
                "driver": {"name": "Marie Curie"},
                "date": "2026-11-23",
                "stops": [
                    {
                        "external_id": "S1",
                        "location": {"lat": STOP[0], "lon": STOP[1]},
                        "address": "1 rue de Rivoli",
                        "window": {"start": now, "end": now + 3600},
                        "service_s": 120,
                        "deliveries": [{"external_id": "LIVE-D1", "recipient": recipient}],
                    }
                ],
            }
        ]
    }


async def test_a_started_route_gives_arriving_and_arrived(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-live")
    now = time.time()
    r = await gateway.http.put("/v1/routes", json=route_body(now - 600))
    assert r.status_code == 200, r.text
    assert (await gateway.http.post("/v1/routes/LIVE-1/start")).status_code == 200
    did = delivery_id("LIVE-D1")
    assert (await gateway.http.get(f"/v1/deliveries/{did}")).json()["status"] == "out_for_delivery"
    # Let the live stage install the route's tracker before the van moves.
    await wait_tracked(gateway, "van-live")

    # From 2 km south to the stop at 10 m/s, a fix every 10 s.
    n = 21
    fixes = [
        {
            "seq": i + 1,
            "ts": now - (n - i) * 10,
            "lat": STOP[0] - (2000 - 100 * i) / M_PER_DEG_LAT,
            "lon": STOP[1],
            "speed": 10.0,
        }
        for i in range(n)
    ]
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        for f in fixes:
            await ws.send_message(json.dumps(f))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < n:
                pass

    wanted = {"stop.arriving", "delivery.arriving", "stop.arrived"}
    with trio.fail_after(5):
        while True:
            evs = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
            live = [e for e in evs if e["type"] in wanted]
            if {e["type"] for e in live} == wanted:
                break
            await trio.sleep(0.05)
    arriving = next(e for e in live if e["type"] == "delivery.arriving")
    assert arriving["delivery"] == did and arriving["route"] == route_id("LIVE-1")
    # "Arriving": within 1 km or 5 minutes of the stop (the tracker's defaults).
    data = arriving["data"]
    assert data["distance_m"] <= 1000.0 or data["eta"] - arriving["ts"] <= 300.0
    assert abs(arriving["data"]["eta"] - (now - 10)) < 120
    assert (await gateway.http.get(f"/v1/deliveries/{did}")).json()["status"] == "arriving"
    eta_changes = [e for e in evs if e["type"] in ("delivery.eta_changed", "stop.eta_changed")]
    assert all(e["delivery"] == did for e in eta_changes)


async def test_events_and_arriving_wait_out_a_lost_redis(
    gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live stage's events and the arriving status they stand for are retried while
    Redis does not answer (here: the first two tries of each fail as a lost connection
    does), not dropped: the customer's arriving message depends on them."""
    token = await gateway.register("van-live")
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=route_body(now - 600))).is_success
    assert (await gateway.http.post("/v1/routes/LIVE-1/start")).is_success
    await wait_tracked(gateway, "van-live")
    failures = {"append": 2, "set_status": 2}

    def flaky(name: str, original: Any) -> Any:
        async def call(self: Any, *args: Any, **kw: Any) -> Any:
            if failures[name] > 0:
                failures[name] -= 1
                raise coredis.exceptions.ConnectionError("connection lost (injected)")
            return await original(self, *args, **kw)

        return call

    monkeypatch.setattr(EventLog, "append", flaky("append", EventLog.append))
    monkeypatch.setattr(DispatchStore, "set_status", flaky("set_status", DispatchStore.set_status))
    fixes = [
        {"seq": i + 1, "ts": now - (21 - i) * 10, "speed": 10.0,
         "lat": STOP[0] - (2000 - 100 * i) / M_PER_DEG_LAT, "lon": STOP[1]}
        for i in range(21)
    ]  # fmt: skip
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        for f in fixes:
            await ws.send_message(json.dumps(f))
        with trio.fail_after(10):
            while json.loads(await ws.get_message())["seq"] < 21:
                pass
    did = delivery_id("LIVE-D1")
    with trio.fail_after(15):
        while True:
            evs = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
            if any(e["type"] == "delivery.arriving" for e in evs):
                break
            await trio.sleep(0.05)
    assert failures == {"append": 0, "set_status": 0}
    assert (await gateway.http.get(f"/v1/deliveries/{did}")).json()["status"] == "arriving"
    assert metric(await gateway.metrics(), 'gateway_redis_outages_total{service="live"}') >= 1
