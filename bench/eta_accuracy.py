"""ETA accuracy: how far the route tracker's arrival predictions are from actual arrivals.

Drives N simulated vans (``simulator.Van``, seeded: traffic, long dwells, detours, GPS noise and
dropouts) through one delivery route each in a synthetic city, on an explicit clock and without
servers. Each van's plan becomes a ``geofence.Route``: one stop per planned address, a window of
``WINDOW_S`` either side of the planned arrival, the plan's service time at that stop, and the
planned polyline (the shortest paths depot -> stop 1 -> ... -> last stop) as ``path``. Every fix
the gateway would accept goes to a ``RouteTracker`` in time order, with its reported speed and
accuracy (the simulator's deliberate outliers are dropped, as the gateway's implausible-jump
check drops them), and the tracker's ETA for every pending stop is recorded after each fix.

The simulator's traffic: congestion is a property of the district and the hour, the same for
every van (``simulator.traffic``: 800 m cells whose level, free flow 65 %, busy 25 %, jammed
10 % of the time, is drawn anew every 15 minutes and interpolated in between); each van on its
own only meets traffic lights and stop-and-go. Each day of the history has its own traffic
(its own epoch).

The simulator's dwells: a stop's planned service time comes from its parcel count (60 s plus
35 s a parcel, 95-270 s); the van stays that long times a log-normal factor (within 0.5-2)
that is partly the address's own (spread 0.21, the same for every van and day: a walk from
the only place to park, stairs) and partly the visit's (spread 0.21; together about 0.3),
and sometimes 5-15 minutes longer on top (a "long dwell"). Long dwells come mostly from the
address: at 8 % of the city's addresses (the same for every van and day) 85 % of visits run
long, by that address's own extra (drawn once, 300-900 s) with a spread of 0.2 a visit;
elsewhere 0.5 % (one parcel) to 3 % (six) of visits run 300-900 s long by chance. About 8 %
of stops run long, one in five of those by chance. The figures depend on this model of
traffic and dwells: compare only runs of the same code.

The actual arrival at a stop is the first fix of the run of fixes inside the stop's arrival
circle that contains the van's own visit: the moment the tracker's ETA is defined for. At 10 and
30 minutes out, the prediction is the ETA held after the last fix at or before
``arrival - horizon``, if that fix is no more than ``TOLERANCE_S`` older and the tracker still
had the stop pending.

Prints how long the tracker took per fix, then, per horizon: the number of stops measured,
the median and p90 absolute error, the mean signed error (negative: the van came later than
predicted), and the error split into its dwell part (planned service still to come vs the
van's actual time at stops before the arrival) and its travel part (the rest), plus the p90
over predictions with no long dwell before the arrival.
The dwell part is the service time the tracker counted in the ETA (what it expected to be
left at the stop being served plus the stops before) against the van's actual time standing
at stops. The last line is one JSON object with the figures.

The ETA model learns first from ``--history`` routes of earlier days in the same city (other
seeds, the same simulator settings, fixes every ``--history-interval`` seconds): each is
followed by a tracker with the default prior, and what it saw of the route (dwells with their
stop locations, legs) goes to a ``FleetLearner``, as a gateway learns from its earlier routes.
From it come the fleet's prior (:class:`geofence.eta.EtaPrior`: pace, service times, the
shape of long dwells) and what each stop location showed (:class:`geofence.eta.SiteModel`: its
usual dwell and its long ones; ``--no-sites`` leaves that out). ``--history 0`` keeps the
default prior, as on a gateway's first day. Both are fixed for the day measured.

``--oracle-sites`` gives the tracker every stop's true dwell shape, read off the simulator,
instead of what the history showed of its location: the address's usual factor, the visit's
own spread, its chance of a long dwell and what one adds (the address's own extra and its
spread at a slow address, the chance ones' 300-900 s elsewhere). It is the most that learning
stop locations could give; what it leaves is the randomness of each visit (a usual dwell's
own spread, long dwells by chance, the slow addresses' visits that do not run long), of the
traffic and of the detours, which no model of the addresses can foresee.

``--breakdown`` splits each horizon's error by the long dwells before the arrival (none; one
under way when the prediction was made; one not yet begun then, which nothing the gateway sees
can foresee) and by the number of stops the van reached between prediction and arrival, each
with its dwell and driving parts. It ends with oracle bounds: the error left if everything but the
long dwells not yet begun were predicted exactly, first counting nothing for those, then with
the allowance a stop ahead (fitted here, on the outcome) that gives the lowest p90, then with
an allowance in proportion to each stop's chance of a long dwell as the simulator draws it
(the most a model could make of knowing each stop's chance, from its address and parcels).
An ETA model cannot do better than these without knowing which stops will run long. 10
minutes out they print 0 or close to it: a long dwell before the arrival has nearly always
begun by then (it lasts 5-15 minutes), so there is next to nothing unforeseen for them to
leave out; the split by long dwells under way says more there.

Run: ``.venv/bin/python bench/eta_accuracy.py [--vans N] [--seed N] [--interval S]
[--history N] [--history-interval S] [--no-sites] [--oracle-sites] [--breakdown]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# The repository root goes first so the packages are found even where an editable install
# recorded them as namespace packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import msgspec  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from geofence import (  # noqa: E402
    Route,
    RouteTracker,
    Stop,
    TrackerConfig,
    haversine_m,
)
from geofence.eta import (  # noqa: E402
    DwellShape,
    EtaPrior,
    FleetLearner,
    RouteObservations,
    SiteModel,
    site_key,
)
from simulator import DEFAULT_CENTER, City, Fix, Van, VanConfig  # noqa: E402
from simulator.vehicle import PLAN_SERVICE_BASE_S, PLAN_SERVICE_PER_PARCEL_S  # noqa: E402

DESCRIPTION: Final = "ETA error of the route tracker against actual arrival, simulated vans."
EPOCH: Final = 1_700_000_000.0  # a fixed start keeps runs identical
CITY_SIZE_M: Final = 4_000.0
WINDOW_S: Final = 30 * 60.0  # promised window, either side of the planned arrival
HORIZONS_MIN: Final = (10, 30)
TOLERANCE_S: Final = 60.0  # a prediction older than this before its horizon is not used
POLL_S: Final = 60.0  # clock step when collecting fixes; fixes keep their own times
ROUTE_START_LIMIT_S: Final = 3_600.0  # a van waits minutes at the depot; this guards a bug
ROUTE_LIMIT_S: Final = 8 * 3_600.0
HISTORY_SEEDS: Final = 50_000  # earlier days' vans are seeded from here on, after today's
# What the ETA model has learnt from by default: a month of a 40-van fleet's routes (8 stops
# each), about 10 visits to each of the city's 800-odd addresses. Their fixes come every 5 s,
# which tells dwells and legs to a few seconds and takes a fifth of the time.
HISTORY_ROUTES: Final = 1_000
HISTORY_INTERVAL_S: Final = 5.0
HISTORY_FLEET: Final = 40  # vans a day in the history

Floats = NDArray[np.float64]


@dataclass(slots=True)
class VanRun:
    """One van's route, the fixes the tracker saw and what the tracker held after each."""

    route: Route
    fix_ts: Floats  # (F,)
    etas: Floats  # (F, stops): NaN once the stop is no longer pending
    eta_dwell: Floats  # (F, stops): the service time the tracker counted in each ETA
    actual: Floats  # (stops,): entry into the arrival circle, NaN if never found
    visit_ts: Floats  # (stops,): the van's own arrival at the stop
    departed_ts: Floats  # (stops,): the van's own departure from the stop
    long_extra: Floats  # (stops,): what a long dwell added to the usual service; 0: none
    long_chance: Floats  # (stops,): the simulator's chance of a long dwell there
    observations: RouteObservations  # what the tracker saw of the route's dwells and legs
    update_s: float = 0.0  # time the tracker took over all the fixes (``update`` calls)


NO_LONG: Final = "none"
LONG_UNDER_WAY: Final = "under way"
LONG_AHEAD: Final = "not yet begun"


@dataclass(frozen=True, slots=True)
class Sample:
    """One prediction at one horizon, its error and the error's dwell part, in seconds."""

    horizon_min: int
    error_s: float  # predicted - actual
    dwell_error_s: float  # service counted by the tracker - actual time at stops
    long_dwell: str  # a long dwell before the arrival: NO_LONG, LONG_UNDER_WAY or LONG_AHEAD
    stops_before: int  # stops the van reached after the prediction and before the arrival
    unforeseen_s: float  # what long dwells at those stops added to their usual service
    chance_before: float  # the simulator's chances of a long dwell at those stops, summed


class TrueSites(SiteModel):
    """Every stop's true dwell shape, read off the simulator (``--oracle-sites``), for the
    stops of ``van``'s plan."""

    def __init__(self, van: Van, prior: EtaPrior) -> None:
        super().__init__({}, prior)
        self.van = van
        self.planned = {site_key(p.address.lat, p.address.lon): p for p in van.plan}

    def shape(self, key: str, planned_s: float) -> DwellShape:
        cfg = self.van.config
        stop = self.planned[key]
        factor = self.van.site_service_factor(stop.address)
        usual = planned_s * self.prior.service_ratio * factor
        extra = self.van.site_extra_s(stop.address) / cfg.time_scale
        if extra > 0:
            # A slow address: its own extra, spread a visit as the simulator spreads it (on
            # the whole dwell, with the usual part's own spread).
            spread = math.hypot(cfg.slow_site_spread * extra, cfg.service_sigma * usual)
            shape = DwellShape(long_extra_s=extra, long_sigma=spread / (usual + extra))
        else:
            lo, hi = (x / cfg.time_scale for x in cfg.long_dwell_s)
            n = 10  # the chance ones' uniform extra, as evenly spaced quantiles
            extras = tuple(lo + (hi - lo) * (i + 0.5) / n for i in range(n))
            shape = DwellShape(long_extra_s=(lo + hi) / 2, long_extras_s=extras)
        return msgspec.structs.replace(
            shape,
            sigma=cfg.service_sigma,
            usual_factor=factor,
            long_probability=self.van.long_dwell_chance(stop),
        )


def build_route(van: Van, city: City, van_id: str, radius_m: float) -> Route:
    """The tracker's view of the van's plan: stops, windows, service times, planned path."""
    node = city.depot
    path = None
    stops = []
    for p in van.plan:
        leg = city.shortest_path(node, p.address.node)
        path = leg if path is None else path.join(leg)
        node = p.address.node
        planned = van.epoch + p.planned_arrival_s / van.config.time_scale
        stops.append(
            Stop(
                id=f"s{p.index}",
                lat=p.address.lat,
                lon=p.address.lon,
                window_start=planned - WINDOW_S,
                window_end=planned + WINDOW_S,
                service_s=p.service_s / van.config.time_scale,
                planned_arrival=planned,
                arrival_radius_m=radius_m,
            )
        )
    if path is None:
        raise RuntimeError(f"{van_id} has an empty plan")
    return Route(id=f"route-{van_id}", vehicle_id=van_id, stops=tuple(stops), path=path.points)


def drive(van: Van, van_id: str) -> list[Fix]:
    """Advance ``van`` until it starts a route, then return its fixes up to leaving the last
    stop. Fixes from before the route are not returned: the route is not known then."""
    now = van.epoch
    while not van.plan:
        now += van.config.interval_s
        van.poll(now)
        if now - van.epoch > ROUTE_START_LIMIT_S:
            raise RuntimeError(f"{van_id} never started a route")
    n = len(van.plan)
    fixes: list[Fix] = []
    while len(van.visits) < n or van.visits[n - 1].departed_s is None:
        now += POLL_S
        fixes.extend(f for f in van.poll(now) if not f.outlier)
        if now - van.epoch > ROUTE_LIMIT_S:
            raise RuntimeError(f"{van_id} did not finish its route")
    return fixes


def run_van(
    city: City,
    config: VanConfig,
    seed: int,
    index: int,
    cfg: TrackerConfig,
    sites: SiteModel | None = None,
    epoch: float = EPOCH,
    oracle_sites: bool = False,
) -> VanRun:
    """Drive one van through its first route, starting its day at ``epoch``, and follow it
    with a tracker (knowing what ``sites`` learnt of the stops' locations, or with
    ``oracle_sites`` their true dwell shapes)."""
    van_id = f"van-{index}"
    van = Van(city, config, seed=seed, epoch=epoch)
    fixes = drive(van, van_id)
    if oracle_sites:
        sites = TrueSites(van, cfg.prior)
    route = build_route(van, city, van_id, cfg.arrival_radius_m)
    n = len(route.stops)
    index_of = {s.id: i for i, s in enumerate(route.stops)}

    tracker = RouteTracker(route, cfg, sites=sites)
    etas = np.full((len(fixes), n), np.nan)
    eta_dwell = np.full((len(fixes), n), np.nan)
    update_s = 0.0
    for k, f in enumerate(fixes):
        started = time.perf_counter()
        tracker.update(
            f.ts, f.lat, f.lon, speed_mps=f.speed, temp_c=f.temp_c, accuracy_m=f.accuracy
        )
        update_s += time.perf_counter() - started
        for sid, eta in tracker.etas().items():
            etas[k, index_of[sid]] = eta
        for sid, dwell in tracker.eta_dwell_s().items():
            eta_dwell[k, index_of[sid]] = dwell

    def wall(sim_s: float) -> float:
        return epoch + sim_s / config.time_scale

    visits = van.visits[:n]
    visit_ts = np.array([wall(v.arrived_s) for v in visits])
    departed_ts = np.array([wall(v.departed_s or v.arrived_s) for v in visits])
    fix_ts = np.array([f.ts for f in fixes])
    actual = np.array(
        [
            circle_entry(fixes, fix_ts, stop, float(t), cfg.arrival_radius_m)
            for stop, t in zip(route.stops, visit_ts, strict=True)
        ]
    )
    long_extra = np.array([v.long_extra_s / config.time_scale for v in visits])
    return VanRun(
        route,
        fix_ts,
        etas,
        eta_dwell,
        actual,
        visit_ts,
        departed_ts,
        long_extra,
        np.array([van.long_dwell_chance(v.stop) for v in visits]),
        tracker.observations(),
        update_s,
    )


def learn(city: City, config: VanConfig, seeds: list[int], cfg: TrackerConfig) -> FleetLearner:
    """The fleet learner that saw the routes of earlier days, followed with ``cfg``."""
    learner = FleetLearner(cfg.prior)
    for i, seed in enumerate(seeds):
        # HISTORY_FLEET vans a day, on the days before the one measured: each day has its own
        # traffic (the city's traffic field is a function of the time).
        day = i // HISTORY_FLEET + 1
        run = run_van(city, config, seed, i, cfg, epoch=EPOCH - day * 86_400.0)
        learner.observe(f"history-{i}", run.observations)
    return learner


def circle_entry(
    fixes: list[Fix], fix_ts: Floats, stop: Stop, visit_ts: float, radius_m: float
) -> float:
    """The first fix of the run of fixes inside the stop's circle that contains the visit.

    Passing through the circle earlier on the way to another stop does not count.
    """

    def inside(f: Fix) -> bool:
        return haversine_m(f.lat, f.lon, stop.lat, stop.lon) <= radius_m

    k = int(np.searchsorted(fix_ts, visit_ts, side="right")) - 1
    entry = math.nan
    while k >= 0 and inside(fixes[k]):
        entry = fixes[k].ts
        k -= 1
    if math.isnan(entry):
        # No fix inside at the visit itself (a dropout): the first one inside after it.
        k = int(np.searchsorted(fix_ts, visit_ts, side="left"))
        while k < len(fixes) and not inside(fixes[k]):
            k += 1
        if k < len(fixes):
            entry = fixes[k].ts
    return entry


def predictions(runs: list[VanRun]) -> tuple[list[Sample], dict[int, dict[str, int]]]:
    """Predictions at each horizon, and per horizon why stops could not be measured."""
    out: list[Sample] = []
    missing: dict[int, dict[str, int]] = {h: {} for h in HORIZONS_MIN}
    for run in runs:
        for i, arrival in enumerate(run.actual.tolist()):
            for h in HORIZONS_MIN:
                why = None
                k = int(np.searchsorted(run.fix_ts, arrival - h * 60, side="right")) - 1
                if math.isnan(arrival):
                    why = "no arrival found"
                elif k < 0:
                    why = "route started later"
                elif arrival - h * 60 - run.fix_ts[k] > TOLERANCE_S:
                    why = "no fix near the horizon"
                elif math.isnan(run.etas[k, i]):
                    why = "tracker no longer pending"
                if why is not None:
                    missing[h][why] = missing[h].get(why, 0) + 1
                    continue
                t = float(run.fix_ts[k])
                before = (run.visit_ts > t) & (run.visit_ts < arrival)
                long = run.long_extra > 0
                if np.any(long & before):
                    kind = LONG_AHEAD
                elif np.any(long & (run.visit_ts <= t) & (run.departed_ts > t)):
                    kind = LONG_UNDER_WAY
                else:
                    kind = NO_LONG
                out.append(
                    Sample(
                        horizon_min=h,
                        error_s=float(run.etas[k, i] - arrival),
                        dwell_error_s=float(run.eta_dwell[k, i]) - actual_dwell(run, t, i),
                        long_dwell=kind,
                        stops_before=int(before.sum()),
                        unforeseen_s=float(run.long_extra[before].sum()),
                        chance_before=float(run.long_chance[before].sum()),
                    )
                )
    return out, missing


def actual_dwell(run: VanRun, t: float, target: int) -> float:
    """Time the van actually spent at stops between ``t`` and its arrival at ``target``."""
    start = np.maximum(run.visit_ts, t)
    end = np.minimum(run.departed_ts, run.actual[target])
    return float(np.clip(end - start, 0.0, None).sum())


def summary(errors: list[float]) -> dict[str, float]:
    """Count, median and p90 of the absolute error and mean signed error, in seconds."""
    a = np.asarray(errors, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "median_s": math.nan, "p90_s": math.nan, "bias_s": math.nan}
    return {
        "n": int(a.size),
        "median_s": round(float(np.median(np.abs(a))), 1),
        "p90_s": round(float(np.percentile(np.abs(a), 90)), 1),
        "bias_s": round(float(np.mean(a)), 1),
    }


def _line(label: str, s: dict[str, float]) -> str:
    return (
        f"  {label:<24} n={s['n']:<4.0f} median {s['median_s']:5.0f} s ({s['median_s'] / 60:4.1f}"
        f" min)  p90 {s['p90_s']:5.0f} s ({s['p90_s'] / 60:4.1f} min)"
        f"  mean signed {s['bias_s']:+5.0f} s"
    )


def oracle_hedge(samples: list[Sample], per_chance: bool) -> tuple[float, dict[str, float]]:
    """The error left if everything but the long dwells not yet begun were known, with the
    allowance for them (a whole number of seconds a stop, or per unit of each stop's chance
    of a long dwell) that gives the lowest p90."""
    if per_chance:
        k = np.array([x.chance_before for x in samples])
        grid = range(0, 5_001, 25)
    else:
        k = np.array([x.stops_before for x in samples], dtype=np.float64)
        grid = range(0, 601, 5)
    u = np.array([x.unforeseen_s for x in samples])
    if k.size == 0:
        return 0.0, summary([])
    best = min(grid, key=lambda c: float(np.percentile(np.abs(c * k - u), 90)))
    return float(best), summary((best * k - u).tolist())


def breakdown(samples: list[Sample]) -> dict[str, Any]:
    """Print the error split by long dwells before the arrival and by stops before it, the
    dwell and driving parts of each, and the oracle bounds; return the figures."""
    out: dict[str, Any] = {}

    def show(label: str, group: list[Sample]) -> None:
        s = summary([x.error_s for x in group])
        dwell = summary([x.dwell_error_s for x in group])
        drive = summary([x.error_s - x.dwell_error_s for x in group])
        print(
            _line(label, s) + f"\n  {'':<24}   dwell part p90 {dwell['p90_s']:5.0f} s,"
            f" signed {dwell['bias_s']:+5.0f} s; driving part p90 {drive['p90_s']:5.0f} s,"
            f" signed {drive['bias_s']:+5.0f} s"
        )
        out[label] = {"all": s, "dwell_part": dwell, "travel_part": drive}

    for kind in (NO_LONG, LONG_UNDER_WAY, LONG_AHEAD):
        show(f"long dwell {kind}", [x for x in samples if x.long_dwell == kind])
    for n in sorted({x.stops_before for x in samples}):
        show(f"{n} stops before", [x for x in samples if x.stops_before == n])
    blind = summary([-x.unforeseen_s for x in samples])
    print(_line("oracle, no allowance", blind))
    c, hedged = oracle_hedge(samples, per_chance=False)
    print(_line(f"oracle, {c:.0f} s a stop", hedged))
    by_chance, knowing = oracle_hedge(samples, per_chance=True)
    print(_line(f"oracle, {by_chance:.0f} s x chance", knowing))
    out["oracle"] = {
        "no_allowance": blind,
        "allowance_s": c,
        "best_allowance": hedged,
        "allowance_per_chance_s": by_chance,
        "knowing_each_chance": knowing,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--vans", type=int, default=120, help="vans, one route each (120)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the city and the vans (1)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between fixes (1)")
    parser.add_argument(
        "--history",
        type=int,
        default=HISTORY_ROUTES,
        help=f"routes of earlier days the ETA model learns from ({HISTORY_ROUTES}; 0: none)",
    )
    parser.add_argument(
        "--history-interval",
        type=float,
        default=HISTORY_INTERVAL_S,
        help=f"seconds between the earlier routes' fixes ({HISTORY_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--no-sites",
        action="store_true",
        help="do not use what the history showed of each stop location (only the fleet's prior)",
    )
    parser.add_argument(
        "--oracle-sites",
        action="store_true",
        help="give the tracker every stop's true dwell shape from the simulator (a bound)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also split the error by long dwells and stops before the arrival, with oracle bounds",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.vans <= HISTORY_SEEDS or args.interval <= 0 or args.history < 0:
        parser.error(f"--vans must be 1-{HISTORY_SEEDS}, --interval positive, --history >= 0")
    if args.history_interval <= 0:
        parser.error("--history-interval must be positive")

    started = time.perf_counter()
    city = City.generate(DEFAULT_CENTER, seed=args.seed, size_m=CITY_SIZE_M)
    van_cfg = VanConfig(interval_s=args.interval)
    tracker_cfg = TrackerConfig()
    history = [args.seed * 100_003 + HISTORY_SEEDS + i for i in range(args.history)]
    sites: SiteModel | None = None
    if history:
        past_cfg = dataclasses.replace(van_cfg, interval_s=args.history_interval)
        learner = learn(city, past_cfg, history, tracker_cfg)
        tracker_cfg = msgspec.structs.replace(tracker_cfg, prior=learner.prior())
        if not args.no_sites:
            sites = learner.sites()
    runs = [
        run_van(
            city,
            van_cfg,
            args.seed * 100_003 + i,
            i,
            tracker_cfg,
            sites,
            oracle_sites=args.oracle_sites,
        )
        for i in range(args.vans)
    ]
    found, missing = predictions(runs)
    elapsed = time.perf_counter() - started

    n_stops = sum(len(r.route.stops) for r in runs)
    n_fixes = sum(len(r.fix_ts) for r in runs)
    per_fix_us = sum(r.update_s for r in runs) / max(n_fixes, 1) * 1e6
    print(
        f"{args.vans} vans, {n_stops} stops, {n_fixes:,} fixes every {args.interval:g} s,"
        f" {sum(int((r.long_extra > 0).sum()) for r in runs)} long dwells; {elapsed:.1f} s;"
        f" the tracker took {per_fix_us:.0f} us a fix"
    )
    prior = tracker_cfg.prior
    fewest, most = van_cfg.parcels
    planned = [PLAN_SERVICE_BASE_S + PLAN_SERVICE_PER_PARCEL_S * n for n in (fewest, most)]
    print(
        f"prior learnt from {args.history} routes of earlier days:" if history else "prior:",
        f"pace ratio {prior.pace_ratio:.3f} (trusting a route's own after {prior.pace_prior_s:.0f}"
        f" s), service ratio {prior.service_ratio:.3f} (a route's own weighed against"
        f" {prior.service_prior_stops:.1f} stops), dwell spread {prior.dwell.sigma:.2f},"
        f" long dwells adding {prior.dwell.long_extra_s:.0f} s (spread"
        f" {prior.dwell.long_sigma:.2f}) at "
        + ", ".join(
            f"{prior.dwell.long_chance(s):.1%} of stops planned at {s:.0f} s" for s in planned
        ),
    )
    if args.oracle_sites:
        print("sites: every stop's true dwell shape, from the simulator (--oracle-sites)")
    elif sites is not None:
        print(
            f"sites: visits remembered at {learner.site_count} stop locations; a site's own"
            f" visits weigh as much as the fleet's chance of a long dwell after"
            f" {sites.strength:.2f} visits, and its long dwells' extra after"
            f" {sites.extra_strength:.2f} of them (spread {sites.extra_sigma:.2f} a visit);"
            f" its usual dwell after {sites.usual_strength:.2f} usual visits (spread"
            f" {sites.usual_sigma:.2f} a visit)"
        )
    print("error = predicted - actual arrival (negative: the van came later than predicted)")
    result: dict[str, Any] = {
        "vans": args.vans,
        "seed": args.seed,
        "stops": n_stops,
        "history": args.history,
        "oracle_sites": args.oracle_sites,
        "prior": msgspec.to_builtins(prior),
        "sites": None
        if sites is None
        else {
            "locations": learner.site_count,
            "strength": sites.strength,
            "extra_strength": sites.extra_strength,
            "extra_sigma": sites.extra_sigma,
            "usual_strength": sites.usual_strength,
            "usual_sigma": sites.usual_sigma,
        },
    }
    for h in HORIZONS_MIN:
        at = [x for x in found if x.horizon_min == h]
        overall = summary([x.error_s for x in at])
        parts = {
            "dwell_part": summary([x.dwell_error_s for x in at]),
            "travel_part": summary([x.error_s - x.dwell_error_s for x in at]),
            "no_long_dwell": summary([x.error_s for x in at if x.long_dwell == NO_LONG]),
        }
        print(f"ETA {h} min out:")
        print(_line("all", overall))
        print(_line("dwell part of error", parts["dwell_part"]))
        print(_line("travel part of error", parts["travel_part"]))
        print(_line("no long dwell before", parts["no_long_dwell"]))
        if missing[h]:
            print("  not measured: " + ", ".join(f"{w} {c}" for w, c in sorted(missing[h].items())))
        if args.breakdown:
            result[f"breakdown_{h}min"] = breakdown(at)
        result[f"eta_{h}min"] = {
            "n": overall["n"],
            "median_s": overall["median_s"],
            "p90_s": overall["p90_s"],
            "bias_s": overall["bias_s"],
            **{name: {"p90_s": s["p90_s"], "bias_s": s["bias_s"]} for name, s in parts.items()},
            "not_measured": missing[h],
        }
    result["tracker_us_per_fix"] = round(per_fix_us, 1)
    result["elapsed_s"] = round(elapsed, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
