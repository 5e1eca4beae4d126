"""A gateway process whose pub/sub subscriptions were down catches up once they are back.

Redis pub/sub keeps nothing for a subscriber that is away. Process B's subscriptions are cut
(and kept from coming back) while zones, routes and a vehicle change through process A: once
B subscribes again it applies all of it, deletions included.

B connects as a Redis user of its own, so that only B's subscriptions can be cut: without
access to any channel, Redis drops its subscribed connections and refuses new subscriptions;
its other commands go on working.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import coredis
import pytest
import trio
from trio_websocket import open_websocket_url

from gateway.core.connect import connect_redis
from gateway.core.pubsub import follow_channel
from gateway.dispatch.records import delivery_id
from gateway.fleet.peers import CHANNEL as STATES_CHANNEL
from gateway.live.tracking import ROUTES_CHANNEL
from gateway.zones.store import CHANNEL as ZONES_CHANNEL
from notify.keys import ALERTS_CHANNEL
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    metric,
    start_gateway,
    until,
    wait_tracked,
)
from tests.gateway.dispatch.test_validate import batch, route_payload
from tests.gateway.live.test_zones import CENTER, circle, drive, events_of
from tests.gateway.test_processes import leg, stream

USER: Final = "gateway-b"
PASSWORD: Final = "b-secret"
CHANNELS: Final = (ZONES_CHANNEL, ROUTES_CHANNEL, STATES_CHANNEL)
WAIT_S: Final = 30.0  # generous: the machine may be loaded
FAR: Final = (CENTER[0], CENTER[1] + 0.1)  # about 7 km east of the zones van-z drives through
APART: Final = (CENTER[0] + 0.1, CENTER[1])  # 11 km north: in no zone


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client of the default user; B's user exists (with every right) while it is open."""
    async with coredis.Redis.from_url(redis_url) as redis:
        await redis.acl_setuser(USER, "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all")
        try:
            yield redis
        finally:
            await redis.acl_deluser([USER])


async def subscribed(redis: coredis.Redis[bytes], n: int) -> bool:
    """Whether each channel B and A follow has ``n`` subscribers."""
    counts = await redis.pubsub_numsub(*CHANNELS)
    return all(counts.get(c.encode(), 0) == n for c in CHANNELS)


async def cut_subscriptions(redis: coredis.Redis[bytes]) -> None:
    """Drop B's subscriptions and keep it from subscribing again (until ``restore``)."""
    await redis.acl_setuser(USER, "resetchannels")
    await redis.client_kill(user=USER, type_=coredis.PureToken.PUBSUB)
    await until(lambda: subscribed(redis, 1), WAIT_S)  # A's only


async def restore_subscriptions(redis: coredis.Redis[bytes]) -> None:
    await redis.acl_setuser(USER, "allchannels")
    await until(lambda: subscribed(redis, 2), WAIT_S)


async def eventually(gw: GatewayHandle, path: str, check: Callable[[Any], bool]) -> None:
    """Wait until ``check(json of GET path)`` holds."""

    async def holds() -> bool:
        return check((await gw.http.get(path)).json())

    await until(holds, WAIT_S)


def point(lat_lon: tuple[float, float]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lat_lon[1], lat_lon[0]]}


def zone_radii(body: Any) -> dict[str, float]:
    return {f["id"]: f["properties"]["radius_m"] for f in body["features"]}


async def test_a_process_catches_up_with_what_it_missed_while_unsubscribed(
    redis_url: str, data_dir: Path, admin: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir, offline_after_s=2.0))
    b_url = redis_url.replace("redis://", f"redis://{USER}:{PASSWORD}@")
    # Without a notifier: unable to publish its alerts, it would stop the process.
    b_settings = gateway_settings(b_url, data_dir, offline_after_s=2.0, notify=False)
    b = await start_gateway(nursery, b_settings)
    tokens = {van: await a.register(van) for van in ("van-r1", "van-r2", "van-s", "van-z")}
    assert (await a.http.post("/v1/zones", json=circle("old"))).status_code == 201
    kept = circle("kept", radius_m=50.0) | {"geometry": point(FAR)}
    assert (await a.http.post("/v1/zones", json=kept)).status_code == 201
    assert (await a.http.put("/v1/routes", json=batch(route_payload("R1", "van-r1")))).is_success
    assert (await a.http.post("/v1/routes/R1/start")).is_success
    await eventually(b, "/v1/zones", lambda z: zone_radii(z) == {"old": 200.0, "kept": 50.0})
    await wait_tracked(b, "van-r1")

    async def b_caught_up() -> bool:
        return "gateway_peer_states_caught_up_total" in await b.metrics()

    await until(b_caught_up, WAIT_S)  # B's catch-up after its first subscription is done
    await cut_subscriptions(admin)
    # Zones: one created, one replaced, one deleted.
    assert (await a.http.post("/v1/zones", json=circle("new", radius_m=300.0))).is_success
    kept["properties"]["radius_m"] = 80.0
    assert (await a.http.put("/v1/zones/kept", json=kept)).is_success
    assert (await a.http.delete("/v1/zones/old")).is_success
    # Routes: one finished (its deliveries done), one imported and started.
    for did in (delivery_id("R1-D0"), delivery_id("R1-D1")):
        r = await a.http.post(f"/v1/deliveries/{did}/status", json={"status": "delivered"})
        assert r.is_success, r.text
    assert (await a.http.get("/v1/routes/R1")).json()["status"] == "finished"
    assert (await a.http.put("/v1/routes", json=batch(route_payload("R2", "van-r2")))).is_success
    assert (await a.http.post("/v1/routes/R2/start")).is_success
    # A vehicle: a fix through A, then silence until A marks it offline.
    await stream(a, tokens["van-s"], leg(1, time.time() - 5, APART, APART, 1))
    await eventually(a, "/v1/vehicles/van-s", lambda v: v.get("status") == "offline")
    # None of it reached B.
    assert zone_radii((await b.http.get("/v1/zones")).json()) == {"old": 200.0, "kept": 50.0}
    assert set((await b.http.get("/v1/live")).json()["routes"]) == {"van-r1"}
    assert (await b.http.get("/v1/vehicles/van-s")).status_code == 404

    await restore_subscriptions(admin)
    await eventually(b, "/v1/zones", lambda z: zone_radii(z) == {"new": 300.0, "kept": 80.0})
    await eventually(b, "/v1/live", lambda live: set(live["routes"]) == {"van-r2"})
    await eventually(
        b, "/v1/vehicles/van-s", lambda v: (v.get("seq"), v.get("status")) == (1, "offline")
    )
    # Live traffic through B meets the zones as they are now.
    await drive(b, tokens["van-z"], [-600, -250, 0, 250, 600])
    await events_of(b, "geofence.", 2)
    await trio.sleep(0.5)  # anything more would be logged by now
    evs = await events_of(b, "geofence.", 2)
    assert [(e["type"], e["vehicle"], e["data"]["zone"]) for e in evs] == [
        ("geofence.enter", "van-z", "new"),
        ("geofence.exit", "van-z", "new"),
    ]
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()


async def test_a_process_pushes_alert_changes_it_missed_to_its_browsers(
    redis_url: str, data_dir: Path, admin: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    """An alert raised and one acknowledged on A while B does not listen reach the ops
    browser connected to B once B subscribes again; what it had already is not sent again."""
    a = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    b_url = redis_url.replace("redis://", f"redis://{USER}:{PASSWORD}@")
    # B runs its notifier, so its alert changes are published: B's user may publish; the
    # gap comes from refusing it SUBSCRIBE, not channels.
    b = await start_gateway(nursery, gateway_settings(b_url, data_dir))
    await a.register("van-r1")
    assert (
        await a.http.put("/v1/routes", json=batch(route_payload("R1", "van-r1", n_stops=3)))
    ).is_success
    assert (await a.http.post("/v1/routes/R1/start")).is_success
    deliveries = [delivery_id(f"R1-D{i}") for i in range(3)]
    seen: list[tuple[str, str]] = []  # (delivery, status) of each alert B's browser got

    async def browse(task_status: trio.TaskStatus[None]) -> None:
        url = b.ep.http_url.replace("http://", "ws://") + f"/v1/ops/live?key={API_KEY}"
        async with open_websocket_url(url) as browser:
            task_status.started()
            while True:
                msg = json.loads(await browser.get_message())
                alert = msg.get("alert", {})
                if alert.get("kind") == "delivery.failed" and alert["delivery"] in deliveries:
                    seen.append((alert["delivery"], alert["status"]))

    async def fail(delivery: str) -> str:
        """Fail ``delivery`` through A; the id of the alert it raises."""
        r = await a.http.post(
            f"/v1/deliveries/{delivery}/status", json={"status": "failed", "reason": "nobody_home"}
        )
        assert r.status_code == 200, r.text
        found: list[str] = []

        async def raised() -> bool:
            alerts = (await a.http.get("/v1/alerts")).json()["alerts"]
            found[:] = [
                x["id"]
                for x in alerts
                if (x["kind"], x.get("delivery")) == ("delivery.failed", delivery)
            ]
            return bool(found)

        await until(raised, WAIT_S)
        return found[0]

    async def alert_subscribers(n: int) -> bool:
        counts = await admin.pubsub_numsub(ALERTS_CHANNEL)
        return counts.get(ALERTS_CHANNEL.encode(), 0) == n

    await until(lambda: alert_subscribers(2), WAIT_S)
    async with trio.open_nursery() as browsing:
        await browsing.start(browse)
        first = await fail(deliveries[0])
        await until(lambda: seen == [(deliveries[0], "open")], WAIT_S)

        await admin.acl_setuser(USER, "-subscribe", "-ssubscribe")
        await admin.client_kill(user=USER, type_=coredis.PureToken.PUBSUB)
        await until(lambda: alert_subscribers(1), WAIT_S)  # A's only
        acked = await a.http.post(f"/v1/alerts/{first}/ack", json={"by": "agent-a"})
        assert acked.status_code == 200, acked.text
        await fail(deliveries[1])
        await trio.sleep(0.5)
        assert seen == [(deliveries[0], "open")]  # none of it reached B

        await admin.acl_setuser(USER, "+subscribe", "+ssubscribe")
        await until(lambda: alert_subscribers(2), WAIT_S)
        await until(lambda: len(seen) == 3, WAIT_S)
        await trio.sleep(1.0)  # anything more would have come by now
        assert sorted(seen) == sorted(
            [(deliveries[0], "open"), (deliveries[0], "acknowledged"), (deliveries[1], "open")]
        )
        assert metric(await b.metrics(), "gateway_alerts_caught_up_total") >= 2
        browsing.cancel_scope.cancel()
    for gw in (a, b):
        await gw.http.aclose()
        gw.scope.cancel()


async def test_follow_channel_tells_of_every_subscription_before_its_messages(
    redis_url: str,
) -> None:
    """``on_subscribed`` runs after each subscription, before the messages that follow it;
    when it fails, the channel is subscribed to again and it runs again."""
    log: list[str] = []

    async def on_subscribed() -> None:
        log.append("subscribed")
        if log.count("subscribed") == 2:
            raise RuntimeError("catching up failed")

    async def handle(data: bytes) -> None:
        log.append(data.decode())

    async with connect_redis(redis_url) as redis, trio.open_nursery() as nursery:
        await nursery.start(
            partial(follow_channel, on_subscribed=on_subscribed), redis, "c", handle
        )
        assert log == ["subscribed"]
        await redis.publish("c", "one")
        await until(lambda: log[-1] == "one", WAIT_S)
        await redis.client_kill(type_=coredis.PureToken.PUBSUB)
        await until(lambda: log.count("subscribed") == 3, WAIT_S)
        await redis.publish("c", "two")
        await until(lambda: log[-1] == "two", WAIT_S)
        assert log == ["subscribed", "one", "subscribed", "subscribed", "two"]
        nursery.cancel_scope.cancel()
