"""MQTT ingest against a real Mosquitto and a real gateway and Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from moat.lib.mqtt import QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.mqtt_ingest import parse_mqtt_url, topic_device

from .conftest import GatewayHandle, gateway_settings, start_gateway


def test_topics_and_urls() -> None:
    assert topic_device("fleet/van-1/pos") == ("native", "van-1")
    assert topic_device("owntracks/alice/phone") == ("owntracks", "alice.phone")
    assert topic_device("fleet/van-1/other") is None
    assert topic_device("elsewhere") is None
    u = parse_mqtt_url("mqtts://bob:s%40cret@broker.example:9000")
    assert (u.host, u.port, u.username, u.password, u.tls) == (
        "broker.example", 9000, "bob", "s@cret", True,
    )  # fmt: skip
    assert parse_mqtt_url("mqtt://h").port == 1883
    with pytest.raises(ValueError, match="mqtt://"):
        parse_mqtt_url("http://h")


async def wait_for(gw: GatewayHandle, path: str, check: Any) -> Any:
    with trio.fail_after(10):
        while True:
            r = await gw.http.get(path)
            if r.status_code == 200 and check(r.json()):
                return r.json()
            await trio.sleep(0.05)


async def test_native_and_owntracks_topics(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=mosquitto))
    await gw.register("van-m")
    await gw.register("alice.phone")
    await wait_for(gw, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    now = time.time()
    async with AsyncMQTTClient(u.host, u.port, client_id="test-publisher") as pub:
        one = {"seq": 1, "ts": now - 5, "lat": 52.0, "lon": 4.0, "speed": 3.0}
        await pub.publish("fleet/van-m/pos", json.dumps(one), qos=QoS.AT_LEAST_ONCE)
        batch = [{"seq": s, "ts": now - 5 + s, "lat": 52.0 + s * 1e-5, "lon": 4.0} for s in (2, 3)]
        await pub.publish("fleet/van-m/pos", msgspec.msgpack.encode(batch), qos=QoS.AT_LEAST_ONCE)
        await pub.publish("fleet/van-m/pos", b"\xc1 garbage", qos=QoS.AT_LEAST_ONCE)
        await pub.publish("fleet/ghost/pos", json.dumps(one), qos=QoS.AT_LEAST_ONCE)
        loc = {"_type": "location", "lat": 48.1, "lon": 11.5, "tst": int(now), "vel": 36,
               "acc": 8, "batt": 80, "tid": "al"}  # fmt: skip
        await pub.publish("owntracks/alice/phone", json.dumps(loc), qos=QoS.AT_LEAST_ONCE)
        await pub.publish("owntracks/alice/phone", json.dumps({"_type": "transition"}))

    v = await wait_for(gw, "/v1/vehicles/van-m", lambda v: v["seq"] == 3)
    assert v["lat"] == pytest.approx(52.00003)
    phone = await wait_for(gw, "/v1/vehicles/alice.phone", lambda v: v["lat"] == 48.1)
    assert phone["speed"] == pytest.approx(10.0)
    metrics = await gw.metrics()
    assert 'gateway_frames_rejected_total{reason="malformed"} 1' in metrics
    assert 'gateway_handshakes_refused_total{reason="unknown_device"} 1' in metrics
    assert 'gateway_frames_total{enc="native",proto="mqtt"} 4' in metrics
    await gw.http.aclose()
    gw.scope.cancel()


async def test_gateway_starts_without_a_broker_and_keeps_other_ingest(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    from gateway.redisproc import free_port

    dead = f"mqtt://127.0.0.1:{free_port()}"
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=dead))
    token = await gw.register("van-w")
    r = await gw.http.post(
        "/v1/positions",
        json=[{"seq": 1, "ts": time.time(), "lat": 1.0, "lon": 2.0}],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.json()["seq"] == 1
    assert (await gw.http.get("/healthz")).json()["mqtt"] == "reconnecting"
    await gw.http.aclose()
    gw.scope.cancel()
