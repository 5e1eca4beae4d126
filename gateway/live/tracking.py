"""The live stage after ingest: geofence transitions and route tracking, turned into events.

The writer hands every durably written batch to ``LiveTracking.offer`` (a bounded channel;
full, the writer waits: geofencing is in-process CPU work and far faster than ingest). One
task runs the geofence engine on the whole batch (vectorised) and each active route's
tracker on its vehicle's fixes in order, then appends the resulting events to the log.
A ticker lets dwell, ETA and silence-based alerts fire without new fixes. Engine and
tracker state are saved per vehicle (``veh:{id}`` fields ``geo`` and ``trk``) every few
seconds, so a restart does not forget who is inside which zone; a route tracker's state is
also saved at once whenever it emits an event.

Beside each route's tracker, an :class:`~geofence.Approach` judges after every fix which stop
the vehicle drives to (whatever the planned order; none while it stands at a stop), for the
customer pages (:meth:`LiveTracking.heading_to`). Its state is saved with the tracker's (field
``next``), and at once whenever the stop it names changes, so the other processes' customer
pages read it there.

Several processes: a route change made through one process's API is announced on
``routes:changed`` (the route id), so every process holds every started route; but a route
is tracked by the
process that writes its vehicle's fixes (and ticked only there: ``is_local``). When the
device moves to another process, the other one hears of it (``release``: a newer state of
the vehicle came from elsewhere), and the process that now receives the fixes reloads the
tracker's saved state before its first fix, so arrivals, announced ETAs and late risks carry
on instead of starting again. Zone and route changes announced while a process was not
listening are not lost to it: on subscribing again it compares what Redis stores with what
it holds, and applies the differences.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from gateway.core import keys
from gateway.core.failures import log_once
from gateway.core.keys import ROUTES_CHANGED as ROUTES_CHANNEL
from gateway.core.metrics import Metrics
from gateway.core.pubsub import follow_channel
from gateway.dispatch.lifecycle import ARRIVING, IllegalTransition
from gateway.dispatch.records import STARTED, RouteRecord, to_geofence_route
from gateway.dispatch.store import Busy, NotFound
from gateway.fleet.position import Position
from gateway.fleet.store import DWELL, LEG, EtaObservation, Store
from gateway.zones.store import ZoneStore, decode_zone, feature_digest
from geofence import (
    Approach,
    EngineConfig,
    EtaChanged,
    FixBatch,
    FleetLearner,
    GeofenceEngine,
    GeofenceEvent,
    LateRisk,
    LateRiskCleared,
    Route,
    RouteEvent,
    RouteTracker,
    StopArrived,
    StopArriving,
    StopDeparted,
    TrackerConfig,
    Zone,
)
from geofence.engine import STATE_VERSION as ENGINE_STATE_VERSION
from notify.redis_client import RedisOutage, publish

if TYPE_CHECKING:
    from gateway.dispatch.service import Dispatch

log = logging.getLogger(__name__)

TICK_S: Final = 1.0
TICK_BACKLOG: Final = 60  # ticks' events waiting for Redis; when full, the ticker waits
SAVE_EVERY_S: Final = 5.0
QUEUE_BATCHES: Final = 64
ROUTE_CHANGES: Final = 10_000
FLEET_ROUTES: Final = 500  # routes the ETA prior is learnt from (a refit takes about 50 ms)
# Dwells and legs learnt (from every process, through the ETA observations stream) before the
# prior is fitted again: a burst of routes starting does not refit it for each.
FLEET_REFIT_AFTER: Final = 50
# Finished dwells and legs kept in the ETA observations stream (about 80 bytes each in
# Redis): what routes showed, read back by every process and after a restart.
ETA_OBSERVED_MAX_LEN: Final = 1_000_000
ETA_OBSERVED_READ: Final = 10_000  # entries per read
ETA_OBSERVED_BLOCK_MS: Final = 5_000

APPROACH_FIELD: Final = "next"  # in a vehicle's hash: its route's Approach state, JSON

_json: Final = msgspec.json.Encoder()
_enc: Final = msgspec.msgpack.Encoder()
_route_change: Final = msgspec.msgpack.Decoder(tuple[str, str])

Groups = Sequence[tuple[str, Sequence[Position]]]


@dataclass
class TrackedRoute:
    """An active route, its tracker, and which deliveries each stop serves."""

    route: Route
    tracker: RouteTracker
    approach: Approach
    deliveries: dict[str, list[str]] = field(default_factory=dict)
    record: RouteRecord | None = None  # as installed from dispatch


def _tracker_blob(tracked: TrackedRoute) -> bytes:
    """A tracker's state as saved in its vehicle's hash (field ``trk``)."""
    return _json.encode(tracked.tracker.export_state())


def _saved_fields(tracked: TrackedRoute) -> dict[str, bytes]:
    """A tracked route's state as saved in its vehicle's hash."""
    return {
        "trk": _tracker_blob(tracked),
        APPROACH_FIELD: _json.encode(tracked.approach.export_state()),
    }


def _base(etype: str, vehicle: str, ts: float, **top: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": etype,
        "ts": ts,
        "vehicle": vehicle,
        "route": None,
        "stop": None,
        "delivery": None,
        "data": {},
    }
    ev.update(top)
    return ev


def geofence_event(ev: GeofenceEvent) -> dict[str, Any]:
    """A zone transition as an event-log record (``data.zone`` names the zone)."""
    data = msgspec.to_builtins(ev)
    etype = data.pop("type")
    for k in ("vehicle_id", "ts"):
        data.pop(k)
    data["zone"] = data.pop("zone_id")
    out = _base(etype, ev.vehicle_id, ev.ts)
    out["data"] = data
    return out


_VEHICLE_ALERTS: Final = {
    "stopped_too_long": "vehicle.stopped_too_long",
    "stopped_too_long_cleared": "vehicle.stopped_too_long_cleared",
    "off_route": "vehicle.off_route",
    "off_route_cleared": "vehicle.off_route_cleared",
    "temperature_excursion": "vehicle.temperature_excursion",
    "temperature_excursion_cleared": "vehicle.temperature_excursion_cleared",
}


def route_events(ev: RouteEvent, tracked: TrackedRoute) -> list[dict[str, Any]]:
    """A tracker event as event-log records: the stop or vehicle event, and one
    ``delivery.*`` record per delivery of the stop where customers are concerned."""
    data = msgspec.to_builtins(ev)
    etype = data.pop("type")
    for k in ("vehicle_id", "route_id", "ts"):
        data.pop(k)
    stop_id = data.pop("stop_id", None)
    base = {"route": ev.route_id, "stop": stop_id}
    if etype in _VEHICLE_ALERTS:
        return [_base(_VEHICLE_ALERTS[etype], ev.vehicle_id, ev.ts, data=data, **base)]
    out: list[dict[str, Any]] = []
    if isinstance(ev, StopArriving | StopArrived | StopDeparted):
        out.append(_base(etype, ev.vehicle_id, ev.ts, data=dict(data), **base))
    per_delivery: str | None = None
    if isinstance(ev, StopArriving):
        per_delivery = "delivery.arriving"
    elif isinstance(ev, EtaChanged):
        stop = tracked.route.stop(ev.stop_id)
        prev = ev.previous_eta
        data["window_end"] = stop.window_end
        data["delta_s"] = None if prev is None else ev.eta - prev
        per_delivery = "delivery.eta_changed"
    elif isinstance(ev, LateRisk):
        data["delta_s"] = ev.late_by_s
        per_delivery = "delivery.late_risk"
    elif isinstance(ev, LateRiskCleared):
        per_delivery = "delivery.late_risk_cleared"
    if per_delivery is not None:
        deliveries = tracked.deliveries.get(stop_id or "", [])
        if not deliveries:
            out.append(_base(per_delivery.replace("delivery.", "stop."), ev.vehicle_id, ev.ts,
                             data=data, **base))  # fmt: skip
        for d in deliveries:
            out.append(_base(per_delivery, ev.vehicle_id, ev.ts, data=dict(data), delivery=d,
                             **base))  # fmt: skip
    return out


class LiveTracking:
    def __init__(
        self,
        store: Store,
        zone_store: ZoneStore,
        metrics: Metrics,
        *,
        events_max_len: int,
        engine_config: EngineConfig | None = None,
        tracker_config: TrackerConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock  # epoch seconds for the time-driven rules
        self.zone_store = zone_store
        self.metrics = metrics
        self.events_max_len = events_max_len
        # Events and the status changes they stand for wait out a lost Redis, as positions
        # do: a delivery.arriving dropped would be a customer message never sent.
        self._outage = RedisOutage("live events", self._redis_outage)
        self.engine = GeofenceEngine(engine_config or EngineConfig())
        # Zone id -> fingerprint of the stored Feature the engine holds, for the zones loaded
        # from Redis as a whole: catching up decodes only the zones that differ.
        self._zone_digests: dict[str, bytes] = {}
        self.tracker_config = tracker_config or TrackerConfig()
        # What routes showed of dwells and legs, on every process (the ETA observations
        # stream, read back from its start, so kept across restarts): a route set from now
        # on starts from what the fleet learnt, and each stop from what its location showed.
        self.fleet = FleetLearner(
            self.tracker_config.prior, max_routes=FLEET_ROUTES, refit_after=FLEET_REFIT_AFTER
        )
        self._observed: list[EtaObservation] = []
        # Set once the ETA observations stream was read back at start.
        self.observed_caught_up = trio.Event()
        self.routes: dict[str, TrackedRoute] = {}  # by vehicle
        self._dirty: set[str] = set()
        # Vehicles whose tracker here has seen their latest fixes (else: reload before use).
        self._current: set[str] = set()
        self._save_now: set[str] = set()
        self.is_local: Callable[[str], bool] = lambda vehicle: True
        self._send, self._recv = trio.open_memory_channel[Groups](QUEUE_BATCHES)
        self._ticks_send, self._ticks_recv = trio.open_memory_channel[list[dict[str, Any]]](
            TICK_BACKLOG
        )
        # Route changes to apply, and whether they were made here (then: announce them).
        self._route_send, self._route_recv = trio.open_memory_channel[tuple[RouteRecord, bool]](
            ROUTE_CHANGES
        )
        self.origin = secrets.token_hex(8)
        self.dispatch: Dispatch | None = None
        metrics.gauge_fn(
            "gateway_live_queue_depth", lambda: float(self._send.statistics().current_buffer_used)
        )
        metrics.gauge_fn("gateway_zones", lambda: float(len(self.engine.zones())))
        metrics.gauge_fn("gateway_eta_routes", lambda: float(len(self.fleet)))
        metrics.gauge_fn(
            "gateway_geofence_out_of_order_total", lambda: float(self.engine.stats.out_of_order)
        )
        metrics.gauge_fn("gateway_eta_sites", lambda: float(self.fleet.site_count))

    # ----- changes from the API and other processes

    def apply_zone(self, zone_id: str, zone: Zone | None) -> None:
        self._zone_digests.pop(zone_id, None)
        if zone is None:
            self.engine.remove_zone(zone_id)
        else:
            self.engine.set_zone(zone)

    async def catch_up_zones(self) -> None:
        """Make the engine's zones the ones stored in Redis: at start, and whenever the
        change feed is subscribed again (zones added, replaced or deleted meanwhile)."""
        stored = await self.zone_store.load_features()
        for zone in self.engine.zones():
            if zone.id not in stored:
                self.apply_zone(zone.id, None)
        for zone_id, raw in stored.items():
            digest = feature_digest(raw)
            if self._zone_digests.get(zone_id) != digest:
                self.apply_zone(zone_id, decode_zone(raw))
                self._zone_digests[zone_id] = digest

    def set_route(
        self,
        route: Route,
        deliveries: dict[str, list[str]],
        temp_range: tuple[float | None, float | None] = (None, None),
        state: dict[str, Any] | None = None,
        approach: dict[str, Any] | None = None,
    ) -> None:
        """Track ``route`` for its vehicle from now on (replacing its previous route), from
        the saved tracker and approach states if given."""
        cfg = msgspec.structs.replace(self.tracker_config, prior=self.fleet.prior())
        if temp_range != (None, None):
            cfg = msgspec.structs.replace(cfg, temp_min_c=temp_range[0], temp_max_c=temp_range[1])
        sites = self.fleet.sites()
        tracker: RouteTracker | None = None
        if state is not None:
            try:
                tracker = RouteTracker.from_state(route, state, cfg, sites=sites)
            except ValueError:
                tracker = None
        judged = Approach(route, cfg)
        if tracker is not None:
            judged.restore(approach)
        self.routes[route.vehicle_id] = TrackedRoute(
            route, tracker or RouteTracker(route, cfg, sites=sites), judged, deliveries
        )
        self._current.add(route.vehicle_id)

    def is_current(self, vehicle: str) -> bool:
        """Whether this process's tracker of ``vehicle`` has seen its latest fixes."""
        return vehicle in self._current

    def release(self, vehicle: str, ts: float) -> None:
        """Another process wrote ``vehicle``'s fix of time ``ts``: unless this process has
        tracked a fix as new or newer since (the other's news came late), the tracker state
        here is stale."""
        tracked = self.routes.get(vehicle)
        last = None if tracked is None else tracked.tracker.last
        if last is not None and last[0] >= ts:
            return
        self._current.discard(vehicle)

    async def _take_over(self, groups: Groups) -> None:
        """Before this process tracks fixes of a vehicle another process was tracking, load
        the tracker state that process saved."""
        for vehicle, _ in groups:
            tracked = self.routes.get(vehicle)
            if tracked is None or vehicle in self._current:
                continue
            self._current.add(vehicle)
            try:
                state = await self.saved_tracker_state(vehicle)
            except Exception as exc:
                log.warning("tracker state of %s not loaded: %s", vehicle, exc)
                continue
            if state is None:
                continue
            try:
                tracked.tracker = RouteTracker.from_state(
                    tracked.route, state, tracked.tracker.config, sites=self.fleet.sites()
                )
            except ValueError:
                continue  # saved for another route: keep the tracker as it is
            try:
                tracked.approach.restore(await self.saved_approach_state(vehicle))
            except Exception as exc:
                # It judges afresh: the customer waits for the vehicle to close in again.
                log.warning("approach state of %s not loaded: %s", vehicle, exc)
            self.metrics.inc("gateway_route_takeovers_total")

    # ----- routes from dispatch

    def attach_dispatch(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        dispatch.on_route_changed.append(self.route_changed)

    def route_changed(self, record: RouteRecord, local: bool = True) -> None:
        """Dispatch listener: apply the route's new state from the stage's own task."""
        try:
            self._route_send.send_nowait((record, local))
        except trio.WouldBlock:
            log.error("route change queue full; route %s not applied live", record.id)

    async def _remote_route_changed(self, data: bytes) -> None:
        """A route changed through another process: read it and apply it here too."""
        try:
            origin, route_id = _route_change.decode(data)
        except msgspec.DecodeError:
            return
        if origin == self.origin or self.dispatch is None:
            return
        try:
            record = await self.dispatch.store.get_route(route_id)
        except Exception as exc:
            log.warning("changed route %s not read: %s", route_id, exc)
            return
        if record is not None:
            self.route_changed(record, local=False)

    async def _catch_up_routes(self) -> None:
        """Apply the route changes announced while this process was not listening: every
        started route, and every route tracked here, whose record is not the one installed."""
        if self.dispatch is None:
            return
        active = await self.dispatch.load_active_routes()
        started = {r.id for r in active}
        others = [t.route.id for t in self.routes.values() if t.route.id not in started]
        records = [*active, *(await self.dispatch.store.reader().routes(others)).values()]
        installed = {t.route.id: t.record for t in self.routes.values()}
        for record in records:
            if installed.get(record.id) != record:
                await self._route_send.send((record, False))

    async def install(self, record: RouteRecord) -> None:
        """Track a started route on its vehicle; stop tracking it otherwise."""
        for vehicle, tracked in list(self.routes.items()):
            if tracked.route.id == record.id and (
                record.status != STARTED or vehicle != record.vehicle
            ):
                del self.routes[vehicle]
        if record.status != STARTED or self.dispatch is None:
            return
        deliveries = await self.dispatch.store.reader().deliveries(record.delivery_ids())
        lows = [d.temp_min_c for d in deliveries.values() if d.temp_min_c is not None]
        highs = [d.temp_max_c for d in deliveries.values() if d.temp_max_c is not None]
        current = self.routes.get(record.vehicle)
        state: dict[str, Any] | None
        approach: dict[str, Any] | None
        if (
            current is not None
            and current.route.id == record.id
            and record.vehicle in self._current
        ):
            state = current.tracker.export_state()
            approach = current.approach.export_state()
        else:  # new here, or tracked by another process lately: its newest saved state
            state = await self.saved_tracker_state(record.vehicle)
            approach = await self.saved_approach_state(record.vehicle)
        self.set_route(
            to_geofence_route(record),
            {s.id: list(s.deliveries) for s in record.stops},
            (max(lows) if lows else None, min(highs) if highs else None),
            state=state,
            approach=approach,
        )
        self.routes[record.vehicle].record = record

    async def _apply_route_changes(self) -> None:
        async for record, local in self._route_recv:
            try:
                await self.install(record)
            except Exception:
                log.exception("could not apply route %s live", record.id)
            if local:
                try:
                    await publish(
                        self.store.redis, ROUTES_CHANNEL, _enc.encode((self.origin, record.id))
                    )
                except Exception as exc:
                    log.warning("route change %s not announced: %s", record.id, exc)

    async def _lifecycle(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A delivery near its stop becomes ``arriving``; its ``delivery.arriving`` event (with
        ETA and distance, which notifications quote) stands for that change, and is dropped
        when the delivery cannot change (already delivered, cancelled, ...)."""
        if self.dispatch is None:
            return events
        out = []
        for ev in events:
            if ev["type"] == "delivery.arriving":
                try:
                    await self._arriving(ev["delivery"], ev["ts"])
                except (IllegalTransition, NotFound) as exc:
                    log.debug("delivery %s not made arriving: %s", ev["delivery"], exc)
                    continue
                except Exception as exc:  # a bug: loud, and the others go on
                    self.metrics.inc("gateway_live_errors_total", step="arriving")
                    log_once(log, f"delivery {ev['delivery']} not made arriving", exc)
                    continue
            out.append(ev)
        return out

    async def _arriving(self, delivery: str, ts: float) -> None:
        """Make ``delivery`` arriving, waiting out a lost Redis or a busy transaction."""
        assert self.dispatch is not None
        while True:
            try:
                await self._outage.call(self.dispatch.store.set_status, delivery, ARRIVING, ts)
                return
            except Busy as exc:
                await self._outage.pause(exc)

    def _redis_outage(self, service: str) -> None:
        self.metrics.inc("gateway_redis_outages_total", service="live")

    # ----- the stage

    async def offer(self, groups: Groups) -> None:
        await self._send.send(groups)

    def process(self, groups: Groups) -> list[dict[str, Any]]:
        """Run geofences and trackers over one written batch; return the events."""
        events: list[dict[str, Any]] = []
        engine = self.engine
        if not engine.has_zones:
            # Nothing to enter or leave: keep each vehicle's newest fix (a group's fixes are
            # one device's, validated in time order) for zones created later.
            for vehicle, positions in groups:
                p = positions[-1]
                engine.remember(vehicle, p.ts, p.lat, p.lon, len(positions))
                self._dirty.add(vehicle)
        else:
            names: list[str] = []
            ts: list[float] = []
            lat: list[float] = []
            lon: list[float] = []
            for vehicle, positions in groups:
                for p in positions:
                    names.append(vehicle)
                    ts.append(p.ts)
                    lat.append(p.lat)
                    lon.append(p.lon)
                self._dirty.add(vehicle)
            events = [geofence_event(e) for e in engine.process(FixBatch(names, ts, lat, lon))]
        for vehicle, positions in groups:
            tracked = self.routes.get(vehicle)
            if tracked is None:
                continue
            resting = any(
                (z := self.engine.zone(zid)) is not None and z.kind == "depot"
                for zid in self.engine.memberships(vehicle)
            )
            target = tracked.approach.target
            # Every fix, not only the newest: a resent backlog may hold a whole approach,
            # and its arriving and arrived must not be skipped.
            for p in positions:
                for ev in tracked.tracker.update(
                    p.ts,
                    p.lat,
                    p.lon,
                    speed_mps=p.speed,
                    temp_c=p.temp_c,
                    resting=resting,
                    accuracy_m=p.accuracy,
                ):
                    events.extend(route_events(ev, tracked))
                    self._save_now.add(vehicle)
                    self._note_observed(ev, tracked)
                tracked.approach.update(tracked.tracker, p.accuracy)
            if tracked.approach.target != target:
                self._save_now.add(vehicle)  # other processes' customer pages read it
        return events

    def tick(self, now: float) -> list[dict[str, Any]]:
        events = [geofence_event(e) for e in self.engine.tick(now)]
        for vehicle, tracked in self.routes.items():
            if not self.is_local(vehicle):
                continue  # the process receiving its fixes ticks it
            for ev in tracked.tracker.tick(now):
                events.extend(route_events(ev, tracked))
                self._save_now.add(vehicle)
        return events

    async def _emit(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for ev in events:
            self.metrics.inc("gateway_events_total", type=ev["type"])
        try:
            await self._outage.call(self.store.append_events, events, self.events_max_len)
        except Exception as exc:  # a bug, not an outage (that is waited out): loud
            self.metrics.inc("gateway_live_errors_total", step="events")
            log_once(log, f"could not append {len(events)} events", exc)

    async def _consume(self) -> None:
        async for groups in self._recv:
            await self._take_over(groups)
            await self._emit(await self._lifecycle(self.process(groups)))
            await self._save_trackers()
            await self._write_observed()

    def _note_observed(self, ev: RouteEvent, tracked: TrackedRoute) -> None:
        """Keep what a departure (a dwell) or an arrival (a leg) showed, for the stream."""
        route = tracked.route.id
        if isinstance(ev, StopDeparted):
            dwell = tracked.tracker.finished_dwell(ev.stop_id)
            if dwell is not None:
                stop, site, planned, actual = dwell
                self._observed.append(EtaObservation(DWELL, route, stop, planned, actual, site))
        elif isinstance(ev, StopArrived):
            leg = tracked.tracker.finished_leg(ev.stop_id)
            if leg is not None:
                self._observed.append(EtaObservation(LEG, route, *leg))

    async def _write_observed(self) -> None:
        if not self._observed:
            return
        observed, self._observed = self._observed, []
        try:
            await self.store.append_eta_observations(observed, ETA_OBSERVED_MAX_LEN)
        except Exception as exc:
            # Not learnt from, here or anywhere: a few dwells and legs among many.
            log.warning("could not record %d ETA observations: %s", len(observed), exc)

    async def _follow_observed(self) -> None:
        """Learn the ETA model from what every process's routes showed: the stream from the
        oldest entry kept, then each new one (this process's own included: that is how
        they are learnt here too). Once the stream is read back, the routes installed
        before get what was learnt (:meth:`_reprime_trackers`)."""
        last = "0-0"
        caught_up = False
        while True:
            try:
                last, observed = await self.store.read_eta_observations(
                    last, ETA_OBSERVED_READ, ETA_OBSERVED_BLOCK_MS if caught_up else None
                )
            except Exception as exc:
                log.warning("could not read ETA observations: %s", exc)
                await trio.sleep(1.0)
                continue
            for o in observed:
                if o.kind == DWELL:
                    self.fleet.observe_dwell(o.route, o.stop, o.planned_s, o.actual_s, o.site)
                else:
                    self.fleet.observe_leg(o.route, o.stop, o.planned_s, o.actual_s)
            self.metrics.inc("gateway_eta_observations_read_total", len(observed))
            if not caught_up and len(observed) < ETA_OBSERVED_READ:
                caught_up = True
                await self._reprime_trackers()
                self.observed_caught_up.set()

    async def _reprime_trackers(self) -> None:
        """Rebuild each route tracker from its own state with the prior and stop locations
        learnt so far: the routes installed at start, before the ETA observations were read
        back, had only the built-in prior."""
        prior, sites = self.fleet.prior(), self.fleet.sites()
        for n, tracked in enumerate(list(self.routes.values())):
            cfg = msgspec.structs.replace(tracked.tracker.config, prior=prior)
            try:
                tracked.tracker = RouteTracker.from_state(
                    tracked.route, tracked.tracker.export_state(), cfg, sites=sites
                )
            except ValueError:
                continue
            if n % 100 == 99:
                await trio.lowlevel.checkpoint()  # many routes: let ingest run meanwhile

    async def _save_trackers(self) -> None:
        """Save at once the trackers that just emitted events, so a process taking over the
        vehicle (or this one after a crash) does not announce them again."""
        if not self._save_now:
            return
        vehicles, self._save_now = self._save_now, set()
        try:
            async with self.store.redis.pipeline(transaction=False) as p:
                for v in vehicles:
                    tracked = self.routes.get(v)
                    if tracked is not None:
                        p.hset(keys.vehicle(v), _saved_fields(tracked))
        except Exception as exc:
            log.warning("could not save %d route trackers: %s", len(vehicles), exc)

    async def ticker(self) -> None:
        """Run the time-driven rules (zone dwell, ETAs slipping while a vehicle is silent,
        stopped too long, ...) every ``TICK_S`` at ``clock()``. Their events are written by a
        task of their own, so Redis round trips never delay or shift the ticks."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._after_ticks)
            async with self._ticks_send:
                while True:
                    await trio.sleep(TICK_S)
                    await self._ticks_send.send(self.tick(self.clock()))

    async def _after_ticks(self) -> None:
        """Write what the ticks produced; save the live state every ``SAVE_EVERY_S``."""
        last_save = trio.current_time()
        async for events in self._ticks_recv:
            await self._emit(await self._lifecycle(events))
            await self._save_trackers()
            if trio.current_time() - last_save >= SAVE_EVERY_S:
                last_save = trio.current_time()
                try:
                    await self.save_state()
                except Exception as exc:
                    log.warning("could not save live state: %s", exc)

    async def save_state(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return
        geo = self.engine.export_state()["vehicles"]
        redis = self.store.redis
        async with redis.pipeline(transaction=False) as p:
            for v in dirty:
                fields: dict[str, bytes] = {}
                if v in geo:
                    fields["geo"] = _json.encode(geo[v])
                tracked = self.routes.get(v)
                if tracked is not None:
                    fields.update(_saved_fields(tracked))
                if fields:
                    p.hset(keys.vehicle(v), fields)

    async def load_state(self, vehicles: Sequence[str]) -> None:
        """Zones from Redis, then each vehicle's saved zone memberships."""
        await self.catch_up_zones()
        saved: dict[str, Any] = {}
        for v in vehicles:
            raw = await self.store.redis.hget(keys.vehicle(v), "geo")
            if raw is not None:
                saved[v] = msgspec.json.decode(raw)
        if saved:
            self.engine.import_state({"version": ENGINE_STATE_VERSION, "vehicles": saved})

    async def saved_tracker_state(self, vehicle: str) -> dict[str, Any] | None:
        raw = await self.store.redis.hget(keys.vehicle(vehicle), "trk")
        return None if raw is None else msgspec.json.decode(raw)

    async def saved_approach_state(self, vehicle: str) -> dict[str, Any] | None:
        raw = await self.store.redis.hget(keys.vehicle(vehicle), APPROACH_FIELD)
        return None if raw is None else msgspec.json.decode(raw)

    async def heading_to(self, vehicle: str, route_id: str) -> str | None:
        """The stop of route ``route_id`` that ``vehicle`` drives to (see
        :class:`~geofence.Approach`), or None: judged here if this process tracks the
        vehicle's latest fixes, else as the process that does saved it."""
        tracked = self.routes.get(vehicle)
        if tracked is None or tracked.route.id != route_id:
            return None
        if vehicle in self._current:
            return tracked.approach.target
        return Approach.target_in(await self.saved_approach_state(vehicle), route_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(self.zone_store.follow_changes, on_subscribed=self.catch_up_zones),
                self.apply_zone,
            )
            if self.dispatch is not None:
                for record in await self.dispatch.load_active_routes():
                    await self.install(record)
            nursery.start_soon(self._apply_route_changes)
            await nursery.start(
                partial(follow_channel, on_subscribed=self._catch_up_routes),
                self.store.redis,
                ROUTES_CHANNEL,
                self._remote_route_changed,
            )
            nursery.start_soon(self.ticker)
            nursery.start_soon(self._follow_observed)
            task_status.started()
            try:
                await self._consume()
            finally:
                with trio.move_on_after(2) as cs:
                    cs.shield = True
                    try:
                        await self.save_state()
                    except* Exception as group:
                        # Cancelled from outside, Redis may already be gone: the state saved
                        # a few seconds ago stands.
                        log.info("live state not saved at stop: %r", group.exceptions)
            nursery.cancel_scope.cancel()

    def close(self) -> None:
        self._send.close()
