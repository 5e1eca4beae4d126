"""The dispatch store and service on a real Redis: the live side's view, concurrency."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

import geofence
from gateway.core import keys
from gateway.core.events import EventLog
from gateway.dispatch.records import RouteRecord, delivery_id, route_id
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import DispatchStore, route_deliveries_key
from notify.events import Event
from tests.gateway.dispatch.test_validate import T0, batch, delivery_payload, route_payload


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as r:
        await r.sadd(keys.VEHICLES, ["van-1", "van-2"])
        yield r


@pytest.fixture
def broadcast() -> list[Event]:
    return []


@pytest.fixture
def dispatch(redis: coredis.Redis[bytes], broadcast: list[Event]) -> Dispatch:
    return Dispatch(DispatchStore(redis, EventLog(redis, 10_000)), broadcast.extend)


async def test_listeners_and_active_routes(
    dispatch: Dispatch, broadcast: list[Event], redis: coredis.Redis[bytes]
) -> None:
    seen: list[tuple[str, str]] = []

    def broken(route: RouteRecord) -> None:
        raise RuntimeError("listener bug")

    dispatch.on_route_changed.append(broken)
    dispatch.on_route_changed.append(lambda r: seen.append((r.id, r.status)))
    rid = route_id("R1")
    await dispatch.import_routes(batch(route_payload("R1"), route_payload("R2", "van-2")), T0)
    assert seen == [(rid, "planned"), (route_id("R2"), "planned")]
    assert await dispatch.active_route("van-1") is None
    assert await dispatch.load_active_routes() == []

    await dispatch.start(rid, T0 + 1)
    assert seen[-1] == (rid, "started")
    active = await dispatch.active_route("van-1")
    assert active is not None and active.id == rid and active.started == T0 + 1
    assert [r.id for r in await dispatch.load_active_routes()] == [rid]
    g = dispatch.geofence_route(active)
    assert isinstance(g, geofence.Route) and g.vehicle_id == "van-1" and len(g.stops) == 2

    await dispatch.assign(rid, "van-2", None, T0 + 2)
    assert seen[-1] == (rid, "started")
    assert await dispatch.active_route("van-1") is None
    assert (await dispatch.active_route("van-2")) == (await dispatch.load_active_routes())[0]

    await dispatch.set_status(delivery_id("R1-D0"), "delivered", now=T0 + 3)
    await dispatch.set_status(delivery_id("R1-D1"), "cancelled", now=T0 + 4)
    assert seen[-1] == (rid, "finished")
    assert await dispatch.active_route("van-2") is None
    assert await dispatch.load_active_routes() == []
    # Events reached the log and the broadcast alike, in order.
    logged = await EventLog(redis, 10_000).read("-", 1000)
    assert [e["type"] for e in logged] == [e.type for e in broadcast]
    assert broadcast[-1].type == "route.finished"


async def test_concurrent_imports_leave_consistent_records(
    dispatch: Dispatch, redis: coredis.Redis[bytes]
) -> None:
    # Writers race on one route with different plans; whichever wins, the route record, its
    # delivery set and every delivery's route field must agree.
    variants = []
    for n in range(1, 9):
        p = route_payload("R1", n_stops=1)
        p["stops"][0]["deliveries"] = [delivery_payload(f"D{i}") for i in range(n)]
        variants.append(batch(p))
    async with trio.open_nursery() as nursery:
        for body in variants * 3:
            nursery.start_soon(dispatch.import_routes, body)
    rid = route_id("R1")
    route = await dispatch.store.get_route(rid)
    assert route is not None
    members = {m.decode() for m in await redis.smembers(route_deliveries_key(rid))}
    assert members == set(route.delivery_ids())
    for d in await dispatch.store.list_deliveries():
        assert (d.route == rid) == (d.id in members), d
        assert d.status == ("scheduled" if d.id in members else "cancelled")
    created = [e for e in await EventLog(redis, 10_000).read("-", 10_000)
               if e["type"] == "delivery.created"]  # fmt: skip
    assert len(created) == 8  # each delivery created once, whatever the interleaving
