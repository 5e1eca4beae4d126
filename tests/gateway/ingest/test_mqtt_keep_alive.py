"""The MQTT connection stays up while the feed is idle, and every reconnect is counted and
logged with its cause: a real Mosquitto, a real gateway and Redis."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trio
from moat.lib.mqtt import MQTTConnectionLost, MQTTProtocolError, QoS, ReasonCode
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.core.redisproc import free_port
from gateway.ingest.mqtt import Inbox
from gateway.ingest.mqtt_ack import AckingClient, BrokerEnd
from gateway.ingest.mqtt_messages import parse_mqtt_url, reconnect_cause
from tests.gateway.conftest import gateway_settings, start_gateway, wait_metric
from tests.gateway.ingest.test_mqtt import wait_for

# Mosquitto drops a client that sends nothing for 1.5 times its keep-alive (3 s here); it
# notices within a second or two, now and then later.
KEEP_ALIVE_S = 2
IDLE_S = 3 * KEEP_ALIVE_S + 1
RECONNECTS = "gateway_mqtt_reconnects_total"


def series_total(text: str, name: str) -> float:
    """The sum of every series of ``name`` in a /metrics text, whatever its labels."""
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


@contextlib.contextmanager
def private_mosquitto(folder: Path, *conf: str) -> Iterator[str]:
    """A Mosquitto of this test's own, with ``conf`` lines added; yields its mqtt:// URL."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    for attempt in range(5):
        port = free_port()
        path = folder / f"mosquitto-{attempt}.conf"
        path.write_text(
            "\n".join([f"listener {port} 127.0.0.1", "persistence false", *conf]) + "\n"
        )
        proc = subprocess.Popen([exe, "-c", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("mosquitto did not start")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


async def test_an_idle_gateway_stays_connected(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, mosquitto: str
) -> None:
    """No traffic at all for three keep-alive periods: the gateway's PINGREQs keep the
    connection (Mosquitto announces no server keep alive, and drops a client that sends
    nothing for 1.5 periods), so it never reconnects, and a QoS 0 position published after
    (lost if it came while the gateway was reconnecting) is stored."""
    settings = gateway_settings(
        redis_url, data_dir, mqtt_url=mosquitto, mqtt_keep_alive_s=KEEP_ALIVE_S
    )
    gw = await start_gateway(nursery, settings)
    await gw.register("van-idle")
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    await trio.sleep(IDLE_S)
    assert series_total(await gw.metrics(), RECONNECTS) == 0
    assert (await gw.http.get("/healthz")).json()["mqtt"] == "connected"

    u = parse_mqtt_url(mosquitto)
    fix = {"seq": 1, "ts": time.time() - 5, "lat": 52.0, "lon": 4.0}
    async with AsyncMQTTClient(u.host, u.port, client_id="test-idle-pub") as pub:
        await pub.publish("fleet/van-idle/pos", json.dumps(fix), qos=QoS.AT_MOST_ONCE)
    v = await wait_for(gw.http, "/v1/vehicles/van-idle", lambda v: v["seq"] == 1)
    assert v["lat"] == pytest.approx(52.0)
    assert series_total(await gw.metrics(), RECONNECTS) == 0
    await gw.http.aclose()
    gw.scope.cancel()


async def test_the_keep_alive_is_ours_unless_the_broker_names_one(
    mosquitto: str, tmp_path: Path
) -> None:
    """MQTT 5: the client pings at the keep-alive it asked for, or at the Server Keep Alive
    the broker's CONNACK names (Mosquitto names one, its ``max_keepalive``, only to a client
    that asked for more)."""
    u = parse_mqtt_url(mosquitto)
    with private_mosquitto(tmp_path, "allow_anonymous true", "max_keepalive 10") as capped:
        c = parse_mqtt_url(capped)
        for (host, port), asked, expected in (
            ((u.host, u.port), KEEP_ALIVE_S, KEEP_ALIVE_S),  # none named
            ((c.host, c.port), 30, 10),  # the broker's
            ((c.host, c.port), 5, 5),  # within the broker's: none named
        ):
            with Inbox() as inbox:
                client = AckingClient(host, port, deliveries=inbox.send, keep_alive=asked,
                                      client_id=f"test-keep-alive-{asked}")  # fmt: skip
                async with client:
                    assert client.keep_alive_s == expected
                    if expected == KEEP_ALIVE_S:  # and PINGREQs go out, answered
                        await trio.sleep(KEEP_ALIVE_S + 0.5)
                        assert client.pings_answered >= 1


async def test_a_refused_connection_is_counted_and_logged_with_the_brokers_reason(
    redis_url: str,
    data_dir: Path,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that refuses the gateway (here: no anonymous clients) says why in its
    CONNACK; each attempt is counted under that reason and logged with it."""
    caplog.set_level(logging.WARNING, logger="gateway.ingest.mqtt")
    with private_mosquitto(tmp_path, "allow_anonymous false") as url:
        gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, mqtt_url=url))
        await wait_metric(gw.http, f'{RECONNECTS}{{cause="refused_not_authorized"}}', 1)
        assert (await gw.http.get("/healthz")).json()["mqtt"] == "reconnecting"
        assert series_total(await gw.metrics(), RECONNECTS) == series_total(
            await gw.metrics(), f'{RECONNECTS}{{cause="refused_not_authorized"}}'
        )
        logged = [r.getMessage() for r in caplog.records if r.name == "gateway.ingest.mqtt"]
        assert any(
            "cannot connect: refused_not_authorized" in m and "NOT_AUTHORIZED 0x87" in m
            for m in logged
        ), logged
        await gw.http.aclose()
        gw.scope.cancel()


async def test_a_lost_connection_is_counted_and_logged_and_the_gateway_comes_back(
    redis_url: str,
    data_dir: Path,
    nursery: trio.Nursery,
    mosquitto: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another client connecting with the gateway's client id takes its session over (two
    gateways configured alike); Mosquitto closes the gateway's connection without a word.
    The gateway counts and logs the loss, reconnects (taking the session back) and stores
    what is published next."""
    caplog.set_level(logging.WARNING, logger="gateway.ingest.mqtt")
    client_id = f"test-gw-lost-{time.monotonic_ns()}"
    settings = gateway_settings(redis_url, data_dir, mqtt_url=mosquitto,
                                mqtt_client_id=client_id)  # fmt: skip
    gw = await start_gateway(nursery, settings)
    await gw.register("van-lost")
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    u = parse_mqtt_url(mosquitto)
    try:
        async with AsyncMQTTClient(u.host, u.port, client_id=client_id):
            await wait_metric(gw.http, f'{RECONNECTS}{{cause="connection_lost"}}', 1)
            await trio.sleep(2)  # the gateway takes its session back meanwhile
    except* (MQTTConnectionLost, anyio.BrokenResourceError):
        pass
    await wait_for(gw.http, "/healthz", lambda h: h.get("mqtt") == "connected")
    assert series_total(await gw.metrics(), RECONNECTS) == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.ingest.mqtt"]
    expected = "connection lost: connection_lost (MQTTConnectionLost())"
    assert any(expected in m for m in logged), logged

    fix = {"seq": 1, "ts": time.time() - 5, "lat": 52.0, "lon": 4.0}
    async with AsyncMQTTClient(u.host, u.port, client_id=f"{client_id}-pub") as pub:
        await pub.publish("fleet/van-lost/pos", json.dumps(fix), qos=QoS.AT_LEAST_ONCE)
    await wait_for(gw.http, "/v1/vehicles/van-lost", lambda v: v["seq"] == 1)
    await gw.http.aclose()
    gw.scope.cancel()


def test_reconnect_causes() -> None:
    """The label names the broker's reason when it gave one (Mosquitto 2.0 closes without a
    DISCONNECT, other brokers send one), else what the client raised; the detail has both."""
    lost = MQTTConnectionLost()
    cases: list[tuple[BrokerEnd | None, list[BaseException], str]] = [
        (BrokerEnd(ReasonCode.SESSION_TAKEN_OVER, False, None), [lost], "session_taken_over"),
        (BrokerEnd(ReasonCode.SERVER_SHUTTING_DOWN, False, "bye"), [lost],
         "server_shutting_down"),
        (BrokerEnd(ReasonCode.NORMAL_DISCONNECTION, False, None), [lost], "normal_disconnection"),
        (BrokerEnd(ReasonCode.BAD_USERNAME_OR_PASSWORD, True, None),
         [MQTTProtocolError("not connected")], "refused_bad_username_or_password"),
        (None, [OSError("All connection attempts failed")], "connect_failed"),
        (None, [ExceptionGroup("g", [MQTTProtocolError("bad"), anyio.BrokenResourceError()])],
         "protocol_error"),
        (None, [KeyError("bug"), lost], "error"),
        (None, [lost, trio.BrokenResourceError()], "connection_lost"),
    ]  # fmt: skip
    for end, errors, expected in cases:
        cause, detail = reconnect_cause(errors, end)
        assert cause == expected, (end, errors)
        assert repr(errors[0]) in detail or "ExceptionGroup" in repr(errors[0])
    _, detail = reconnect_cause([lost], BrokerEnd(ReasonCode.SERVER_SHUTTING_DOWN, False, "bye"))
    said = "the broker disconnected: SERVER_SHUTTING_DOWN 0x8B (bye)"
    assert detail == f"{said}; MQTTConnectionLost()"
