"""The live stage's ETA model learnt from the ``eta:observed`` stream on a real Redis: routes
installed before the stream was read back (a restart) get what it holds."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Final

import coredis
import pytest
import trio

from gateway.fleet.store import DWELL, EtaObservation
from geofence import LocalFrame, Route, Stop, site_key
from tests.gateway.live.factory import live_tracking

EPOCH: Final = 1_700_000_000.0
FRAME: Final = LocalFrame(52.0, 13.0)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as client:
        yield client


def stop(i: int, north_m: float) -> Stop:
    lat, lon = FRAME.latlon(0.0, north_m)
    return Stop(
        id=f"s{i}", lat=lat, lon=lon, window_start=EPOCH, window_end=EPOCH + 1e5, service_s=120.0
    )


def history(slow: Stop, others: list[Stop]) -> list[EtaObservation]:
    """Earlier routes' dwells: each route stops at the slow location (9 visits in 10 about 600
    s longer than the 120 s planned) and at 5 ordinary ones (1 in 50 long)."""
    rng = random.Random(4)
    out = []
    for r in range(40):
        visited = [slow, *rng.sample(others, 5)]
        for i, s in enumerate(visited):
            dwell = 120.0 * rng.lognormvariate(0.0, 0.25)
            if s is slow and rng.random() < 0.9:
                dwell += 600.0 * rng.lognormvariate(0.0, 0.1)
            elif s is not slow and rng.random() < 0.02:
                dwell += rng.uniform(300.0, 900.0)
            key = site_key(s.lat, s.lon)
            out.append(EtaObservation(DWELL, f"h{r}", i, 120.0, dwell, key))
    return out


async def test_routes_installed_before_the_stream_is_read_get_what_it_holds(
    redis: coredis.Redis[bytes], nursery: trio.Nursery
) -> None:
    slow, ordinary = stop(0, 1_000.0), stop(1, 2_000.0)
    others = [stop(10 + k, 10_000.0 + 500.0 * k) for k in range(30)]
    live = live_tracking(redis, events_max_len=1_000)
    await live.store.append_eta_observations(history(slow, [ordinary, *others]), 10_000)
    route = Route(id="r-new", vehicle_id="van-l", stops=(slow, ordinary))
    live.stage.set_route(route, {})  # installed at start, before anything was read back
    before = live.routes["van-l"].tracker.service.shapes
    assert before[0] == before[1]  # both only the built-in prior's

    nursery.start_soon(live.learning.follow)
    with trio.fail_after(10):
        await live.learning.caught_up.wait()
    assert len(live.stage.fleet) == 40
    shapes = live.routes["van-l"].tracker.service.shapes
    assert shapes[0].long_probability > 0.7  # the slow location, known now
    assert shapes[0].long_extra_s == pytest.approx(600.0, rel=0.2)
    assert shapes[1].long_probability < 0.1
    # The learnt fleet prior replaced the built-in one in the tracker too.
    assert live.routes["van-l"].tracker.config.prior == live.stage.fleet.prior()
