"""Retained MQTT messages (OwnTracks retains every location) replayed by the broker when the
gateway (re)subscribes: a real Mosquitto, real gateways and Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import coredis
import trio
from moat.lib.mqtt import MQTTConnectionLost, QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.ingest.mqtt import parse_mqtt_url
from tests.gateway.conftest import (
    GatewayHandle,
    gateway_settings,
    metric,
    start_gateway,
    stored_seqs,
    wait_metric,
)
from tests.gateway.ingest.test_mqtt import wait_for
from tests.gateway.ingest.test_mqtt_keep_alive import series_total

STORED = 'gateway_mqtt_retained_total{outcome="already_stored"}'
NEW = 'gateway_mqtt_retained_total{outcome="new"}'
UNKNOWN = 'gateway_mqtt_retained_total{outcome="unknown_device"}'
REFUSED = 'gateway_handshakes_refused_total{reason="unknown_device"}'


def location(tst: int, lat: float) -> str:
    return json.dumps({"_type": "location", "lat": lat, "lon": 11.5, "tst": tst, "acc": 8})


async def no_rejections(gw: GatewayHandle) -> None:
    m = await gw.metrics()
    assert series_total(m, "gateway_positions_rejected_total") == 0, m
    assert series_total(m, "gateway_frames_rejected_total") == 0, m
    assert metric(m, REFUSED) == 0, m


async def test_retained_locations_are_not_stored_again_on_resubscribe_or_restart(
    redis_url: str, data_dir: Path, mosquitto: str
) -> None:
    """A retained location is stored when it is published, or, published while no gateway
    was there, when a gateway subscribes. Replayed after a reconnect (a resubscribe in the
    same process) or a restart (a new process: the device's cursor comes from Redis), it is
    neither stored again nor counted as a rejection, but counted as a replay. One of an
    unknown device is not counted as a refusal again either."""
    user = f"rt{time.monotonic_ns()}"
    device, topic, ghost = f"{user}.phone", f"owntracks/{user}/phone", f"owntracks/{user}/ghost"
    u = parse_mqtt_url(mosquitto)
    t0 = int(time.time()) - 120
    client_id = f"test-gw-{user}"
    async with (
        AsyncMQTTClient(u.host, u.port, client_id=f"{user}-pub") as pub,
        coredis.Redis.from_url(redis_url) as redis,
    ):
        try:
            async with trio.open_nursery() as nursery:
                gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir,
                                                                   mqtt_url=mosquitto))  # fmt: skip
                await gw.register(device)
                await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
                # Live: the retain flag is not passed on, so these are plain messages.
                await pub.publish(topic, location(t0, 48.1), qos=QoS.AT_LEAST_ONCE, retain=True)
                await pub.publish(ghost, location(t0, 48.1), qos=QoS.AT_LEAST_ONCE, retain=True)
                await wait_for(gw.http, f"/v1/vehicles/{device}", lambda v: v["lat"] == 48.1)
                await wait_metric(gw.http, REFUSED, 1)
                m = await gw.metrics()
                assert (metric(m, STORED), metric(m, NEW), metric(m, UNKNOWN)) == (0, 0, 0)
                await gw.http.aclose()
                gw.scope.cancel()

            # Published while no gateway is subscribed: the replay brings it, new.
            await pub.publish(topic, location(t0 + 30, 48.1001), qos=QoS.AT_LEAST_ONCE, retain=True)
            async with trio.open_nursery() as nursery:
                settings = gateway_settings(redis_url, data_dir, mqtt_url=mosquitto,
                                            mqtt_client_id=client_id)  # fmt: skip
                gw = await start_gateway(nursery, settings)
                await wait_for(gw.http, f"/v1/vehicles/{device}", lambda v: v["lat"] == 48.1001)
                await wait_metric(gw.http, UNKNOWN, 1)
                m = await gw.metrics()
                assert (metric(m, STORED), metric(m, NEW)) == (0, 1)
                # A reconnect: another client takes the session over, the gateway takes it
                # back and subscribes again; the broker replays both retained messages.
                try:
                    async with AsyncMQTTClient(u.host, u.port, client_id=client_id):
                        await wait_metric(gw.http, STORED, 1)
                except* (MQTTConnectionLost, anyio.BrokenResourceError):
                    pass
                await wait_metric(gw.http, UNKNOWN, 2)
                m = await gw.metrics()
                assert series_total(m, "gateway_mqtt_reconnects_total") >= 1
                assert (metric(m, STORED), metric(m, NEW)) == (1, 1)
                await no_rejections(gw)
                await gw.http.aclose()
                gw.scope.cancel()

            # A restart: a new process, the cursor read from Redis.
            async with trio.open_nursery() as nursery:
                gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir,
                                                                   mqtt_url=mosquitto))  # fmt: skip
                await wait_metric(gw.http, STORED, 1)
                await wait_metric(gw.http, UNKNOWN, 1)
                m = await gw.metrics()
                assert metric(m, NEW) == 0
                assert metric(m, "gateway_positions_accepted_total") == 0
                await no_rejections(gw)
                await gw.http.aclose()
                gw.scope.cancel()

            # Each position stored once.
            assert await stored_seqs(redis, device) == [t0 * 1000, (t0 + 30) * 1000]
        finally:
            for t in (topic, ghost):  # the broker is shared: leave no retained message
                await pub.publish(t, b"", qos=QoS.AT_LEAST_ONCE, retain=True)
