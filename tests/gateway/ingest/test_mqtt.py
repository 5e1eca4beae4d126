"""MQTT ingest against a real Mosquitto and a real gateway and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import coredis
import httpx
import msgspec
import pytest
import trio
from moat.lib.mqtt import QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.app import run_gateway
from gateway.core.redisproc import free_port, start_redis
from gateway.ingest import mqtt as mqtt_ingest
from gateway.ingest.mqtt import Inbox
from gateway.ingest.mqtt_ack import AckingClient
from gateway.ingest.mqtt_messages import MqttUrl, parse_mqtt_url, topic_device
from tests.conftest import MOSQUITTO_QUEUE
from tests.gateway.conftest import (
    API_KEY,
    gateway_settings,
    metric,
    start_gateway,
    stored_seqs,
    wait_metric,
)
from tests.gateway.test_crash import start_process, stop_process


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


async def wait_for(http: httpx.AsyncClient, path: str, check: Any) -> Any:
    with trio.fail_after(10):
        while True:
            r = await http.get(path)
            if r.status_code == 200 and check(r.json()):
                return r.json()
            await trio.sleep(0.05)


async def test_native_and_owntracks_topics(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=mosquitto))
    await gw.register("van-m")
    await gw.register("alice.phone")
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
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

    v = await wait_for(gw.http, "/v1/vehicles/van-m", lambda v: v["seq"] == 3)
    assert v["lat"] == pytest.approx(52.00003)
    phone = await wait_for(gw.http, "/v1/vehicles/alice.phone", lambda v: v["lat"] == 48.1)
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


async def test_a_stop_is_prompt_with_or_without_a_broker(
    redis_url: str, data_dir: Path, mosquitto: str
) -> None:
    """A graceful stop does not wait for a broker that is down, nor for one that is up."""
    for url in (mosquitto, f"mqtt://127.0.0.1:{free_port()}"):
        stop = trio.Event()
        settings = gateway_settings(redis_url, data_dir, mqtt_url=url, notify=False)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                ep = await nursery.start(partial(run_gateway, settings, stop))
                if url == mosquitto:
                    async with httpx.AsyncClient(base_url=ep.http_url) as http:
                        await wait_for(http, "/healthz", lambda h: h.get("mqtt") == "connected")
                stop.set()


async def test_bursts_keep_each_devices_order_and_count_every_rejection(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    """Messages of several devices, interleaved and sent back to back, arrive in batches;
    each device's positions are still validated in the order sent, and every rejection is
    counted by its reason."""
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=mosquitto))
    devices = [f"burst-{i}" for i in range(3)]
    for d in devices:
        await gw.register(d)
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    now = time.time()
    rounds = 150
    expected = {"duplicate": 0, "out_of_range": 0, "future": 0, "malformed": 0}
    accepted: dict[str, list[int]] = {d: [] for d in devices}
    messages: list[tuple[str, bytes]] = []
    for seq in range(1, rounds + 1):
        for i, d in enumerate(devices):
            pos = {"seq": seq, "ts": now - 300 + seq, "lat": 52.0 + seq * 1e-5, "lon": 4.0 + i}
            kind = (seq + i) % 10
            if kind == 3:  # the previous position again: a resend
                prev = {**pos, "seq": seq - 1, "ts": pos["ts"] - 1}
                messages.append((d, json.dumps([prev, pos]).encode()))
                expected["duplicate"] += 1  # seq 0 too: seq starts above 0
            elif kind == 5:  # out of range, beside a good one in the same batch frame
                messages.append((d, msgspec.msgpack.encode([{**pos, "lat": 91.0}, pos])))
                expected["out_of_range"] += 1
            elif kind == 7:  # a fix from the future, then garbage, then the position
                messages.append((d, json.dumps({**pos, "ts": now + 3600}).encode()))
                messages.append((d, b"{not json"))
                messages.append((d, json.dumps(pos).encode()))
                expected["future"] += 1
                expected["malformed"] += 1
            else:
                messages.append((d, json.dumps(pos).encode()))
            accepted[d].append(seq)
    async with AsyncMQTTClient(u.host, u.port, client_id="test-burst") as pub:
        for d, payload in messages:
            await pub.publish(f"fleet/{d}/pos", payload, qos=QoS.AT_MOST_ONCE)

    for d in devices:
        await wait_for(gw.http, f"/v1/vehicles/{d}", lambda v: v["seq"] == rounds)
    for d in devices:
        track = (await gw.http.get(f"/v1/vehicles/{d}/track")).json()["positions"]
        assert [p["seq"] for p in track] == accepted[d]
    m = await gw.metrics()
    for reason in ("duplicate", "out_of_range", "future"):
        series = f'gateway_positions_rejected_total{{reason="{reason}"}}'
        assert metric(m, series) == expected[reason], reason
    assert metric(m, 'gateway_frames_rejected_total{reason="malformed"}') == expected["malformed"]
    assert metric(m, 'gateway_frames_total{enc="native",proto="mqtt"}') == len(messages)
    assert metric(m, "gateway_positions_accepted_total") == rounds * len(devices)
    # Handled in batches, not one message at a time.
    assert 0 < metric(m, "gateway_mqtt_batches_total") < len(messages)
    await gw.http.aclose()
    gw.scope.cancel()


async def test_text_payload_over_the_limit_in_bytes_is_too_big(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    """``max_frame_bytes`` counts a text payload's UTF-8 bytes, not its characters: one
    under the limit in characters but over it in bytes is refused as too big, and counted;
    the device's next message and other devices' are stored."""
    limit = 300
    gw = await start_gateway(
        nursery,
        gateway_settings(redis_url, data_dir, mqtt_url=mosquitto, max_frame_bytes=limit),
    )
    for d in ("van-u", "van-v"):
        await gw.register(d)
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    now = time.time()
    big = json.dumps({"seq": 1, "ts": now - 5, "lat": 52.0, "lon": 4.0, "note": "€" * 100},
                     ensure_ascii=False)  # fmt: skip
    assert len(big) < limit < len(big.encode())
    async with AsyncMQTTClient(u.host, u.port, client_id="test-too-big") as pub:
        await pub.publish("fleet/van-u/pos", big, qos=QoS.AT_LEAST_ONCE)  # str: sent as text
        await pub.publish("fleet/van-v/pos", pos(1, now - 5), qos=QoS.AT_LEAST_ONCE)
        await pub.publish("fleet/van-u/pos", pos(2, now - 5), qos=QoS.AT_LEAST_ONCE)
    await wait_for(gw.http, "/v1/vehicles/van-u", lambda v: v["seq"] == 2)
    await wait_for(gw.http, "/v1/vehicles/van-v", lambda v: v["seq"] == 1)
    track = (await gw.http.get("/v1/vehicles/van-u/track")).json()["positions"]
    assert [p["seq"] for p in track] == [2]
    m = await gw.metrics()
    assert metric(m, 'gateway_frames_rejected_total{reason="too_big"}') == 1
    await gw.http.aclose()
    gw.scope.cancel()


async def test_revoked_device_is_refused_here_at_once_and_through_another_process_soon(
    redis_url: str,
    data_dir: Path,
    nursery: trio.Nursery,
    mosquitto: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mqtt_ingest, "DEVICE_CACHE_S", 0.5)
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=mosquitto))
    other = await start_gateway(nursery, gateway_settings(redis_url, data_dir))  # no MQTT
    for d in ("van-r", "van-s"):
        await gw.register(d)
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    now = time.time()
    refused = 'gateway_handshakes_refused_total{reason="unknown_device"}'

    def pos(seq: int) -> str:
        return json.dumps({"seq": seq, "ts": now - 10 + seq, "lat": 52.0, "lon": 4.0})

    async with AsyncMQTTClient(u.host, u.port, client_id="test-revoke") as pub:
        for d in ("van-r", "van-s"):
            await pub.publish(f"fleet/{d}/pos", pos(1), qos=QoS.AT_LEAST_ONCE)
            await wait_for(gw.http, f"/v1/vehicles/{d}", lambda v: v["seq"] == 1)
        # Revoked through this process: its next messages are refused.
        assert (await gw.http.post("/v1/devices/van-r/revoke")).status_code == 200
        for seq in (2, 3):
            await pub.publish("fleet/van-r/pos", pos(seq), qos=QoS.AT_LEAST_ONCE)
        await wait_metric(gw.http, refused, 2)
        # Revoked through another process: refused once the record is read again.
        assert (await other.http.post("/v1/devices/van-s/revoke")).status_code == 200
        await trio.sleep(0.6)
        await pub.publish("fleet/van-s/pos", pos(2), qos=QoS.AT_LEAST_ONCE)
        await wait_metric(gw.http, refused, 3)
    for d in ("van-r", "van-s"):
        assert (await gw.http.get(f"/v1/vehicles/{d}")).json()["seq"] == 1
    for g in (gw, other):
        await g.http.aclose()
        g.scope.cancel()


async def test_inbox_takes_every_message_in_order(mosquitto: str) -> None:
    """Messages the client hands over while nobody takes them wait in the inbox and come
    out in the order published, in batches; none is lost."""
    u = parse_mqtt_url(mosquitto)
    topic = f"inbox-{time.monotonic_ns()}"
    count = 300
    got: list[int] = []
    sizes: list[int] = []
    with Inbox() as inbox:
        async with (
            AsyncMQTTClient(u.host, u.port, client_id="test-inbox-pub") as pub,
            AckingClient(u.host, u.port, deliveries=inbox.send, client_id="test-inbox-sub") as sub,
            sub.subscribe(topic, qos=QoS.AT_LEAST_ONCE),
        ):
            for i in range(count):
                await pub.publish(topic, str(i), qos=QoS.AT_MOST_ONCE)
            await trio.sleep(0.3)
            with trio.fail_after(10):
                while len(got) < count:
                    batch = await inbox.batch()
                    sizes.append(len(batch))
                    got += [int(p.payload) for p in batch]
    assert got == list(range(count))
    assert max(sizes) > 1


def payload_of(packet: Any) -> bytes | str:
    """A received message's payload as ``json.loads`` takes it."""
    payload = packet.payload
    return payload if isinstance(payload, bytes | str) else bytes(payload)


def pos(seq: int, t0: float) -> str:
    return json.dumps({"seq": seq, "ts": t0 + seq, "lat": 52.0 + seq * 1e-5, "lon": 4.0})


async def redelivered(u: MqttUrl, client_id: str, count: int) -> list[int]:
    """The ``seq`` of each message the broker hands to ``client_id``'s kept session when it
    connects (acknowledging none): ``count`` of them, and any that follow within 0.3 s."""
    got: list[int] = []
    with Inbox() as inbox:
        async with AckingClient(
            u.host, u.port, deliveries=inbox.send, client_id=client_id, session_expiry_s=60
        ):
            with trio.fail_after(5):
                while len(got) < count:
                    got += [json.loads(payload_of(p))["seq"] for p in await inbox.batch()]
            with trio.move_on_after(0.3):
                while True:
                    got += [json.loads(payload_of(p))["seq"] for p in await inbox.batch()]
    return got


async def test_a_message_is_acknowledged_once_its_positions_are_in_redis(
    data_dir: Path, mosquitto: str
) -> None:
    """A QoS 1 message is acknowledged to the broker once its position is written; one
    that carries nothing to write (malformed, an unknown device, a duplicate) once those
    before it are. With Redis down nothing is acknowledged: the broker keeps those messages
    in the gateway's session, with what is published while the gateway is away, and
    redelivers them when it is back, to be stored then, each once."""
    folder = data_dir / "own-redis"
    redis = start_redis(folder, appendonly=True)
    client_id = f"test-gw-ack-{time.monotonic_ns()}"
    settings = gateway_settings(redis.url, data_dir, mqtt_url=mosquitto, notify=False,
                                mqtt_client_id=client_id)  # fmt: skip
    u = parse_mqtt_url(mosquitto)
    t0 = time.time() - 60
    frames = 'gateway_frames_total{enc="native",proto="mqtt"}'
    try:
        async with AsyncMQTTClient(u.host, u.port, client_id=f"{client_id}-pub") as pub:

            async def send(topic: str, payload: str | bytes) -> None:
                await pub.publish(topic, payload, qos=QoS.AT_LEAST_ONCE)

            async with trio.open_nursery() as nursery:
                gw = await start_gateway(nursery, settings)
                await gw.register("van-a")
                await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
                await send("fleet/van-a/pos", pos(1, t0))
                await wait_metric(gw.http, "gateway_writer_positions_total", 1)
                await send("fleet/van-a/pos", b"{not json")
                await send("fleet/ghost/pos", pos(1, t0))
                await send("fleet/van-a/pos", pos(1, t0))
                await wait_metric(gw.http, frames, 4)
                redis.stop()
                await send("fleet/van-a/pos", pos(2, t0))
                await send("fleet/van-a/pos", pos(3, t0))
                await wait_metric(gw.http, frames, 6)
                await wait_metric(gw.http, "gateway_writer_errors_total", 1)
                await gw.http.aclose()
                gw.scope.cancel()
            await send("fleet/van-a/pos", pos(4, t0))  # while the gateway is away
        assert await redelivered(u, client_id, 3) == [2, 3, 4]

        redis = start_redis(folder, port=redis.port, appendonly=True)
        async with trio.open_nursery() as nursery:
            gw = await start_gateway(nursery, settings)
            await wait_metric(gw.http, "gateway_writer_positions_total", 3)
            async with coredis.Redis.from_url(redis.url) as r:
                assert await stored_seqs(r, "van-a") == [1, 2, 3, 4]
            await gw.http.aclose()
            gw.scope.cancel()
    finally:
        redis.stop()


# The stream goes on until the stopped gateway has exited, then this many more messages: some
# are always left for the restarted one, however late the stop takes effect.
AFTER_EXIT = 50
STREAMED_MAX = MOSQUITTO_QUEUE // 2


async def stream_interrupt_restart(
    redis_url: str,
    data_dir: Path,
    mosquitto: str,
    interrupt: Callable[[trio.Process], Awaitable[None]],
    **settings: str,
) -> tuple[list[int], int, str]:
    """A gateway process with a fixed client id takes a stream of QoS 1 messages from one
    device; once 100 are written, ``interrupt`` stops it while the stream goes on. Started
    again, it must store every message, each position once and in order. Returns the ``seq``
    stored before the restart, how many messages were sent and the restarted gateway's
    metrics."""
    client_id = f"test-gw-{time.monotonic_ns()}"
    env = {"MQTT_URL": mosquitto, "MQTT_CLIENT_ID": client_id} | settings
    u = parse_mqtt_url(mosquitto)
    t0 = time.time() - STREAMED_MAX - 3600  # a position a second, none in the future
    proc, http, _ = await start_process(redis_url, data_dir, **env)
    async with (
        httpx.AsyncClient(base_url=http, headers={"X-API-Key": API_KEY}) as api,
        coredis.Redis.from_url(redis_url) as redis,
    ):
        (await api.post("/v1/devices", json={"id": "van-k"})).raise_for_status()
        await wait_for(api, "/healthz", lambda h: h.get("mqtt") == "connected")
        async with (
            AsyncMQTTClient(u.host, u.port, client_id=f"{client_id}-pub") as pub,
            trio.open_nursery() as nursery,
        ):

            async def interrupt_mid_ingest() -> None:
                await wait_metric(api, "gateway_writer_positions_total", 100)
                await interrupt(proc)

            nursery.start_soon(interrupt_mid_ingest)
            count = after_exit = 0
            while after_exit < AFTER_EXIT:
                assert count < STREAMED_MAX, "the gateway did not stop while the stream ran"
                count += 1
                await pub.publish("fleet/van-k/pos", pos(count, t0), qos=QoS.AT_LEAST_ONCE)
                after_exit += proc.returncode is not None
        await proc.wait()
        before = await stored_seqs(redis, "van-k")
        assert before == list(range(1, len(before) + 1))
        assert len(before) <= count - AFTER_EXIT

        proc, http, _ = await start_process(redis_url, data_dir, **env)
        try:
            with trio.fail_after(60):  # a hang, not a timing: up to STREAMED_MAX to catch up
                while len(await stored_seqs(redis, "van-k")) < count:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert await stored_seqs(redis, "van-k") == list(range(1, count + 1))
            async with httpx.AsyncClient(base_url=http, headers={"X-API-Key": API_KEY}) as api:
                return before, count, (await api.get("/metrics")).text
        finally:
            await stop_process(proc)


async def test_kill_9_mid_ingest_loses_no_message(
    redis_url: str, data_dir: Path, mosquitto: str
) -> None:
    """A gateway with a fixed client id, killed with SIGKILL while QoS 1 messages stream in:
    once it is back, every message the broker took is stored, each position once."""

    async def kill(proc: trio.Process) -> None:
        proc.kill()

    await stream_interrupt_restart(redis_url, data_dir, mosquitto, kill)


async def test_sigterm_mid_ingest_acknowledges_what_it_wrote(
    redis_url: str, data_dir: Path, mosquitto: str
) -> None:
    """A gateway with a fixed client id, stopped with SIGTERM while QoS 1 messages stream
    in, writes what it had taken and acknowledges it before it disconnects: once it is
    back, every message is stored once and none it had taken is delivered again."""
    # A writer that lingers: at any moment some messages are taken and not yet written.
    slow_writer = {"WRITER_LINGER_S": "0.05"}
    before, count, m = await stream_interrupt_restart(
        redis_url, data_dir, mosquitto, stop_process, **slow_writer
    )
    # Nothing the stopped gateway had written came back from the broker.
    assert metric(m, 'gateway_positions_rejected_total{reason="duplicate"}') == 0
    assert metric(m, "gateway_writer_already_stored_total") == 0
    assert metric(m, "gateway_positions_accepted_total") == count - len(before)


async def test_hostile_payloads_are_refused_and_other_devices_served(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    """Deep nesting, a seq of 2^64, oversized batches, OwnTracks fields of the wrong shape:
    each is refused and counted, the MQTT connection stays up, and another device's
    positions are stored; a device past its budget has its messages refused (counted)."""
    gw = await start_gateway(
        nursery,
        gateway_settings(
            redis_url, data_dir, mqtt_url=mosquitto, device_rate_per_s=0.01, device_burst=400
        ),
    )
    for d in ("van-x", "van-y", "eve.phone"):
        await gw.register(d)
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    now = time.time()
    loc = {"_type": "location", "lat": 48.1, "lon": 11.5, "tst": int(now)}
    async with AsyncMQTTClient(u.host, u.port, client_id="test-hostile") as pub:
        for payload in (
            "[" * 5000 + "]" * 5000,
            b"\x91" * 5000 + b"\xc0",
            json.dumps({"seq": 2**64, "ts": now - 5, "lat": 52.0, "lon": 4.0}),
            b"\xdd" + (20_000).to_bytes(4, "big") + b"\xc0" * 20_000,
        ):
            await pub.publish("fleet/van-x/pos", payload, qos=QoS.AT_LEAST_ONCE)
        for bad in ({"batt": {"x": 1}}, {"tst": "1" + "0" * 400}, {"lat": [1]}):
            await pub.publish("owntracks/eve/phone", json.dumps(loc | bad), qos=QoS.AT_LEAST_ONCE)
        await pub.publish("owntracks/eve/phone", "{" * 5000, qos=QoS.AT_LEAST_ONCE)
        for s in range(1, 411):  # a budget of 400: the last ten are refused
            await pub.publish("fleet/van-y/pos", pos(s, now - 500), qos=QoS.AT_LEAST_ONCE)
        await pub.publish("fleet/van-x/pos", pos(1, now - 5), qos=QoS.AT_LEAST_ONCE)
    await wait_for(gw.http, "/v1/vehicles/van-x", lambda v: v["seq"] == 1)
    await wait_for(gw.http, "/v1/vehicles/van-y", lambda v: v["seq"] == 400)
    assert (await gw.http.get("/healthz")).json()["mqtt"] == "connected"
    m = await gw.metrics()
    assert metric(m, 'gateway_frames_rejected_total{reason="malformed"}') == 6
    assert metric(m, 'gateway_frames_rejected_total{reason="batch_too_large"}') == 1
    assert metric(m, 'gateway_frames_rejected_total{reason="rate_limited"}') == 10
    assert metric(m, 'gateway_positions_rejected_total{reason="out_of_range"}') == 1
    assert "gateway_handler_errors_total" not in m
    await gw.http.aclose()
    gw.scope.cancel()
