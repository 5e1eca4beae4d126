"""The live stage after ingest, as the gateway runs it: geofence transitions and route
tracking, turned into events.

:class:`LiveTracking` composes the pure :class:`~gateway.live.stage.TrackingStage` (fixes in,
events out) with what runs around it: the saved state (``persistence.py``), zone and route
changes across processes (``sync.py``), the ticker (``ticks.py``) and ETA learning
(``learning.py``). It owns the stage's input and output: the writer hands every durably
written batch to :meth:`LiveTracking.offer` (a bounded channel; full, the writer waits:
geofencing is in-process CPU work and far faster than ingest), and one task runs the stage on
it, then appends the events to the log. A ``delivery.arriving`` event stands for the delivery
becoming ``arriving`` in dispatch; events and those status changes wait out a lost Redis, as
positions do.

Several processes: a route is tracked (and ticked: ``is_local``) by the process that writes
its vehicle's fixes. When the device moves to another process, the other one hears of it
(:meth:`LiveTracking.release`: a newer state of the vehicle came from elsewhere), and the
process that now receives the fixes loads the tracker's saved state before its first fix, so
arrivals, announced ETAs and late risks carry on instead of starting again.
:meth:`LiveTracking.heading_to` answers for the customer pages which stop a vehicle drives to:
from the stage if this process tracks its latest fixes, else as the process that does saved it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

import trio

from gateway.core.events import EventLog
from gateway.core.failures import log_once
from gateway.core.metrics import Metrics
from gateway.dispatch.lifecycle import ARRIVING, IllegalTransition
from gateway.dispatch.records import RouteRecord
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import Busy, NotFound
from gateway.fleet.store import Store
from gateway.live.learning import EtaLearning
from gateway.live.persistence import SavedState
from gateway.live.stage import Groups, TrackedRoute, TrackingStage
from gateway.live.sync import ROUTES_CHANNEL, RouteSync, ZoneSync
from gateway.live.ticks import Ticker
from gateway.zones.store import ZoneStore
from geofence import Approach, EngineConfig, GeofenceEngine, TrackerConfig, Zone
from notify.events import Event
from notify.redis_client import RedisOutage

__all__ = ["ROUTES_CHANNEL", "LiveTracking", "TrackedRoute"]

log = logging.getLogger(__name__)

STAGE_SLICE: Final = 50  # vehicles of a written batch the stage takes in one step
QUEUE_BATCHES: Final = 64  # written batches waiting for the stage; when full, the writer waits


class LiveTracking:
    """The live stage as a service: ``run`` it, ``offer`` it every written batch."""

    def __init__(
        self,
        store: Store,
        zone_store: ZoneStore,
        dispatch: Dispatch,
        metrics: Metrics,
        *,
        event_log: EventLog,
        is_local: Callable[[str], bool],
        on_tracked: Callable[[list[str]], None] = lambda vehicles: None,
        engine_config: EngineConfig | None = None,
        tracker_config: TrackerConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dispatch = dispatch
        self.metrics = metrics
        self.event_log = event_log
        self.on_tracked = on_tracked
        self.stage = TrackingStage(
            is_local=is_local, engine_config=engine_config, tracker_config=tracker_config
        )
        self.saved = SavedState(store, self.stage, metrics)
        self.zone_sync = ZoneSync(zone_store, self.stage)
        self.route_sync = RouteSync(self.stage, self.saved, dispatch, store.redis)
        self.learning = EtaLearning(store, self.stage, metrics)
        self.ticker = Ticker(self.stage, self.saved, clock, self._write)
        # Events and the status changes they stand for wait out a lost Redis, as positions
        # do: a delivery.arriving dropped would be a customer message never sent.
        self._outage = RedisOutage("live events", self._redis_outage)
        self._send, self._recv = trio.open_memory_channel[Groups](QUEUE_BATCHES)
        dispatch.on_route_changed.append(self.route_changed)
        fleet, engine = self.stage.fleet, self.stage.engine
        metrics.gauge_fn(
            "gateway_live_queue_depth", lambda: float(self._send.statistics().current_buffer_used)
        )
        metrics.gauge_fn("gateway_zones", lambda: float(len(engine.zones())))
        metrics.gauge_fn("gateway_eta_routes", lambda: float(len(fleet)))
        metrics.gauge_fn(
            "gateway_geofence_out_of_order_total", lambda: float(engine.stats.out_of_order)
        )
        metrics.gauge_fn("gateway_eta_sites", lambda: float(fleet.site_count))

    @property
    def routes(self) -> dict[str, TrackedRoute]:
        """The active routes tracked here, by vehicle."""
        return self.stage.routes

    @property
    def engine(self) -> GeofenceEngine:
        return self.stage.engine

    # ----- changes from the API, dispatch and the other processes

    def apply_zone(self, zone_id: str, zone: Zone | None) -> None:
        """Set zone ``zone_id`` to ``zone`` (None: remove it)."""
        self.zone_sync.apply(zone_id, zone)

    def route_changed(self, record: RouteRecord, local: bool = True) -> None:
        """Dispatch listener: apply the route's new state from the stage's own task."""
        self.route_sync.route_changed(record, local)

    def release(self, vehicle: str, ts: float) -> None:
        """Another process wrote ``vehicle``'s fix of time ``ts`` (see
        :meth:`TrackingStage.release`)."""
        self.stage.release(vehicle, ts)

    # ----- state

    async def load_state(self, vehicles: Sequence[str]) -> None:
        """Zones from Redis, then each vehicle's saved zone memberships."""
        await self.zone_sync.catch_up()
        await self.saved.load_memberships(vehicles)

    async def heading_to(self, vehicle: str, route_id: str) -> str | None:
        """The stop of route ``route_id`` that ``vehicle`` drives to (see
        :class:`~geofence.Approach`), or None: judged here if this process tracks the
        vehicle's latest fixes, else as the process that does saved it."""
        tracked = self.stage.routes.get(vehicle)
        if tracked is None or tracked.route.id != route_id:
            return None
        if self.stage.is_current(vehicle):
            return tracked.approach.target
        return Approach.target_in(await self.saved.approach_state(vehicle), route_id)

    # ----- the stage's input and output

    async def offer(self, groups: Groups) -> None:
        await self._send.send(groups)

    def close(self) -> None:
        self._send.close()

    async def _consume(self) -> None:
        async for groups in self._recv:
            await self.saved.take_over(groups)
            # A slice of vehicles at a time, the rest of the process running between slices:
            # a large written batch of routed vans in one step stalled it for its length.
            for first in range(0, len(groups), STAGE_SLICE):
                if first:
                    await trio.lowlevel.checkpoint()
                part = groups[first : first + STAGE_SLICE]
                await self._write(self.stage.process(part))
                # Their ETAs are now those of these positions: customer pages may show both.
                self.on_tracked([vehicle for vehicle, _ in part])
            await self.saved.save_emitted()
            await self.learning.write()

    async def _write(self, events: list[Event]) -> None:
        """Make the deliveries arriving that ``events`` say are, then append the events."""
        await self._emit(await self._lifecycle(events))

    async def _emit(self, events: list[Event]) -> None:
        if not events:
            return
        for ev in events:
            self.metrics.inc("gateway_events_total", type=ev.type)
        try:
            await self._outage.call(self.event_log.append, events)
        except Exception as exc:  # a bug, not an outage (that is waited out): loud
            self.metrics.inc("gateway_live_errors_total", step="events")
            log_once(log, f"could not append {len(events)} events", exc)

    async def _lifecycle(self, events: list[Event]) -> list[Event]:
        """A delivery near its stop becomes ``arriving``; its ``delivery.arriving`` event (with
        ETA and distance, which notifications quote) stands for that change, and is dropped
        when the delivery cannot change (already delivered, cancelled, ...)."""
        out = []
        for ev in events:
            if ev.type == "delivery.arriving" and ev.delivery is not None:
                try:
                    await self._arriving(ev.delivery, ev.ts)
                except (IllegalTransition, NotFound) as exc:
                    log.debug("delivery %s not made arriving: %s", ev.delivery, exc)
                    continue
                except Exception as exc:  # a bug: loud, and the others go on
                    self.metrics.inc("gateway_live_errors_total", step="arriving")
                    log_once(log, f"delivery {ev.delivery} not made arriving", exc)
                    continue
            out.append(ev)
        return out

    async def _arriving(self, delivery: str, ts: float) -> None:
        """Make ``delivery`` arriving, waiting out a lost Redis or a busy transaction."""
        while True:
            try:
                # Not announced: the stage's delivery.arriving, logged next, stands for it.
                await self._outage.call(
                    partial(self.dispatch.store.set_status, announce=False), delivery, ARRIVING, ts
                )
                return
            except Busy as exc:
                await self._outage.pause(exc)

    def _redis_outage(self, service: str) -> None:
        self.metrics.inc("gateway_redis_outages_total", service="live")

    # ----- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow zone and route changes, tick, learn, and run the stage on every batch
        offered until :meth:`close`; then save the live state."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.zone_sync.run)
            await nursery.start(self.route_sync.run)
            nursery.start_soon(self.ticker.run)
            nursery.start_soon(self.learning.follow)
            task_status.started()
            try:
                await self._consume()
            finally:
                with trio.move_on_after(2) as cs:
                    cs.shield = True
                    try:
                        await self.saved.save_changed()
                    except* Exception as group:
                        # Cancelled from outside, Redis may already be gone: the state saved
                        # a few seconds ago stands.
                        log.info("live state not saved at stop: %r", group.exceptions)
            nursery.cancel_scope.cancel()
