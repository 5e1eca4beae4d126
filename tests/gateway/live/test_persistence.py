"""The live stage's state saved in a real Redis and carried on from: by another process taking
a vehicle over, by the customer pages of a process not tracking it, after a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest

from gateway.fleet.store import Store
from geofence import Zone
from tests.gateway.live.factory import live_tracking
from tests.gateway.live.test_stage import (
    EPOCH,
    FRAME,
    VAN,
    delivery,
    drive_to_stop_1,
    of_types,
    route_record,
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as client:
        yield client


async def test_a_process_taking_a_vehicle_over_carries_on_from_the_saved_tracker(
    redis: coredis.Redis[bytes],
) -> None:
    one, two = live_tracking(redis), live_tracking(redis)
    for live in (one, two):  # both processes hold the started route
        live.stage.install(route_record(), [delivery("d-1"), delivery("d-2")], None, None)
    fixes = drive_to_stop_1()
    assert len(of_types(one.stage.process([(VAN, fixes[:15])]), "delivery.arriving")) == 2
    await one.saved.save_emitted()  # at once: it emitted events

    two.release(VAN, fixes[14].ts)
    # Not tracking the latest fixes: the customer pages read the stop the other one saved.
    assert two.routes[VAN].approach.target is None
    assert await two.heading_to(VAN, "route-1") == "stop-1"
    await two.saved.take_over([(VAN, fixes[15:])])
    assert two.metrics.get("gateway_route_takeovers_total") == 1.0
    after = two.stage.process([(VAN, fixes[15:])])
    assert of_types(after, "stop.arriving", "delivery.arriving") == []
    assert [e.stop for e in of_types(after, "stop.arrived")] == ["stop-1"]


async def test_a_vehicle_with_nothing_saved_is_tracked_afresh(
    redis: coredis.Redis[bytes],
) -> None:
    live = live_tracking(redis)
    live.stage.install(route_record(), [], None, None)
    live.release(VAN, EPOCH + 1e6)
    assert await live.heading_to(VAN, "route-1") is None
    await live.saved.take_over([(VAN, drive_to_stop_1())])
    assert live.metrics.get("gateway_route_takeovers_total") == 0.0
    assert live.stage.is_current(VAN)


async def test_zone_memberships_saved_are_loaded_after_a_restart(
    redis: coredis.Redis[bytes],
) -> None:
    lat, lon = FRAME.latlon(0.0, 2_000.0)
    yard = Zone.circle("yard", lat, lon, 150.0)
    before = live_tracking(redis)
    before.apply_zone("yard", yard)
    before.stage.install(route_record(), [], None, None)
    events = before.stage.process([(VAN, drive_to_stop_1())])
    assert [e.type for e in events if e.type.startswith("geofence.")] == ["geofence.enter"]
    await before.saved.save_changed()
    store = Store(redis, 3600.0)
    saved = await store.load_live_fields(VAN, ("geo", "trk", "next"))
    assert set(saved) == {"geo", "trk", "next"}

    after = live_tracking(redis)
    after.apply_zone("yard", yard)
    await after.saved.load_memberships([VAN, "van-unknown"])
    assert set(after.engine.memberships(VAN)) == {"yard"}
    # Inside already: the next fix there is no new entry.
    assert after.stage.process([(VAN, drive_to_stop_1()[-1:])]) == []


async def test_the_store_writes_no_other_field_of_a_vehicle_for_the_live_stage(
    redis: coredis.Redis[bytes],
) -> None:
    store = Store(redis, 3600.0)
    with pytest.raises(ValueError, match="state"):
        await store.save_live_state({VAN: {"state": b"{}"}})
    with pytest.raises(ValueError, match="cur:dev"):
        await store.load_live_fields(VAN, ("trk", "cur:dev"))
    await store.save_live_state({VAN: {"trk": b"{}"}, "van-2": {}})
    assert await store.load_live_state([VAN, "van-2"], "trk") == {VAN: b"{}"}
