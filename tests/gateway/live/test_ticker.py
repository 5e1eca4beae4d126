"""The live stage's time-driven rules on virtual time: each event at its exact second.

The ticker runs on trio's ``MockClock`` with ``autojump_threshold=0`` (pytest-trio's
``autojump_clock``) and reads the time through the clock given to ``LiveTracking``, here the
virtual clock. Fixes go in through its stage's ``process`` (no I/O); the events the ticks
produce are written to a real Redis and read back from it. The ticks never wait for Redis
(its events go through a task of their own), so a jump of the virtual clock while a write is
under way cannot shift them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import coredis
import pytest
import trio
from trio.testing import MockClock

from gateway.fleet.position import Position
from gateway.live.tracking import LiveTracking
from geofence import LocalFrame, Route, Stop, TrackerConfig, Zone
from tests.gateway.live.factory import live_tracking

EPOCH: Final = 1_700_000_000.0
FRAME: Final = LocalFrame(52.0, 13.0)
VAN: Final = "van-tick"


def virtual_epoch() -> float:
    return EPOCH + trio.current_time()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as client:
        yield client


def live_stage(redis: coredis.Redis[bytes], **tracker: Any) -> LiveTracking:
    return live_tracking(redis, tracker_config=TrackerConfig(**tracker), clock=virtual_epoch)


def route(window_end: float) -> Route:
    """One stop 5 km north of the origin; the van waits at the origin."""
    lat, lon = FRAME.latlon(0.0, 5_000.0)
    stop = Stop(id="s1", lat=lat, lon=lon, window_start=EPOCH, window_end=window_end)
    return Route(id="r-tick", vehicle_id=VAN, stops=(stop,))


async def start_standing(live: LiveTracking, nursery: trio.Nursery) -> float:
    """On a whole virtual second, one standing fix at the origin, then the ticker: ticks
    fall on the following whole seconds. Returns the fix time."""
    await trio.sleep_until(math.floor(trio.current_time()) + 1.0)
    ts = virtual_epoch()
    lat, lon = FRAME.latlon(0.0, 0.0)
    live.stage.process([(VAN, [Position(seq=1, ts=ts, lat=lat, lon=lon, speed=0.0)])])
    await live.saved.save_changed()  # nothing left for the ticker to save: no I/O until an event
    nursery.start_soon(live.ticker.run)
    return ts


async def van_on_route(
    redis: coredis.Redis[bytes], nursery: trio.Nursery, deliveries: list[str], **tracker: Any
) -> tuple[LiveTracking, float]:
    """A live stage tracking the van's route (window far ahead), the van standing at the
    origin from the returned time on."""
    live = live_stage(redis, **tracker)
    live.stage.set_route(route(EPOCH + 1e6), {"s1": deliveries})
    return live, await start_standing(live, nursery)


async def events(live: LiveTracking, kind: str) -> list[dict[str, Any]]:
    found = await live.event_log.read_reverse(1_000)
    return sorted((e for e in found if e["type"] == kind), key=lambda e: float(e["ts"]))


async def wait_until(t: float, check: Callable[[], bool] | None = None) -> None:
    await trio.sleep_until(t - EPOCH)
    assert check is None or check()


async def test_stopped_too_long_fires_at_the_exact_second(
    autojump_clock: MockClock, redis: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    live, t0 = await van_on_route(
        redis, nursery, [], stopped_too_long_s=600.0, eta_change_threshold_s=1e6
    )
    await wait_until(t0 + 599.5)
    assert await events(live, "vehicle.stopped_too_long") == []
    await wait_until(t0 + 700.0)
    [ev] = await events(live, "vehicle.stopped_too_long")
    assert ev["ts"] == t0 + 600.0
    assert ev["data"]["since_ts"] == t0 and ev["data"]["stopped_s"] == 600.0
    nursery.cancel_scope.cancel()


async def test_eta_changes_while_silent_are_rate_limited_to_the_second(
    autojump_clock: MockClock, redis: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    # The van stands still: its ETA slips one second per second. Announced when it moved by
    # more than 30 s, at most once per 100 s: at +100, +200, +300 s exactly.
    live, t0 = await van_on_route(
        redis,
        nursery,
        ["d-1"],
        eta_change_threshold_s=30.0,
        eta_min_interval_s=100.0,
        stopped_too_long_s=1e6,
    )
    await wait_until(t0 + 350.0)
    changes = await events(live, "delivery.eta_changed")
    assert [e["ts"] - t0 for e in changes] == [100.0, 200.0, 300.0]
    assert all(e["delivery"] == "d-1" for e in changes)
    assert [e["data"]["delta_s"] for e in changes] == pytest.approx([100.0, 100.0, 100.0])
    nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("refresh_s", "after_s"), [(0.0, 261.0), (5.0, 265.0)])
async def test_late_risk_raises_at_the_second_the_eta_passes_the_margin(
    autojump_clock: MockClock,
    redis: coredis.Redis[bytes],
    nursery: trio.Nursery,
    refresh_s: float,
    after_s: float,
) -> None:
    # The route is replaced below, once the first ETA is known.
    live, t0 = await van_on_route(
        redis,
        nursery,
        [],
        late_risk_margin_s=60.0,
        eta_change_threshold_s=1e6,
        eta_refresh_s=refresh_s,
    )
    tracker = live.routes[VAN].tracker
    travel = tracker.etas()["s1"] - t0
    # The window ends 200.5 s after the ETA held at the fix: late risk once the ETA is past it
    # by more than 60 s, i.e. 261 s later (the ETA slips one second per second), at the first
    # tick that works the ETAs out again from then on (every tick, or every 5 s).
    window_end = t0 + travel + 200.5
    live.stage.set_route(route(window_end), {}, state=tracker.export_state())
    await wait_until(t0 + 400.0)
    [ev] = await events(live, "stop.late_risk")
    assert ev["ts"] == t0 + after_s
    assert ev["data"]["late_by_s"] == pytest.approx(after_s - 200.5)
    nursery.cancel_scope.cancel()


async def test_zone_dwell_fires_at_its_threshold(
    autojump_clock: MockClock, redis: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    live = live_stage(redis)
    lat, lon = FRAME.latlon(0.0, 0.0)
    live.apply_zone("yard", Zone.circle("yard", lat, lon, 100.0, dwell_threshold_s=120.0))
    t0 = await start_standing(live, nursery)
    await wait_until(t0 + 119.5)
    assert await events(live, "geofence.dwell") == []
    await wait_until(t0 + 200.0)
    [ev] = await events(live, "geofence.dwell")
    assert ev["ts"] == t0 + 120.0 and ev["data"]["zone"] == "yard"
    nursery.cancel_scope.cancel()


async def test_news_of_another_process_counts_only_when_newer(
    redis: coredis.Redis[bytes],
) -> None:
    """A vehicle written by another process makes this process's tracker stale, unless this
    process has tracked a fix as new since (the other's news arrived late)."""
    live = live_stage(redis)
    live.stage.set_route(route(EPOCH + 3600), {})
    live.stage.process([(VAN, [Position(seq=1, ts=EPOCH + 100, lat=52.0, lon=13.0)])])
    live.release(VAN, EPOCH + 90)  # older than what this process tracked: ignored
    assert live.stage.is_current(VAN)
    live.release(VAN, EPOCH + 110)
    assert not live.stage.is_current(VAN)
