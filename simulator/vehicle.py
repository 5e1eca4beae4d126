"""A delivery van: drives depot -> stops -> depot through a :class:`~simulator.city.City`.

Pure logic, no I/O and no real time: :meth:`Van.poll` is given the wall-clock time and returns
the GPS fixes that fell due since the previous call.

Time scaling. With ``time_scale`` = k the van lives k simulated seconds per wall-clock second,
but each fix is stamped with the *wall-clock* time it falls due, never a simulated one: a
simulated clock running ahead of the real one would give fixes in the future, and the gateway
rejects those. A consequence is that the gateway sees a world sped up k times: positions move
k times as fast per second of ``ts`` (and the reported ``speed`` is scaled to match), dwells
look k times shorter. The gateway's implausible-jump limit must allow for k times the urban
speed limit; at k = 1 everything is real.

Fixes fall due every ``interval_s`` of wall-clock time from ``epoch``.
"""

from __future__ import annotations

import bisect
import enum
import math
import random
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .city import Address, City, Path

PHYSICS_STEP_S: Final = 0.5  # simulated seconds per integration step
LOOKAHEAD_M: Final = 120.0  # enough to brake from 50 km/h at the configured deceleration
AREA_STEP_S: Final = 10.0  # simulated seconds between looks at the city's traffic field
CREEP_SPEED_MPS: Final = 0.5  # lowest speed while closing the last metres to a stop
PLAN_SPEED_SHARE: Final = 0.7  # planned average speed as a share of the limits
PLAN_SERVICE_BASE_S: Final = 60.0  # planned service time per stop: this much ...
PLAN_SERVICE_PER_PARCEL_S: Final = 35.0  # ... plus this much per parcel
POOR_ACCURACY_M: Final = (60.0, 150.0)


class Phase(enum.Enum):
    """What the van is doing."""

    DEPOT = "depot"  # loading or on a break before the next route
    DRIVING = "driving"
    DWELLING = "dwelling"  # at a stop, serving the customer


@dataclass(frozen=True, slots=True)
class VanConfig:
    """Behaviour of a van; probabilities are per fix unless stated otherwise."""

    interval_s: float = 1.0  # wall-clock seconds between fixes
    time_scale: float = 1.0  # simulated seconds per wall-clock second
    stops_per_route: int = 8
    driver_factor: tuple[float, float] = (0.9, 1.05)  # share of the limit the driver drives at
    accel_mps2: float = 1.2
    decel_mps2: float = 1.8
    turn_speed_mps: float = 4.5  # for a right-angle turn
    turn_angle_deg: float = 30.0  # smaller heading changes are taken without slowing
    parcels: tuple[int, int] = (1, 6)  # per stop, both ends included
    # The time actually spent at a stop is the planned service time times a log-normal factor
    # (median 1) of this spread, kept within service_factor; then, by chance, a long dwell.
    # The factor is partly the address's own (a walk from the only place to park, stairs, a
    # concierge: the same for every van and day) and partly the visit's, each of these spreads
    # (together about 0.3).
    site_service_sigma: float = 0.21
    service_sigma: float = 0.21
    service_factor: tuple[float, float] = (0.5, 2.0)
    # Long dwells come mostly from the address: at a share of the city's addresses (a reception
    # desk, a goods-in queue, a tower block without a lift) nearly every visit runs long, by
    # about that site's own extra (drawn once per address, the same for every van and day)
    # with a log-normal spread per visit. Elsewhere a long dwell comes by chance (nobody home,
    # nowhere to park), likelier where more parcels change hands: its chance at a stop with
    # the fewest and with the most parcels of ``parcels``, straight in between. About 8 % of
    # stops overall run long, two in ten of them by chance at an ordinary address.
    slow_site_share: float = 0.08
    slow_site_probability: float = 0.85
    slow_site_extra_s: tuple[float, float] = (300.0, 900.0)
    slow_site_spread: float = 0.2
    long_dwell_probability: tuple[float, float] = (0.005, 0.03)
    long_dwell_s: tuple[float, float] = (300.0, 900.0)
    # Congestion comes from the city's traffic field (simulator.traffic), the same for every van
    # in a district; each van on its own meets traffic lights (a standstill at the start of
    # this share of its traffic episodes) and stop-and-go (a share of the speed it would drive).
    light_probability: float = 0.15
    light_s: tuple[float, float] = (10.0, 45.0)
    stop_and_go: tuple[float, float] = (0.8, 1.0)
    stop_and_go_s: tuple[float, float] = (20.0, 90.0)
    detour_probability: float = 0.1  # per leg
    detour_offset_m: tuple[float, float] = (300.0, 700.0)
    initial_wait_s: tuple[float, float] = (0.0, 120.0)
    depot_break_s: tuple[float, float] = (300.0, 900.0)
    accuracy_m: tuple[float, float] = (3.0, 9.0)
    poor_accuracy_probability: float = 0.003
    outlier_probability: float = 0.002
    outlier_jump_m: tuple[float, float] = (300.0, 900.0)
    dropout_probability: float = 0.001  # chance that a fix starts a dropout
    dropout_s: tuple[float, float] = (15.0, 90.0)  # wall-clock seconds without fixes
    battery_pct: tuple[float, float] = (60.0, 100.0)
    battery_drain_pct_per_h: tuple[float, float] = (2.0, 6.0)
    battery_charge_pct_per_h: float = 30.0  # while at the depot
    reefer: bool = False
    reefer_setpoint_c: float = 4.0
    reefer_door_open_c_per_s: float = 0.01
    reefer_recovery_c_per_s: float = 0.02
    base_alt_m: float = 10.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.stops_per_route < 1:
            raise ValueError("stops_per_route must be at least 1")
        if not (0.0 <= self.slow_site_share <= 1.0 and 0.0 <= self.slow_site_probability <= 1.0):
            raise ValueError("slow_site_share and slow_site_probability must be within 0-1")


class Fix(msgspec.Struct, frozen=True):
    """One GPS fix as the device reads it (not yet numbered for the wire)."""

    ts: float  # wall-clock epoch seconds
    lat: float
    lon: float
    speed: float  # m/s, in the time-scaled world
    heading: float  # degrees clockwise from north
    accuracy: float  # metres
    alt: float
    battery: float  # percent
    odometer: float  # metres
    temp_c: float | None = None
    outlier: bool = False  # deliberately displaced; not sent on the wire


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """A stop of the current route with its planned arrival (simulated seconds)."""

    index: int
    address: Address
    planned_arrival_s: float
    route: int = 1  # the van's route number, see :attr:`RoutePlan.number`
    parcels: int = 1
    service_s: float = PLAN_SERVICE_BASE_S + PLAN_SERVICE_PER_PARCEL_S  # planned time here


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """A route as the dispatcher plans it before the van leaves the depot.

    Times are simulated seconds since the van's epoch. ``path`` is the planned polyline
    (lat, lon) from the depot through every stop and back, without the detours the driver
    may take.
    """

    number: int  # 1 for the van's first route, then 2, 3, ...
    depart_s: float
    stops: tuple[PlannedStop, ...]
    path: tuple[tuple[float, float], ...]
    return_s: float  # planned arrival back at the depot


@dataclass(slots=True)
class StopVisit:
    """What actually happened at a stop."""

    stop: PlannedStop
    arrived_s: float
    departed_s: float | None = None
    long_extra_s: float = 0.0  # what a long dwell added to the usual service; 0: none

    @property
    def long_dwell(self) -> bool:
        """Whether the dwell ran long, beyond the usual spread of the service."""
        return self.long_extra_s > 0

    @property
    def late_s(self) -> float:
        return self.arrived_s - self.stop.planned_arrival_s


@dataclass(slots=True)
class VanCounters:
    """How many fixes of each kind the van produced."""

    fixes: int = 0
    outliers: int = 0
    poor_accuracy: int = 0
    dropouts: int = 0
    skipped: int = 0  # fixes not produced because of a dropout
    routes: int = 0
    detours: int = 0
    long_dwells: int = 0


@dataclass(slots=True)
class _Leg:
    path: Path
    cum: list[float]  # distance from the start to each vertex
    vertex_speed: list[float]  # highest speed at which each vertex may be passed
    to_stop: int | None  # index into the plan, None for the way back to the depot


@dataclass(slots=True)
class _Route:
    plan: RoutePlan
    legs: list[_Leg] = field(default_factory=list)


class Van:
    """A van driving delivery routes; advance it with :meth:`poll`."""

    def __init__(self, city: City, config: VanConfig, *, seed: int, epoch: float) -> None:
        self.city = city
        self.config = config
        self.epoch = epoch
        self.counters = VanCounters()
        self.visits: list[StopVisit] = []
        self._rng = random.Random(seed)
        # GPS error has its own generator, so the drive itself does not depend on how often
        # fixes are taken: the same seed drives the same route at any interval or time scale.
        self._gps = random.Random(seed ^ 0x5EED_6755)
        rng = self._rng
        self._driver = rng.uniform(*config.driver_factor)
        self._t = 0.0  # simulated seconds since epoch
        self._fix_index = 0
        self._dropout_until = -math.inf
        depot = city.nodes[city.depot]
        self.x, self.y = depot.x, depot.y
        self.speed = 0.0  # m/s, simulated
        self.heading = rng.uniform(0, 360)
        self.odometer = rng.uniform(20e6, 150e6)
        self.battery = rng.uniform(*config.battery_pct)
        self._drain = rng.uniform(*config.battery_drain_pct_per_h)
        self.temp_c = config.reefer_setpoint_c + rng.uniform(-0.5, 0.5)
        self.phase = Phase.DEPOT
        self._phase_until = rng.uniform(*config.initial_wait_s)
        self._traffic = 1.0
        self._traffic_until = 0.0
        self._area = 1.0  # the city's traffic field where the van is, sampled every AREA_STEP_S
        self._area_until = 0.0
        self._clock0 = epoch * config.time_scale  # simulated time on the clock vans share
        self._route: _Route | None = None
        self._next: _Route | None = None
        self._sites: dict[tuple[float, float], tuple[float, float]] = {}
        self._leg_index = 0
        self._d = 0.0  # distance along the current leg
        self._seg = 0
        self._plan_next()

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the epoch."""
        return self._t

    @property
    def next_fix_at(self) -> float:
        """Wall-clock time at which the next fix falls due."""
        return self.epoch + self._fix_index * self.config.interval_s

    @property
    def plan(self) -> list[PlannedStop]:
        """Stops of the current route, empty before the first one starts."""
        return list(self._route.plan.stops) if self._route else []

    @property
    def route(self) -> RoutePlan | None:
        """The route being driven; None before the first one starts."""
        return self._route.plan if self._route else None

    @property
    def upcoming(self) -> RoutePlan | None:
        """The route planned for the next departure from the depot, while the van waits there.

        It is known from the moment the van reaches the depot (or is created), so a dispatcher
        can announce it before the van leaves.
        """
        return self._next.plan if self._next else None

    def wall_time(self, sim_s: float) -> float:
        """Wall-clock epoch seconds at which simulated time ``sim_s`` falls."""
        return self.epoch + sim_s / self.config.time_scale

    @property
    def position(self) -> tuple[float, float]:
        """True (lat, lon), without GPS error."""
        return self.city.projection.to_latlon(self.x, self.y)

    def poll(self, now: float) -> list[Fix]:
        """Advance to wall-clock ``now`` and return the fixes that fell due, oldest first."""
        fixes: list[Fix] = []
        cfg = self.config
        while self.next_fix_at <= now:
            due = self.next_fix_at
            self._advance_to((due - self.epoch) * cfg.time_scale)
            self._fix_index += 1
            fix = self._make_fix(due)
            if fix is not None:
                fixes.append(fix)
        return fixes

    def _advance_to(self, t: float) -> None:
        while self._t < t:
            dt = min(PHYSICS_STEP_S, t - self._t)
            self._step(dt)
            self._t += dt

    def _step(self, dt: float) -> None:
        cfg = self.config
        if self.phase is Phase.DRIVING:
            self._drive(dt)
            self.battery -= self._drain * dt / 3600
            self.temp_c = max(cfg.reefer_setpoint_c, self.temp_c - cfg.reefer_recovery_c_per_s * dt)
        elif self.phase is Phase.DWELLING:
            self.battery -= self._drain * dt / 3600
            self.temp_c += cfg.reefer_door_open_c_per_s * dt
            if self._t + dt >= self._phase_until:
                self._depart()
        else:
            self.battery += cfg.battery_charge_pct_per_h * dt / 3600
            if self._t + dt >= self._phase_until:
                self._start_route()
        self.battery = min(100.0, max(5.0, self.battery))

    def _plan_next(self) -> None:
        """Plan the next route to leave the depot at ``_phase_until``."""
        cfg, city, rng = self.config, self.city, self._rng
        addresses = city.random_addresses(rng, cfg.stops_per_route)
        ordered: list[Address] = []
        here = city.nodes[city.depot]
        while addresses:  # nearest neighbour, as a dispatcher's rough plan would
            origin = here
            nxt = min(addresses, key=lambda a: _dist(city, a.node, origin.id))
            addresses.remove(nxt)
            ordered.append(nxt)
            here = city.nodes[nxt.node]
        number = self.counters.routes + 1
        depart = self._phase_until
        t = depart
        prev = city.depot
        stops: list[PlannedStop] = []
        legs: list[_Leg] = []
        depot = city.nodes[city.depot]
        points: list[tuple[float, float]] = [(depot.lat, depot.lon)]
        for i, address in enumerate(ordered):
            path = city.shortest_path(prev, address.node)
            t += path.travel_time_s / (PLAN_SPEED_SHARE * self._driver)
            parcels = rng.randint(*cfg.parcels)
            service = PLAN_SERVICE_BASE_S + PLAN_SERVICE_PER_PARCEL_S * parcels
            stops.append(PlannedStop(i, address, t, number, parcels, service))
            legs.append(self._leg(self._maybe_detour(path), i))
            points.extend(path.points[1:])
            t += service
            prev = address.node
        back = city.shortest_path(prev, city.depot)
        legs.append(self._leg(self._maybe_detour(back), None))
        points.extend(back.points[1:])
        t += back.travel_time_s / (PLAN_SPEED_SHARE * self._driver)
        plan = RoutePlan(number, depart, tuple(stops), tuple(points), t)
        self._next = _Route(plan, legs)

    def _start_route(self) -> None:
        assert self._next is not None
        self._route, self._next = self._next, None
        self._leg_index = 0
        self.counters.routes += 1
        self._begin_leg()

    def _maybe_detour(self, path: Path) -> Path:
        """The planned path, or with some probability a detour via a point off to the side."""
        cfg, city, rng = self.config, self.city, self._rng
        if len(path.nodes) < 2 or rng.random() >= cfg.detour_probability:
            return path
        (x0, y0), (x1, y1) = path.xy[0], path.xy[-1]
        angle = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(*cfg.detour_offset_m)
        via = city.nearest_node(
            (x0 + x1) / 2 + offset * math.cos(angle), (y0 + y1) / 2 + offset * math.sin(angle)
        )
        if via in (path.nodes[0], path.nodes[-1]):
            return path
        self.counters.detours += 1
        return city.shortest_path(path.nodes[0], via).join(city.shortest_path(via, path.nodes[-1]))

    def _leg(self, path: Path, to_stop: int | None) -> _Leg:
        cfg = self.config
        cum = [0.0]
        for (ax, ay), (bx, by) in zip(path.xy, path.xy[1:], strict=False):
            cum.append(cum[-1] + math.hypot(bx - ax, by - ay))
        vertex_speed = [math.inf] * len(path.xy)
        vertex_speed[-1] = 0.0
        for i in range(1, len(path.xy) - 1):
            turn = _turn_angle(path.xy[i - 1], path.xy[i], path.xy[i + 1])
            if turn > cfg.turn_angle_deg:
                # Tighter turns are slower: a right angle at turn speed, a U-turn at half of it.
                vertex_speed[i] = cfg.turn_speed_mps * min(1.0, 90.0 / turn)
        return _Leg(path, cum, vertex_speed, to_stop)

    def _begin_leg(self) -> None:
        self.phase = Phase.DRIVING
        self._d = 0.0
        self._seg = 0

    def _drive(self, dt: float) -> None:
        assert self._route is not None
        cfg = self.config
        leg = self._route.legs[self._leg_index]
        cum = leg.cum
        if self._t >= self._traffic_until:
            self._next_traffic_episode()
        if self._t >= self._area_until:
            self._area = self.city.traffic.factor(self.x, self.y, self._clock0 + self._t)
            self._area_until = self._t + AREA_STEP_S
        if len(cum) < 2:
            self._arrive()
            return
        while self._seg < len(cum) - 2 and cum[self._seg + 1] <= self._d:
            self._seg += 1
        target = leg.path.speed_limits[self._seg] * self._driver * self._traffic * self._area
        j = self._seg + 1
        while j < len(cum) and cum[j] - self._d <= LOOKAHEAD_M:
            vmax = leg.vertex_speed[j]
            if vmax < target:
                # Judge the gap as it will be after this step, so braking never comes too late.
                gap = max(0.0, cum[j] - self._d - self.speed * dt)
                target = min(target, math.sqrt(vmax * vmax + 2 * cfg.decel_mps2 * gap))
            j += 1
        remaining = cum[-1] - self._d
        if self._traffic > 0:
            target = max(target, min(CREEP_SPEED_MPS, remaining / dt))
        v0 = self.speed
        if v0 < target:
            v1 = min(target, v0 + cfg.accel_mps2 * dt)
        else:
            v1 = max(target, v0 - cfg.decel_mps2 * dt)
        step = (v0 + v1) / 2 * dt
        if step >= remaining:
            step = remaining
        self._d += step
        self.odometer += step
        self.speed = v1
        self._place(leg)
        if self._d >= cum[-1] - 1e-6:
            self._arrive()

    def _place(self, leg: _Leg) -> None:
        cum, xy = leg.cum, leg.path.xy
        i = min(max(bisect.bisect_right(cum, self._d) - 1, 0), len(cum) - 2)
        (ax, ay), (bx, by) = xy[i], xy[i + 1]
        seg_len = cum[i + 1] - cum[i]
        f = (self._d - cum[i]) / seg_len if seg_len > 0 else 0.0
        self.x, self.y = ax + (bx - ax) * f, ay + (by - ay) * f
        if seg_len > 0:
            self.heading = math.degrees(math.atan2(bx - ax, by - ay)) % 360

    def _next_traffic_episode(self) -> None:
        """The van's own traffic for a while: a red light, or stop-and-go. Congestion, which
        every van in a district shares, is the city's traffic field."""
        cfg, rng = self.config, self._rng
        if rng.random() < cfg.light_probability:
            self._traffic, length = 0.0, rng.uniform(*cfg.light_s)
        else:
            self._traffic, length = rng.uniform(*cfg.stop_and_go), rng.uniform(*cfg.stop_and_go_s)
        self._traffic_until = self._t + length

    def _arrive(self) -> None:
        assert self._route is not None
        cfg, rng = self.config, self._rng
        self.speed = 0.0
        leg = self._route.legs[self._leg_index]
        if leg.to_stop is None:
            self.phase = Phase.DEPOT
            self._phase_until = self._t + rng.uniform(*cfg.depot_break_s)
            self._plan_next()
            return
        stop = self._route.plan.stops[leg.to_stop]
        lo, hi = cfg.service_factor
        factor = self.site_service_factor(stop.address) * rng.lognormvariate(0.0, cfg.service_sigma)
        dwell = stop.service_s * min(max(factor, lo), hi)
        extra = 0.0
        if rng.random() < self.long_dwell_chance(stop):
            site_extra = self.site_extra_s(stop.address)
            if site_extra > 0:
                extra = site_extra * rng.lognormvariate(0.0, cfg.slow_site_spread)
            else:
                extra = rng.uniform(*cfg.long_dwell_s)
            self.counters.long_dwells += 1
        self.visits.append(StopVisit(stop, self._t, long_extra_s=extra))
        dwell += extra
        self.phase = Phase.DWELLING
        self._phase_until = self._t + dwell

    def _site(self, address: Address) -> tuple[float, float]:
        """What ``address`` is like, drawn from its location alone, so every van (whatever its
        seed) finds the same: its long dwells' usual extra (0 unless long dwells are the rule
        there) and its usual visit's factor."""
        key = (address.lat, address.lon)
        site = self._sites.get(key)
        if site is None:
            cfg, where = self.config, f"{address.lat:.6f} {address.lon:.6f}"
            slow = random.Random(f"site {where}")
            extra = (
                slow.uniform(*cfg.slow_site_extra_s) if slow.random() < cfg.slow_site_share else 0.0
            )
            usual = random.Random(f"site service {where}")
            site = self._sites[key] = (extra, usual.lognormvariate(0.0, cfg.site_service_sigma))
        return site

    def site_extra_s(self, address: Address) -> float:
        """What a visit to ``address`` usually adds when it runs long, if the address is one
        where long dwells are the rule; 0 elsewhere (see :meth:`_site`)."""
        return self._site(address)[0]

    def site_service_factor(self, address: Address) -> float:
        """How much longer (or shorter) than planned a usual visit to ``address`` takes, as a
        median factor (see :meth:`_site`)."""
        return self._site(address)[1]

    def long_dwell_chance(self, stop: PlannedStop) -> float:
        """The chance that a visit to ``stop`` takes a long dwell: the slow addresses' chance
        there, else one by the parcel count."""
        cfg = self.config
        if self.site_extra_s(stop.address) > 0:
            return cfg.slow_site_probability
        (fewest, most), (low, high) = cfg.parcels, cfg.long_dwell_probability
        share = (stop.parcels - fewest) / (most - fewest) if most > fewest else 0.5
        return low + (high - low) * min(max(share, 0.0), 1.0)

    def _depart(self) -> None:
        self.visits[-1].departed_s = self._phase_until
        self._leg_index += 1
        self._begin_leg()

    def _make_fix(self, due: float) -> Fix | None:
        cfg, rng = self.config, self._gps
        if due < self._dropout_until:
            self.counters.skipped += 1
            return None
        if rng.random() < cfg.dropout_probability:
            self._dropout_until = due + rng.uniform(*cfg.dropout_s)
            self.counters.dropouts += 1
            self.counters.skipped += 1
            return None
        outlier = rng.random() < cfg.outlier_probability
        # An outlier claims a good accuracy: only the jump gives it away, as with multipath.
        if not outlier and rng.random() < cfg.poor_accuracy_probability:
            accuracy = rng.uniform(*POOR_ACCURACY_M)
            self.counters.poor_accuracy += 1
        else:
            accuracy = rng.uniform(*cfg.accuracy_m)
        sigma = accuracy / 2
        x = self.x + rng.gauss(0, sigma)
        y = self.y + rng.gauss(0, sigma)
        if outlier:
            jump, angle = rng.uniform(*cfg.outlier_jump_m), rng.uniform(0, 2 * math.pi)
            x += jump * math.cos(angle)
            y += jump * math.sin(angle)
            self.counters.outliers += 1
        lat, lon = self.city.projection.to_latlon(x, y)
        moving = self.speed > 0.3
        speed = max(0.0, self.speed * cfg.time_scale + rng.gauss(0, 0.2)) if moving else 0.0
        heading = (self.heading + rng.gauss(0, 3.0)) % 360 if moving else self.heading
        self.counters.fixes += 1
        return Fix(
            ts=round(due, 3),
            lat=round(lat, 7),
            lon=round(lon, 7),
            speed=round(speed, 2),
            heading=round(heading, 1) % 360,
            accuracy=round(accuracy, 1),
            alt=round(cfg.base_alt_m + rng.gauss(0, accuracy), 1),
            battery=round(self.battery, 1),
            odometer=round(self.odometer, 1),
            temp_c=round(self.temp_c + rng.gauss(0, 0.1), 2) if cfg.reefer else None,
            outlier=outlier,
        )


def _dist(city: City, a: int, b: int) -> float:
    na, nb = city.nodes[a], city.nodes[b]
    return math.hypot(na.x - nb.x, na.y - nb.y)


def _turn_angle(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    """Heading change in degrees (0-180) when going a -> b -> c."""
    h1 = math.atan2(b[0] - a[0], b[1] - a[1])
    h2 = math.atan2(c[0] - b[0], c[1] - b[1])
    d = abs(math.degrees(h2 - h1)) % 360
    return 360 - d if d > 180 else d
