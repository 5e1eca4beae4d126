"""Following one vehicle along its route: stop events, ETAs and drift alerts.

A :class:`RouteTracker` is fed the vehicle's fixes in time order (:meth:`RouteTracker.update`)
and, between fixes, the current time (:meth:`RouteTracker.tick`). It never reads the clock. It
emits (see :mod:`geofence.events`):

* ``stop.arriving`` once per stop, when within ``arriving_distance_m`` or ``arriving_lead_s``;
* ``stop.arrived`` when the vehicle enters the stop's arrival circle, ``stop.departed`` when it
  leaves it again by ``departure_margin_m`` (stops may be served in any order);
* ``eta_changed`` for a pending stop when its ETA moved by more than
  ``eta_change_threshold_s`` from the last one announced, at most once per
  ``eta_min_interval_s``; the first announcement is compared with the stop's
  ``planned_arrival`` when it has one;
* ``late_risk`` when the ETA is past the window end by more than ``late_risk_margin_s``,
  ``late_risk_cleared`` only once it is back before the window end by
  ``late_risk_clear_margin_s`` (or the stop is reached);
* ``stopped_too_long`` when the vehicle stays below ``stopped_speed_mps`` outside every stop
  circle (and not ``resting``) for ``stopped_too_long_s``; cleared when it moves again;
* ``off_route`` when farther than ``off_route_distance_m`` from the planned path for
  ``off_route_duration_s``; cleared when back within ``off_route_clear_distance_m``;
* ``temperature_excursion`` when the load temperature stays outside
  ``[temp_min_c, temp_max_c]`` for ``temp_excursion_s``; cleared once back inside by
  ``temp_hysteresis_c``.

ETAs are the time the vehicle is expected to enter each stop's arrival circle. Remaining
distance is measured along the planned path when the route has one (from where the vehicle
projects onto it, plus how far off it the vehicle is; but farther off it than
``off_route_clear_distance_m``, on a detour, as for a route without one), otherwise as
great-circle distance times ``detour_factor``. Each leg is driven at its planned pace (from
the stops' planned arrivals and service times when the route has them, else
``typical_speed_mps``) times the pace ratio the vehicle has shown so far
(:class:`~geofence.eta.SpeedModel`). Service times of earlier stops are added, scaled by what
the route's stops took so far (both start from ``prior``, a
:class:`~geofence.eta.EtaPrior`: configured, or learnt from the fleet's earlier routes, whose
:meth:`RouteTracker.observations` feed a :class:`~geofence.eta.FleetLearner`), and for the
stop being served the median of what is left of it until the vehicle drives off (it is
still inside the circle for a few seconds then) (:class:`~geofence.eta.ServiceModel`; see
:func:`~geofence.eta.estimate_arrivals`). Each stop's dwell shape is the prior's, or, given
``sites`` (a :class:`~geofence.eta.SiteModel`), what its location showed on earlier routes.
Further out, an ETA also allows for the long dwells that may come at the stops before it, as
far as that makes the arrival likelier to fall within ``eta_tolerance_share`` of the time
still to go (:class:`~geofence.eta.AllowanceModel`). Distances to stops are great-circle
(spherical, within 0.6 % of the ellipsoid).

Per-stop state lives in numpy arrays so a fix costs a few dozen vectorised operations whatever
the number of stops; Python work happens only for the stops that produce events.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from .eta import (
    AllowanceModel,
    EtaPrior,
    RouteObservations,
    ServiceModel,
    SiteModel,
    SpeedModel,
    SpeedState,
    estimate_arrivals,
    site_key,
)
from .events import (
    EtaChanged,
    LateRisk,
    LateRiskCleared,
    OffRoute,
    OffRouteCleared,
    RouteEvent,
    StopArrived,
    StopArriving,
    StopDeparted,
    StoppedTooLong,
    StoppedTooLongCleared,
    TemperatureExcursion,
    TemperatureExcursionCleared,
)
from .geo import haversine_m, haversine_m_array
from .routes import PlannedPath, Route

PENDING: Final = 0
ARRIVED: Final = 1
DEPARTED: Final = 2
_STATUS_NAMES: Final = ("pending", "arrived", "departed")
STATE_VERSION: Final = 1
# Planned legs slower or faster than these are not driving time (waiting for a window, or a
# plan in error): such legs get the route's usual planned pace.
_PLAN_PACE_S_PER_M: Final = (1 / 40, 1 / 2)


class TrackerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every threshold of :class:`RouteTracker`, with its unit in its name."""

    arrival_radius_m: float = 50.0
    departure_margin_m: float = 20.0
    arriving_distance_m: float = 1_000.0
    arriving_lead_s: float = 300.0
    eta_change_threshold_s: float = 120.0
    # ETAs (and what follows from them: stop.arriving, eta_changed, late_risk) are worked out
    # again at most this often (fix time) and at once when a stop is reached or left; 0: on
    # every fix. A device reporting every second would otherwise pay for them every second.
    eta_refresh_s: float = 5.0
    eta_min_interval_s: float = 60.0
    late_risk_margin_s: float = 60.0
    late_risk_clear_margin_s: float = 120.0
    stopped_speed_mps: float = 0.5
    stopped_too_long_s: float = 600.0
    off_route_distance_m: float = 200.0
    off_route_clear_distance_m: float = 150.0
    off_route_duration_s: float = 120.0
    path_backtrack_m: float = 300.0
    poor_accuracy_m: float = 50.0
    temp_min_c: float | None = None
    temp_max_c: float | None = None
    temp_hysteresis_c: float = 0.5
    temp_excursion_s: float = 300.0
    detour_factor: float = 1.3
    typical_speed_mps: float = 8.3
    speed_half_life_s: float = 1_800.0
    # An ETA aims to fall within this share of the time still to go of the arrival; further
    # out that makes room for long dwells at the stops before (0: none is allowed for).
    eta_tolerance_share: float = 0.3
    prior: EtaPrior = msgspec.field(default_factory=EtaPrior)

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None or name == "prior":
                continue
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if not name.startswith("temp_m") and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        for name in ("arrival_radius_m", "typical_speed_mps", "speed_half_life_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.detour_factor < 1.0:
            raise ValueError("detour_factor must be >= 1")
        if self.off_route_clear_distance_m > self.off_route_distance_m:
            raise ValueError("off_route_clear_distance_m must not exceed off_route_distance_m")
        lo, hi = self.temp_min_c, self.temp_max_c
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError("temp_min_c must be below temp_max_c")


class _Alerts(msgspec.Struct, kw_only=True):
    stopped_since: float | None = None
    stopped_raised: bool = False
    off_since: float | None = None
    off_raised: bool = False
    temp_since: float | None = None
    temp_raised: bool = False
    temp_last_c: float | None = None


class RouteTracker:
    """Follows one route; see the module docstring. Not thread-safe; one per active route."""

    def __init__(
        self, route: Route, config: TrackerConfig | None = None, *, sites: SiteModel | None = None
    ) -> None:
        self.route = route
        self.config = cfg = config if config is not None else TrackerConfig()
        stops = route.stops
        n = len(stops)
        self._ids = [s.id for s in stops]
        self._slat = np.array([s.lat for s in stops])
        self._slon = np.array([s.lon for s in stops])
        self._radius = np.array([s.arrival_radius_m or cfg.arrival_radius_m for s in stops])
        self._service = np.array([s.service_s for s in stops])
        self._wend = np.array([s.window_end for s in stops])
        self._path = PlannedPath(route.path) if route.path is not None else None
        self._salong = np.zeros(n)
        if self._path is not None:
            # In planned order, so a stop the path passes earlier on the way to another one
            # is placed where the path reaches it for its own visit.
            after = None
            for i, s in enumerate(stops):
                self._salong[i] = after = self._path.locate(s.lat, s.lon, after_m=after)[0]
        self._pace = self._planned_pace()
        self.status = np.zeros(n, np.int8)
        self.arrived_ts = np.full(n, np.nan)
        self.still_s = np.zeros(n)  # time standing still at each stop since arriving
        self.eta = np.full(n, np.nan)
        self.announced_eta = np.array(
            [np.nan if s.planned_arrival is None else s.planned_arrival for s in stops]
        )
        self.announced_at = np.full(n, -np.inf)
        self.arriving_sent = np.zeros(n, bool)
        self.late = np.zeros(n, bool)
        self.eta_dwell = np.full(n, np.nan)
        # When the ETAs were last worked out (a fix's time or a tick's), and the time of the fix
        # whose position they used: ticks run on the gateway's clock, which devices lag.
        self._eta_ts = -math.inf
        self._eta_fix_ts = -math.inf
        prior = cfg.prior
        self.speed = SpeedModel(
            cfg.typical_speed_mps,
            cfg.speed_half_life_s,
            prior.pace_prior_s,
            prior_ratio=prior.pace_ratio,
        )
        shapes = None
        if sites is not None:
            shapes = sites.shapes([(s.lat, s.lon, s.service_s) for s in stops])
        self.service = ServiceModel(self._service, prior, shapes)
        self._allowance = AllowanceModel(
            self.service.shapes, self.service.expected(), cfg.eta_tolerance_share
        )
        # What the route shows, for learning across routes (see :meth:`observations`): each
        # finished dwell with the index of its stop, each leg.
        self.dwells: list[tuple[float, float]] = []
        self.dwell_stops: list[int] = []
        self.leg_stops: list[int] = []  # the stop each of ``legs`` led to
        self.legs: list[tuple[float, float]] = []
        self.leg_start: tuple[float, int, float] | None = None  # ts, stop index, planned s
        self.alerts = _Alerts()
        self.last: tuple[float, float, float] | None = None
        self.last_speed_mps = 0.0
        self.along_m: float | None = None
        self.offset_m = 0.0
        self._legs_key: bytes = b""
        self._legs = np.zeros(0)

    # -- public views ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether every stop was departed from."""
        return bool((self.status == DEPARTED).all())

    def etas(self) -> dict[str, float]:
        """The latest ETA of each pending stop."""
        return {
            self._ids[i]: float(self.eta[i])
            for i in np.flatnonzero((self.status == PENDING) & ~np.isnan(self.eta)).tolist()
        }

    def eta_dwell_s(self) -> dict[str, float]:
        """The service time counted in each pending stop's latest ETA: what is left at the
        stop being served plus the expected service at the pending stops before it."""
        return {
            self._ids[i]: float(self.eta_dwell[i])
            for i in np.flatnonzero((self.status == PENDING) & ~np.isnan(self.eta)).tolist()
        }

    def observations(self) -> RouteObservations:
        """The route's finished dwells and the legs driven from one stop straight to the next
        pending one, for learning across routes (:class:`~geofence.eta.FleetLearner`)."""
        stops = self.route.stops
        sites = tuple(site_key(stops[i].lat, stops[i].lon) for i in self.dwell_stops)
        return RouteObservations(
            dwells=tuple(self.dwells),
            legs=tuple(self.legs),
            sites=sites if len(sites) == len(self.dwells) else (),
        )

    def finished_dwell(self, stop_id: str) -> tuple[int, str, float, float] | None:
        """The dwell at ``stop_id`` once the vehicle left it, as (the stop's index; location
        key, see :func:`~geofence.eta.site_key`; planned service s; dwell s), else None."""
        i = self._ids.index(stop_id)
        if i not in self.dwell_stops:  # a stop is left once: one dwell at most
            return None
        stop = self.route.stops[i]
        planned, dwell = self.dwells[self.dwell_stops.index(i)]
        return i, site_key(stop.lat, stop.lon), planned, dwell

    def finished_leg(self, stop_id: str) -> tuple[int, float, float] | None:
        """The leg driven straight to ``stop_id`` from the stop before, once the vehicle got
        there, as (the stop's index, planned s, actual s), else None (also when it came
        from elsewhere)."""
        i = self._ids.index(stop_id)
        if i not in self.leg_stops:  # a stop is arrived at once: one leg at most
            return None
        planned, actual = self.legs[self.leg_stops.index(i)]
        return i, planned, actual

    def stop_status(self, stop_id: str) -> str:
        """``"pending"``, ``"arrived"`` or ``"departed"``."""
        return _STATUS_NAMES[int(self.status[self._ids.index(stop_id)])]

    # -- feeding --------------------------------------------------------------------------------

    def update(
        self,
        ts: float,
        lat: float,
        lon: float,
        *,
        speed_mps: float | None = None,
        temp_c: float | None = None,
        resting: bool = False,
        accuracy_m: float | None = None,
    ) -> list[RouteEvent]:
        """Apply a fix; return the events it causes. A fix older than the previous one is
        ignored. Without ``speed_mps`` the speed is derived from the previous fix. ``resting``
        says the vehicle is where stopping is expected (say, inside a depot zone). A fix
        whose ``accuracy_m`` is worse than ``poor_accuracy_m`` neither moves the vehicle
        along its path nor counts as leaving a stop (a stray fix during a dwell would)."""
        last = self.last
        if last is not None and ts < last[0]:
            return []
        if speed_mps is None or not math.isfinite(speed_mps):
            if last is not None and ts > last[0]:
                speed_mps = haversine_m(last[1], last[2], lat, lon) / (ts - last[0])
            else:
                speed_mps = 0.0
        # Standing still at a stop is service; everything else but resting is driving, the
        # slow metres into and out of a stop's circle included.
        serving = self.status == ARRIVED
        at_stop = bool(serving.any())
        still = speed_mps < self.config.stopped_speed_mps
        # Driving off from a stop ends its service (and stopping there begins it): ETAs change.
        stand_changed = at_stop and still != (self.last_speed_mps < self.config.stopped_speed_mps)
        if still and last is not None and at_stop:
            self.still_s[serving] += ts - last[0]
        pending = np.flatnonzero(self.status == PENDING)
        pace = float(self._pace[pending[0]]) if pending.size else None
        driving = not resting and not (still and at_stop)
        self.speed.update(ts, speed_mps, driving=driving, pace_s_per_m=pace)
        self.last = (ts, lat, lon)
        self.last_speed_mps = speed_mps
        poor = accuracy_m is not None and accuracy_m > self.config.poor_accuracy_m
        if self._path is not None and not poor:
            after = None if self.along_m is None else self.along_m - self.config.path_backtrack_m
            self.along_m, self.offset_m = self._path.locate(lat, lon, after_m=after)
        events: list[RouteEvent] = []
        dist = haversine_m_array(lat, lon, self._slat, self._slon)
        changed = False if poor else self._stops(ts, lat, lon, dist, events)
        if changed or stand_changed or ts - self._eta_fix_ts >= self.config.eta_refresh_s:
            self._eta_fix_ts = ts
            self._etas(ts, lat, lon, dist, events)
        moving = speed_mps >= self.config.stopped_speed_mps
        self._stopped(ts, lat, lon, moving or resting or bool((dist <= self._radius).any()), events)
        self._off_route(ts, lat, lon, events)
        self._temperature(ts, lat, lon, temp_c, events)
        return events

    def tick(self, now: float) -> list[RouteEvent]:
        """Re-evaluate at ``now`` without a new fix: the vehicle is assumed to be where it was
        last seen, so ETAs slip while it is silent and time-based alerts can fire."""
        if self.last is None or now < self.last[0]:
            return []
        _, lat, lon = self.last
        events: list[RouteEvent] = []
        if now - self._eta_ts >= self.config.eta_refresh_s:
            dist = haversine_m_array(lat, lon, self._slat, self._slon)
            self._etas(now, lat, lon, dist, events)
        a = self.alerts
        if a.stopped_since is not None:
            self._stopped(now, lat, lon, False, events)
        if a.off_since is not None:
            self._off_route(now, lat, lon, events)
        if a.temp_since is not None:
            self._temperature(now, lat, lon, None, events)
        return events

    # -- rules ----------------------------------------------------------------------------------

    def _base(self, ts: float, lat: float, lon: float) -> tuple[str, str, float, float, float]:
        return self.route.vehicle_id, self.route.id, ts, lat, lon

    def _stops(
        self, ts: float, lat: float, lon: float, dist: NDArray[np.float64], out: list[RouteEvent]
    ) -> bool:
        """Stops reached and left at this fix; whether there were any."""
        base = self._base(ts, lat, lon)
        status = self.status
        gone = np.flatnonzero(
            (status == ARRIVED) & (dist > self._radius + self.config.departure_margin_m)
        )
        for i in gone.tolist():
            status[i] = DEPARTED
            planned, dwell = float(self._service[i]), float(self.still_s[i])
            self.service.observe(planned, dwell, self.service.shapes[i])
            self.dwells.append((planned, dwell))
            self.dwell_stops.append(i)
            out.append(
                StopDeparted(*base, stop_id=self._ids[i], arrived_ts=float(self.arrived_ts[i]))
            )
        came = np.flatnonzero((status == PENDING) & (dist <= self._radius))
        for i in came.tolist():
            status[i] = ARRIVED
            self.arrived_ts[i] = ts
            leg = self.leg_start
            if leg is not None and leg[1] == i:
                self.legs.append((leg[2], ts - leg[0]))
                self.leg_stops.append(i)
            self.leg_start = None
            out.append(StopArrived(*base, stop_id=self._ids[i]))
            if self.late[i]:
                self.late[i] = False
                out.append(
                    LateRiskCleared(
                        *base, stop_id=self._ids[i], eta=ts, window_end=float(self._wend[i])
                    )
                )
        # For learning the fleet's pace, a leg is timed as the ETA counts it: from entering
        # one stop's circle to entering the next pending one's, less the standing at the first
        # (that is service), against the plan's time for the leg.
        pending = np.flatnonzero(status == PENDING)
        if gone.size == 1 and pending.size and not (status == ARRIVED).any():
            a, b = int(gone[0]), int(pending[0])
            planned = float(self._leg_lengths(np.array([a, b]))[0] * self._pace[b])
            self.leg_start = (float(self.arrived_ts[a] + self.still_s[a]), b, planned)
        return bool(gone.size or came.size)

    def _travel(self, pending: NDArray[np.intp], dist: NDArray[np.float64]) -> NDArray[np.float64]:
        """Distances: vehicle to the first pending stop's circle, then stop to stop."""
        cfg = self.config
        first = int(pending[0])
        r0 = float(self._radius[first])
        straight = max(float(dist[first]) - r0, 0.0)
        # Far off the planned path (a detour, a closed street), where it projects onto the
        # path says little of the way still to go: the nearest part of the path may lie well
        # behind or ahead. The way to the next stop is then taken as the straight line times
        # the detour factor, as for a route without a path.
        on_path = self.offset_m <= cfg.off_route_clear_distance_m
        if self._path is not None and self.along_m is not None and on_path:
            ahead = float(self._salong[first]) - self.along_m
            d0 = (
                max(ahead - r0, 0.0) + self.offset_m if ahead >= 0 else straight * cfg.detour_factor
            )
            d0 = max(d0, straight)
        else:
            d0 = straight * cfg.detour_factor
        key = pending.tobytes()
        if key != self._legs_key:
            self._legs = self._leg_lengths(pending)
            self._legs_key = key
        travel = np.empty(pending.size)
        travel[0] = d0
        travel[1:] = self._legs
        return travel

    def _planned_pace(self) -> NDArray[np.float64]:
        """Planned seconds per metre of the leg into each stop: from the planned arrivals and
        service times where both ends have a planned arrival, else the route's median such
        pace, else the typical speed's."""
        stops = self.route.stops
        n = len(stops)
        typical = 1.0 / self.config.typical_speed_mps
        pace = np.full(n, np.nan)
        if n > 1:
            legs = np.concatenate(([0.0], self._leg_lengths(np.arange(n))))
            lo, hi = _PLAN_PACE_S_PER_M
            for i in range(1, n):
                a, b = stops[i - 1].planned_arrival, stops[i].planned_arrival
                if a is None or b is None or legs[i] <= 0:
                    continue
                p = (b - a - stops[i - 1].service_s) / legs[i]
                if lo <= p <= hi:
                    pace[i] = p
        known = pace[~np.isnan(pace)]
        fallback = float(np.median(known)) if known.size else typical
        return np.where(np.isnan(pace), fallback, pace)

    def _leg_lengths(self, pending: NDArray[np.intp]) -> NDArray[np.float64]:
        """Stop-to-stop travel: from entering stop ``a``'s circle to entering ``b``'s."""
        a, b = pending[:-1], pending[1:]
        straight = haversine_m_array(self._slat[a], self._slon[a], self._slat[b], self._slon[b])
        rb = self._radius[b]
        legs = np.maximum(straight - rb, 0.0) * self.config.detour_factor
        if self._path is not None:
            along = self._salong[b] - self._salong[a]
            on_path = along >= 0
            legs = np.where(on_path, np.maximum(np.maximum(along, straight) - rb, 0.0), legs)
        # Arrival is at the edge of a stop's circle; the vehicle still covers the radius to
        # the stop itself before leaving for the next one.
        return legs + self._radius[a]

    def _etas(
        self, now: float, lat: float, lon: float, dist: NDArray[np.float64], out: list[RouteEvent]
    ) -> None:
        cfg = self.config
        self._eta_ts = now
        pending = np.flatnonzero(self.status == PENDING)
        if pending.size == 0:
            return
        serving = np.flatnonzero(self.status == ARRIVED)
        # Between fixes (ticks) a vehicle last seen standing still is taken to stand still.
        since = 0.0
        standing = self.last_speed_mps < cfg.stopped_speed_mps
        if standing and self.last is not None:
            since = max(now - self.last[0], 0.0)
        # Moving again after standing at a stop is leaving it: the service there is over,
        # though the vehicle is still inside the circle for a few more seconds.
        busy = max(
            (
                self.service.remaining(i, float(self.still_s[i]) + since)
                for i in serving.tolist()
                if standing or self.still_s[i] <= 0.0
            ),
            default=0.0,
        )
        service = self.service.expected()[pending]
        travel = self._travel(pending, dist) * self._pace[pending] * self.speed.ratio()
        eta = estimate_arrivals(now, travel, service, busy_s=busy)
        allowance = self._allowance.allowance(pending, eta - now)
        eta += allowance
        self.eta[pending] = eta
        self.eta_dwell[pending] = (
            busy + np.concatenate(([0.0], np.cumsum(service[:-1]))) + allowance
        )
        base = self._base(now, lat, lon)
        ids = self._ids

        arriving = ~self.arriving_sent[pending] & (
            (dist[pending] <= cfg.arriving_distance_m) | (eta - now <= cfg.arriving_lead_s)
        )
        for j in np.flatnonzero(arriving).tolist():
            i = int(pending[j])
            self.arriving_sent[i] = True
            out.append(
                StopArriving(*base, stop_id=ids[i], eta=float(eta[j]), distance_m=float(dist[i]))
            )

        announced = self.announced_eta[pending]
        never = np.isnan(announced) & np.isinf(self.announced_at[pending])
        moved = np.abs(eta - announced) > cfg.eta_change_threshold_s
        allowed = now - self.announced_at[pending] >= cfg.eta_min_interval_s
        for j in np.flatnonzero(never | (moved & allowed)).tolist():
            i = int(pending[j])
            prev = None if math.isnan(announced[j]) else float(announced[j])
            self.announced_eta[i] = eta[j]
            self.announced_at[i] = now
            out.append(EtaChanged(*base, stop_id=ids[i], eta=float(eta[j]), previous_eta=prev))

        late_by = eta - self._wend[pending]
        late = self.late[pending]
        for j in np.flatnonzero(~late & (late_by > cfg.late_risk_margin_s)).tolist():
            i = int(pending[j])
            self.late[i] = True
            out.append(
                LateRisk(
                    *base,
                    stop_id=ids[i],
                    eta=float(eta[j]),
                    window_end=float(self._wend[i]),
                    late_by_s=float(late_by[j]),
                )
            )
        for j in np.flatnonzero(late & (late_by < -cfg.late_risk_clear_margin_s)).tolist():
            i = int(pending[j])
            self.late[i] = False
            out.append(
                LateRiskCleared(
                    *base, stop_id=ids[i], eta=float(eta[j]), window_end=float(self._wend[i])
                )
            )

    def _stopped(
        self, ts: float, lat: float, lon: float, excused: bool, out: list[RouteEvent]
    ) -> None:
        a = self.alerts
        if excused:
            if a.stopped_raised and a.stopped_since is not None:
                out.append(
                    StoppedTooLongCleared(
                        *self._base(ts, lat, lon),
                        since_ts=a.stopped_since,
                        stopped_s=ts - a.stopped_since,
                    )
                )
            a.stopped_since = None
            a.stopped_raised = False
            return
        if a.stopped_since is None:
            a.stopped_since = ts
        if not a.stopped_raised and ts - a.stopped_since >= self.config.stopped_too_long_s:
            a.stopped_raised = True
            out.append(
                StoppedTooLong(
                    *self._base(ts, lat, lon),
                    since_ts=a.stopped_since,
                    stopped_s=ts - a.stopped_since,
                )
            )

    def _off_route(self, ts: float, lat: float, lon: float, out: list[RouteEvent]) -> None:
        if self._path is None:
            return
        cfg = self.config
        a = self.alerts
        off = self.offset_m
        if off > cfg.off_route_distance_m:
            if a.off_since is None:
                a.off_since = ts
            if not a.off_raised and ts - a.off_since >= cfg.off_route_duration_s:
                a.off_raised = True
                out.append(
                    OffRoute(*self._base(ts, lat, lon), distance_m=off, since_ts=a.off_since)
                )
        elif off <= cfg.off_route_clear_distance_m or not a.off_raised:
            if a.off_raised and a.off_since is not None:
                out.append(
                    OffRouteCleared(*self._base(ts, lat, lon), distance_m=off, since_ts=a.off_since)
                )
            a.off_since = None
            a.off_raised = False

    def _temperature(
        self, ts: float, lat: float, lon: float, temp_c: float | None, out: list[RouteEvent]
    ) -> None:
        """Apply a reading (or, with ``temp_c`` None, only the passing of time)."""
        cfg = self.config
        lo, hi = cfg.temp_min_c, cfg.temp_max_c
        if lo is None and hi is None:
            return
        a = self.alerts
        if temp_c is not None:
            a.temp_last_c = temp_c
            outside = (lo is not None and temp_c < lo) or (hi is not None and temp_c > hi)
            h = cfg.temp_hysteresis_c
            back = (lo is None or temp_c >= lo + h) and (hi is None or temp_c <= hi - h)
            if not outside and (back or not a.temp_raised):
                if a.temp_raised and a.temp_since is not None:
                    out.append(
                        TemperatureExcursionCleared(
                            *self._base(ts, lat, lon), temp_c=temp_c, since_ts=a.temp_since
                        )
                    )
                a.temp_since = None
                a.temp_raised = False
                return
            if outside and a.temp_since is None:
                a.temp_since = ts
        since = a.temp_since
        if since is None or a.temp_raised or a.temp_last_c is None:
            return
        if ts - since >= cfg.temp_excursion_s:
            a.temp_raised = True
            out.append(
                TemperatureExcursion(
                    *self._base(ts, lat, lon),
                    temp_c=a.temp_last_c,
                    min_c=lo,
                    max_c=hi,
                    since_ts=since,
                )
            )

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """The tracker's mutable state as JSON-ready data (the route itself is not included)."""

        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "version": STATE_VERSION,
            "route_id": self.route.id,
            "stops": {
                sid: {
                    "status": _STATUS_NAMES[int(self.status[i])],
                    "arrived_ts": num(self.arrived_ts[i]),
                    "still_s": float(self.still_s[i]),
                    "announced_eta": num(self.announced_eta[i]),
                    "announced_at": num(self.announced_at[i]),
                    "arriving_sent": bool(self.arriving_sent[i]),
                    "late_risk": bool(self.late[i]),
                    "eta": num(self.eta[i]),
                    "eta_dwell": num(self.eta_dwell[i]),
                }
                for i, sid in enumerate(self._ids)
            },
            "last": list(self.last) if self.last is not None else None,
            "last_speed_mps": self.last_speed_mps,
            "eta_ts": num(self._eta_ts),
            "eta_fix_ts": num(self._eta_fix_ts),
            "along_m": self.along_m,
            "offset_m": self.offset_m,
            "speed": msgspec.to_builtins(self.speed.state),
            "service": self.service.export(),
            "observed": {
                "dwells": [list(d) for d in self.dwells],
                "dwell_stops": list(self.dwell_stops),
                "leg_stops": list(self.leg_stops),
                "legs": [list(g) for g in self.legs],
                "leg_start": None if self.leg_start is None else list(self.leg_start),
            },
            "alerts": msgspec.to_builtins(self.alerts),
        }

    @classmethod
    def from_state(
        cls,
        route: Route,
        state: dict[str, Any],
        config: TrackerConfig | None = None,
        *,
        sites: SiteModel | None = None,
    ) -> RouteTracker:
        """A tracker for ``route`` resumed from :meth:`export_state` output. Stops the state
        does not know stay pending."""
        if state.get("version") != STATE_VERSION or state.get("route_id") != route.id:
            raise ValueError("state is not from this route or this version")
        t = cls(route, config, sites=sites)
        stops = state.get("stops") or {}
        for i, sid in enumerate(t._ids):
            s = stops.get(sid)
            if s is None:
                continue
            t.status[i] = _STATUS_NAMES.index(s["status"])
            # ETAs are missing from states saved before they were kept: worked out at the next fix.
            for name in ("arrived_ts", "announced_eta", "eta", "eta_dwell"):
                value = s.get(name)
                getattr(t, name)[i] = np.nan if value is None else float(value)
            t.announced_at[i] = -np.inf if s["announced_at"] is None else s["announced_at"]
            t.arriving_sent[i] = bool(s["arriving_sent"])
            t.late[i] = bool(s["late_risk"])
            t.still_s[i] = float(s.get("still_s") or 0.0)
        last = state.get("last")
        t.last = None if last is None else (float(last[0]), float(last[1]), float(last[2]))
        t.last_speed_mps = float(state.get("last_speed_mps") or 0.0)
        for name in ("eta_ts", "eta_fix_ts"):
            value = state.get(name)
            setattr(t, f"_{name}", -math.inf if value is None else float(value))
        t.along_m = state.get("along_m")
        t.offset_m = float(state.get("offset_m") or 0.0)
        # States saved before the pace model hold other fields: start its learning afresh.
        speed = {
            k: v for k, v in (state.get("speed") or {}).items() if k in SpeedState.__struct_fields__
        }
        t.speed.state = msgspec.convert(speed, SpeedState)
        t.service.restore(state.get("service") or {})
        observed = state.get("observed") or {}
        t.dwells = [(float(a), float(b)) for a, b in observed.get("dwells") or []]
        # States saved before stops were recorded with their dwells: the sites are not known.
        n = len(route.stops)
        t.dwell_stops = [int(i) for i in observed.get("dwell_stops") or [] if 0 <= int(i) < n]
        t.leg_stops = [int(i) for i in observed.get("leg_stops") or [] if 0 <= int(i) < n]
        t.legs = [(float(a), float(b)) for a, b in observed.get("legs") or []]
        start = observed.get("leg_start")
        t.leg_start = None if start is None else (float(start[0]), int(start[1]), float(start[2]))
        t.alerts = msgspec.convert(state.get("alerts") or {}, _Alerts)
        return t
