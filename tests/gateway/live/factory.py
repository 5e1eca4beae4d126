"""A :class:`LiveTracking` on a real Redis, wired as the gateway wires it, for the live tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import coredis

from gateway.core.events import EventLog
from gateway.core.metrics import Metrics
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import DispatchStore
from gateway.fleet.store import Store
from gateway.live.tracking import LiveTracking
from gateway.zones.store import ZoneStore
from geofence import TrackerConfig


def live_tracking(
    redis: coredis.Redis[bytes],
    *,
    events_max_len: int = 10_000,
    tracker_config: TrackerConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> LiveTracking:
    """Every vehicle local, as in a gateway of one process."""
    event_log = EventLog(redis, events_max_len)
    dispatch = Dispatch(DispatchStore(redis, event_log))
    return LiveTracking(
        Store(redis, 3600.0),
        ZoneStore(redis),
        dispatch,
        Metrics(),
        event_log=event_log,
        is_local=lambda vehicle: True,
        tracker_config=tracker_config,
        clock=clock,
    )
