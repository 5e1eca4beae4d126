"""The live stage's pure part: fixes in, events out, with no Redis, no trio and no Store.

:class:`TrackingStage` holds the geofence engine (the zones, and who is inside which), one
:class:`TrackedRoute` per vehicle on a started route (its :class:`~geofence.RouteTracker` and
:class:`~geofence.Approach`), and the :class:`~geofence.FleetLearner` every new tracker takes
its ETA prior and stop locations from. :meth:`TrackingStage.process` runs a written batch
through them and :meth:`TrackingStage.tick` the time-driven rules; both return the events as
event-log records (:func:`geofence_event`, :func:`route_events`).

It also keeps the bookkeeping the services around it act on (see ``tracking.py``): the vehicles
whose state changed since it was saved (``take_dirty``), the trackers to save at once
(``take_save_now``), the vehicles whose tracker here has seen their latest fixes (``release``,
``take_over``), and the dwells and legs finished since they were last written
(``take_finished``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, NamedTuple

import msgspec

from gateway.core.events import event
from gateway.dispatch.records import STARTED, DeliveryRecord, RouteRecord, to_geofence_route
from gateway.fleet.position import Position
from geofence import (
    Approach,
    EngineConfig,
    EtaChanged,
    EtaPrior,
    FixBatch,
    FleetLearner,
    GeofenceEngine,
    GeofenceEvent,
    LateRisk,
    LateRiskCleared,
    Route,
    RouteEvent,
    RouteTracker,
    SiteModel,
    StopArrived,
    StopArriving,
    StopDeparted,
    TrackerConfig,
    Zone,
)
from notify.events import Event

FLEET_ROUTES: Final = 500  # routes the ETA prior is learnt from (a refit takes about 50 ms)
# Dwells and legs learnt (from every process, through the ETA observations stream) before the
# prior is fitted again: a burst of routes starting does not refit it for each.
FLEET_REFIT_AFTER: Final = 50

Groups = Sequence[tuple[str, Sequence[Position]]]


@dataclass
class TrackedRoute:
    """An active route, its tracker, and which deliveries each stop serves."""

    route: Route
    tracker: RouteTracker
    approach: Approach
    deliveries: dict[str, list[str]] = field(default_factory=dict)
    record: RouteRecord | None = None  # as installed from dispatch


class Finished(NamedTuple):
    """A dwell (``dwell``: at stop number ``stop``, with its location key ``site``) or a leg
    (driven straight to stop number ``stop`` from the stop before) a route just finished,
    planned at ``planned_s`` and taking ``actual_s``: what the ETA model learns from."""

    dwell: bool
    route: str
    stop: int
    planned_s: float
    actual_s: float
    site: str = ""


# ----- event-log records


def geofence_event(ev: GeofenceEvent) -> Event:
    """A zone transition as an event-log record (``data.zone`` names the zone)."""
    data = msgspec.to_builtins(ev)
    etype = data.pop("type")
    for k in ("vehicle_id", "ts"):
        data.pop(k)
    data["zone"] = data.pop("zone_id")
    return event(etype, ev.ts, vehicle=ev.vehicle_id, data=data)


_VEHICLE_ALERTS: Final = {
    "stopped_too_long": "vehicle.stopped_too_long",
    "stopped_too_long_cleared": "vehicle.stopped_too_long_cleared",
    "off_route": "vehicle.off_route",
    "off_route_cleared": "vehicle.off_route_cleared",
    "temperature_excursion": "vehicle.temperature_excursion",
    "temperature_excursion_cleared": "vehicle.temperature_excursion_cleared",
}


def route_events(ev: RouteEvent, tracked: TrackedRoute) -> list[Event]:
    """A tracker event as event-log records: the stop or vehicle event, and one
    ``delivery.*`` record per delivery of the stop where customers are concerned."""
    data = msgspec.to_builtins(ev)
    etype = data.pop("type")
    for k in ("vehicle_id", "route_id", "ts"):
        data.pop(k)
    stop_id = data.pop("stop_id", None)
    at = partial(event, ts=ev.ts, vehicle=ev.vehicle_id, route=ev.route_id, stop=stop_id)
    if etype in _VEHICLE_ALERTS:
        return [at(_VEHICLE_ALERTS[etype], data=data)]
    out: list[Event] = []
    if isinstance(ev, StopArriving | StopArrived | StopDeparted):
        out.append(at(etype, data=dict(data)))
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
            out.append(at(per_delivery.replace("delivery.", "stop."), data=data))
        for d in deliveries:
            out.append(at(per_delivery, delivery=d, data=dict(data)))
    return out


# ----- the stage


class TrackingStage:
    """Geofence engine and route trackers over written fixes, and their events.

    ``is_local(vehicle)``: whether this process receives the vehicle's fixes (only then are
    its route's time-driven rules run here, by :meth:`tick`)."""

    def __init__(
        self,
        *,
        is_local: Callable[[str], bool] = lambda vehicle: True,
        engine_config: EngineConfig | None = None,
        tracker_config: TrackerConfig | None = None,
    ) -> None:
        self.is_local = is_local
        self.engine = GeofenceEngine(engine_config or EngineConfig())
        self.tracker_config = tracker_config or TrackerConfig()
        # What routes showed of dwells and legs (fed by the ETA learning): a route set from
        # now on starts from what the fleet learnt, and each stop from what its location showed.
        self.fleet = FleetLearner(
            self.tracker_config.prior, max_routes=FLEET_ROUTES, refit_after=FLEET_REFIT_AFTER
        )
        self.routes: dict[str, TrackedRoute] = {}  # by vehicle
        self._dirty: set[str] = set()  # state changed since saved
        self._save_now: set[str] = set()  # trackers that emitted events: save at once
        # Vehicles whose tracker here has seen their latest fixes (else: reload before use).
        self._current: set[str] = set()
        self._finished: list[Finished] = []

    # ----- zones and routes

    def apply_zone(self, zone_id: str, zone: Zone | None) -> None:
        """Set zone ``zone_id`` to ``zone``; None removes it."""
        if zone is None:
            self.engine.remove_zone(zone_id)
        else:
            self.engine.set_zone(zone)

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

    def drop_route(self, record: RouteRecord) -> bool:
        """Stop tracking route ``record`` wherever it no longer belongs (not started, or on
        another vehicle); whether it is to be tracked (started)."""
        for vehicle, tracked in list(self.routes.items()):
            if tracked.route.id == record.id and (
                record.status != STARTED or vehicle != record.vehicle
            ):
                del self.routes[vehicle]
        return record.status == STARTED

    def held_state(self, record: RouteRecord) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The tracker and approach states of route ``record`` if this process tracks it with
        its vehicle's latest fixes; else None (another process's saved state is newer)."""
        current = self.routes.get(record.vehicle)
        if current is None or current.route.id != record.id or record.vehicle not in self._current:
            return None
        return current.tracker.export_state(), current.approach.export_state()

    def install(
        self,
        record: RouteRecord,
        deliveries: Iterable[DeliveryRecord],
        state: dict[str, Any] | None,
        approach: dict[str, Any] | None,
    ) -> None:
        """Track started route ``record`` on its vehicle, its temperature range the tightest
        of its ``deliveries``', from the given tracker and approach states."""
        lows = [d.temp_min_c for d in deliveries if d.temp_min_c is not None]
        highs = [d.temp_max_c for d in deliveries if d.temp_max_c is not None]
        self.set_route(
            to_geofence_route(record),
            {s.id: list(s.deliveries) for s in record.stops},
            (max(lows) if lows else None, min(highs) if highs else None),
            state=state,
            approach=approach,
        )
        self.routes[record.vehicle].record = record

    def reprime(self, tracked: TrackedRoute, prior: EtaPrior, sites: SiteModel) -> bool:
        """Rebuild ``tracked``'s tracker from its own state with the ETA ``prior`` and stop
        locations ``sites`` learnt since it was set; False if its state does not fit."""
        cfg = msgspec.structs.replace(tracked.tracker.config, prior=prior)
        try:
            tracked.tracker = RouteTracker.from_state(
                tracked.route, tracked.tracker.export_state(), cfg, sites=sites
            )
        except ValueError:
            return False
        return True

    # ----- which process tracks a vehicle

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

    def take_over(self, groups: Groups) -> list[TrackedRoute]:
        """The routes of ``groups``' vehicles whose tracker here is stale (another process
        tracked them lately), counted current from now on: load their saved state and
        :meth:`restore` it before :meth:`process`."""
        stale = []
        for vehicle, _ in groups:
            tracked = self.routes.get(vehicle)
            if tracked is None or vehicle in self._current:
                continue
            self._current.add(vehicle)
            stale.append(tracked)
        return stale

    def restore(
        self, tracked: TrackedRoute, state: dict[str, Any], approach: dict[str, Any] | None
    ) -> bool:
        """Carry ``tracked`` on from a tracker state and an approach state saved by another
        process; False (the tracker kept as it is) if the state is another route's."""
        try:
            tracked.tracker = RouteTracker.from_state(
                tracked.route, state, tracked.tracker.config, sites=self.fleet.sites()
            )
        except ValueError:
            return False
        tracked.approach.restore(approach)
        return True

    # ----- fixes and time in, events out

    def process(self, groups: Groups) -> list[Event]:
        """Run geofences and trackers over one written batch; return the events."""
        events: list[Event] = []
        engine = self.engine
        if not engine.has_zones:
            # Nothing to enter or leave: keep each vehicle's newest fix (a group's fixes are
            # one device's, validated in time order) for zones created later.
            for vehicle, positions in groups:
                p = positions[-1]
                engine.remember(vehicle, p.ts, p.lat, p.lon, len(positions), p.accuracy)
                self._dirty.add(vehicle)
        else:
            names: list[str] = []
            ts: list[float] = []
            lat: list[float] = []
            lon: list[float] = []
            accuracy: list[float | None] = []
            speed: list[float | None] = []
            for vehicle, positions in groups:
                for p in positions:
                    names.append(vehicle)
                    ts.append(p.ts)
                    lat.append(p.lat)
                    lon.append(p.lon)
                    accuracy.append(p.accuracy)
                    speed.append(p.speed)
                self._dirty.add(vehicle)
            batch = FixBatch(names, ts, lat, lon, accuracy, speed)
            events = [geofence_event(e) for e in engine.process(batch)]
        for vehicle, positions in groups:
            tracked = self.routes.get(vehicle)
            if tracked is None:
                continue
            resting = any(
                (z := engine.zone(zid)) is not None and z.kind == "depot"
                for zid in engine.memberships(vehicle)
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
                    self._note_finished(ev, tracked)
                tracked.approach.update(tracked.tracker, p.accuracy)
            if tracked.approach.target != target:
                self._save_now.add(vehicle)  # other processes' customer pages read it
        return events

    def tick(self, now: float) -> list[Event]:
        """The time-driven rules at ``now``: zone dwell, and each local route's ETAs slipping
        while its vehicle is silent, stopped too long, ..."""
        return self.tick_zones(now) + self.tick_routes(now, list(self.routes))

    def tick_zones(self, now: float) -> list[Event]:
        """``tick``'s zone rules (dwell)."""
        return [geofence_event(e) for e in self.engine.tick(now)]

    def tick_routes(self, now: float, vehicles: list[str]) -> list[Event]:
        """``tick``'s route rules, for the routes of ``vehicles`` (a slice of them: the
        ticker takes the fleet's routes a slice at a time)."""
        events: list[Event] = []
        for vehicle in vehicles:
            tracked = self.routes.get(vehicle)
            if tracked is None or not self.is_local(vehicle):
                continue  # gone meanwhile; or the process receiving its fixes ticks it
            for ev in tracked.tracker.tick(now):
                events.extend(route_events(ev, tracked))
                self._save_now.add(vehicle)
        return events

    def _note_finished(self, ev: RouteEvent, tracked: TrackedRoute) -> None:
        """Keep what a departure (a dwell) or an arrival (a leg) showed."""
        route = tracked.route.id
        if isinstance(ev, StopDeparted):
            dwell = tracked.tracker.finished_dwell(ev.stop_id)
            if dwell is not None:
                stop, site, planned, actual = dwell
                self._finished.append(Finished(True, route, stop, planned, actual, site))
        elif isinstance(ev, StopArrived):
            leg = tracked.tracker.finished_leg(ev.stop_id)
            if leg is not None:
                self._finished.append(Finished(False, route, *leg))

    # ----- what the services around the stage take

    def take_dirty(self) -> set[str]:
        """The vehicles whose state changed since this was last called."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def take_save_now(self) -> set[str]:
        """The vehicles whose route tracker emitted events (or whose approach changed its
        stop) since this was last called: their state is to be saved at once."""
        vehicles, self._save_now = self._save_now, set()
        return vehicles

    def take_finished(self) -> list[Finished]:
        """The dwells and legs finished since this was last called."""
        finished, self._finished = self._finished, []
        return finished
