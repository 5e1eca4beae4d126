"""The ETA models: pace against the plan, learnt service times, remaining dwell."""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec
import numpy as np
import pytest

from geofence import (
    DwellShape,
    LocalFrame,
    Route,
    RouteTracker,
    ServiceModel,
    SpeedModel,
    Stop,
    TrackerConfig,
    remaining_dwell_s,
)
from geofence.eta import (
    AllowanceModel,
    EtaPrior,
    FleetLearner,
    RouteObservations,
    SiteModel,
    site_key,
)

T0 = 1_700_000_000.0
FRAME = LocalFrame(52.0, 13.0)


def test_pace_counts_standstills_in_traffic_and_forgets_nothing_within_the_half_life() -> None:
    # Planned at 10 m/s; the van drives 20 s at 10 m/s, then stands 10 s at a light.
    model = SpeedModel(10.0, half_life_s=1e9, prior_s=1e-9)
    for t in range(0, 301):
        model.update(T0 + t, 10.0 if t % 30 < 20 else 0.0)
    # 300 s of driving covered 2,000 m: planned 200 s, so 1.5 times the planned time.
    assert model.ratio() == pytest.approx(300 / 200, rel=0.02)
    assert model.speed_mps() == pytest.approx(10.0 / 1.5, rel=0.02)


def test_pace_leaves_out_service_and_trusts_the_plan_at_first() -> None:
    model = SpeedModel(10.0, half_life_s=1e9, prior_s=600.0)
    assert model.ratio() == 1.0
    for t in range(0, 601):
        model.update(T0 + t, 5.0, driving=t < 300)  # half as fast, then serving a stop
    # Only the 300 s of driving count: observed ratio 2, trusted 1 - exp(-0.5).
    w = 1 - math.exp(-0.5)
    assert model.ratio() == pytest.approx(w * 2.0 + (1 - w), rel=0.01)


def test_remaining_dwell_shrinks_while_usual_then_grows_once_it_runs_long() -> None:
    shape = DwellShape(sigma=0.3, long_probability=0.1, long_extra_s=600.0, long_sigma=0.4)
    rest = {e: remaining_dwell_s(e, 200.0, shape) for e in (0, 100, 200, 300, 400, 800)}
    assert 190 < rest[0] < 230  # about the usual dwell
    assert rest[0] > rest[100] > rest[200]  # it shrinks while the dwell looks usual ...
    assert rest[300] > rest[200] and rest[400] > 250  # ... and grows past its usual spread
    assert rest[800] < rest[400]  # a long dwell also ends some time
    exact = DwellShape(sigma=0.0, long_probability=0.0)
    assert remaining_dwell_s(150.0, 200.0, exact) == pytest.approx(50.0, abs=0.5)
    assert remaining_dwell_s(10.0, 0.0, shape) == 0.0


def test_service_times_are_learnt_from_usual_dwells_only() -> None:
    model = ServiceModel([100.0, 200.0, 0.0], EtaPrior(service_prior_stops=2.0))
    assert model.expected().tolist() == [100.0, 200.0, 0.0]
    model.observe(100.0, 150.0)
    model.observe(100.0, 900.0)  # a long dwell: says nothing of the usual one
    model.observe(200.0, 300.0)
    # Two usual dwells at 1.5 times the plan, shrunk towards 1 by two prior stops.
    ratio = math.exp(math.log(1.5) * 2 / 4)
    assert model.ratio() == pytest.approx(ratio)
    assert model.expected()[:2] == pytest.approx([100.0 * ratio, 200.0 * ratio])
    restored = ServiceModel([100.0, 200.0, 0.0])
    restored.restore(model.export())
    assert restored.ratio() == model.ratio()


def _stop(i: int, north_m: float, planned: float | None, service_s: float = 0.0) -> Stop:
    lat, lon = FRAME.latlon(0.0, north_m)
    return Stop(
        id=f"s{i}",
        lat=lat,
        lon=lon,
        window_start=T0,
        window_end=T0 + 1e5,
        service_s=service_s,
        planned_arrival=planned,
    )


def test_each_leg_is_driven_at_its_planned_pace() -> None:
    # Stops 1 km apart on a straight path; the plan drives leg 1 at 10 m/s, leg 2 at 5 m/s.
    stops = (
        _stop(0, 1000.0, T0 + 100.0, service_s=60.0),
        _stop(1, 2000.0, T0 + 100.0 + 60.0 + 100.0),
        _stop(2, 3000.0, T0 + 100.0 + 60.0 + 100.0 + 200.0),
    )
    path = tuple(FRAME.latlon(0.0, y) for y in range(0, 3001, 100))
    route = Route(id="r", vehicle_id="v", stops=stops, path=path)
    cfg = TrackerConfig(
        arrival_radius_m=50.0, prior=EtaPrior(dwell=DwellShape(sigma=0.0, long_probability=0.0))
    )
    tracker = RouteTracker(route, cfg)
    tracker.update(T0, *FRAME.latlon(0.0, 0.0), speed_mps=0.0)
    eta = tracker.etas()
    # The first leg has no planned start: it takes the route's median planned pace (0.15 s/m).
    first = (1000.0 - 50.0) * 0.15
    assert eta["s0"] - T0 == pytest.approx(first, abs=0.5)
    assert eta["s1"] - eta["s0"] == pytest.approx(60.0 + 100.0, abs=0.5)
    assert eta["s2"] - eta["s1"] == pytest.approx(200.0, abs=0.5)


def test_a_stray_fix_during_a_dwell_does_not_end_it() -> None:
    route = Route(id="r", vehicle_id="v", stops=(_stop(0, 0.0, None, 120.0), _stop(1, 900, None)))
    tracker = RouteTracker(route)
    here = FRAME.latlon(0.0, 0.0)
    tracker.update(T0, *here, speed_mps=0.0, accuracy_m=5.0)
    assert tracker.stop_status("s0") == "arrived"
    stray = FRAME.latlon(120.0, 0.0)
    tracker.update(T0 + 30, *stray, speed_mps=0.0, accuracy_m=120.0)
    assert tracker.stop_status("s0") == "arrived"
    tracker.update(T0 + 60, *here, speed_mps=0.0, accuracy_m=5.0)
    assert tracker.still_s[0] == 60.0  # standing there all along


def test_pace_and_service_start_at_the_prior_ratios() -> None:
    model = SpeedModel(10.0, half_life_s=1e9, prior_s=600.0, prior_ratio=1.25)
    assert model.ratio() == 1.25
    for t in range(0, 301):
        model.update(T0 + t, 5.0)  # twice as slow as planned
    w = 1 - math.exp(-0.5)
    assert model.ratio() == pytest.approx(w * 2.0 + (1 - w) * 1.25, rel=0.01)

    service = ServiceModel([100.0], EtaPrior(service_ratio=1.2, service_prior_stops=2.0))
    assert service.ratio() == pytest.approx(1.2)
    service.observe(100.0, 150.0)
    service.observe(100.0, 150.0)
    # The route's own median (1.5) weighed against two stops at the prior's 1.2.
    assert service.ratio() == pytest.approx(math.exp((math.log(1.5) + math.log(1.2)) / 2))


def _fleet(
    rng: np.random.Generator,
    routes: int,
    route_sigma: float,
    stops: int = 10,
    odds_power: float = 0.0,
) -> FleetLearner:
    """Routes whose dwells are 1.1 times a plan of 100-300 s (spread 0.25; each route off by
    ``route_sigma`` more), and at 10 % of stops 500 s longer (spread 0.2; at stops planned at
    200 s, the odds growing as the plan to ``odds_power``); legs take 0.9 of their plan
    (spread 0.2, each route off by ``route_sigma``)."""
    learner = FleetLearner()
    for r in range(routes):
        off = rng.normal(0.0, route_sigma) if route_sigma else 0.0
        planned = rng.uniform(100.0, 300.0, stops)
        usual = planned * 1.1 * np.exp(off + rng.normal(0.0, 0.25, stops))
        odds = 0.1 / 0.9 * (planned / 200.0) ** odds_power
        long = rng.random(stops) < odds / (1.0 + odds)
        extra = long * 500.0 * np.exp(rng.normal(0.0, 0.2, stops))
        legs = rng.uniform(60.0, 400.0, stops)
        actual = legs * 0.9 * np.exp(off + rng.normal(0.0, 0.2, stops))
        learner.observe(
            f"r{r}",
            RouteObservations(
                dwells=tuple(zip(planned.tolist(), (usual + extra).tolist(), strict=True)),
                legs=tuple(zip(legs.tolist(), actual.tolist(), strict=True)),
            ),
        )
    return learner


def test_fleet_learner_fits_the_dwell_mixture_and_the_typical_pace() -> None:
    prior = _fleet(np.random.default_rng(7), routes=100, route_sigma=0.0).prior()
    assert prior.service_ratio == pytest.approx(1.1, rel=0.03)
    assert prior.dwell.sigma == pytest.approx(0.25, abs=0.02)
    assert prior.dwell.long_probability == pytest.approx(0.1, abs=0.02)
    assert prior.dwell.long_extra_s == pytest.approx(500.0, rel=0.1)
    assert prior.pace_ratio == pytest.approx(0.9, rel=0.03)
    assert abs(prior.dwell.long_odds_power) < 0.7  # the same chance at every stop
    # Routes all alike: a route is held to the fleet, its own ten stops and legs weigh little.
    assert prior.service_prior_stops > 30.0
    assert prior.pace_prior_s > 30.0 * 230.0


def test_fleet_learner_lets_routes_that_differ_speak_for_themselves() -> None:
    # Routes off by 0.25 from each other, dwells spread 0.25 within a route: a route's own
    # median is worth as much as the fleet's after about one stop (0.25² / 0.25²).
    prior = _fleet(np.random.default_rng(8), routes=200, route_sigma=0.25).prior()
    assert 0.6 < prior.service_prior_stops < 1.6
    # Legs spread 0.2 within a route: about 0.64 legs of about 230 s.
    assert 0.6 * 0.64 * 230.0 < prior.pace_prior_s < 1.6 * 0.64 * 230.0


def test_fleet_learner_keeps_its_base_until_enough_routes_and_only_the_latest() -> None:
    base = EtaPrior(pace_ratio=1.3, service_ratio=0.8)
    learner = FleetLearner(base, max_routes=6, min_routes=5)
    seen = RouteObservations(dwells=((100.0, 100.0),) * 3, legs=((100.0, 100.0),) * 3)
    for r in range(4):
        learner.observe(f"r{r}", seen)
    learner.observe("r0", seen)  # the same route again: still four routes
    assert len(learner) == 4 and learner.prior() == base
    learner.observe("r4", seen)
    assert learner.prior().pace_ratio == 1.0 and learner.prior().service_ratio == 1.0
    for r in range(5, 9):
        learner.observe(f"r{r}", seen)
    assert len(learner) == 6


def test_fleet_learner_finds_where_long_dwells_are_likelier() -> None:
    prior = _fleet(np.random.default_rng(9), routes=150, route_sigma=0.0, odds_power=3.0).prior()
    shape = prior.dwell
    assert shape.long_odds_power == pytest.approx(3.0, abs=1.0)
    assert shape.long_chance(200.0) == pytest.approx(0.1, abs=0.025)
    # Each stop's own chance, for its remaining dwell and its learning.
    service = ServiceModel([100.0, 300.0], prior)
    at = service.shapes
    assert at[0].long_probability == shape.long_chance(100.0) < 0.04
    assert at[1].long_probability == shape.long_chance(300.0) > 0.2
    expected = float(service.expected()[1])
    assert service.remaining(1, 500.0) == remaining_dwell_s(500.0, expected, at[1])
    assert service.remaining(1, 500.0) != remaining_dwell_s(500.0, expected, at[0])


def test_long_chance_follows_the_odds() -> None:
    shape = DwellShape(long_probability=0.2, long_reference_s=100.0, long_odds_power=2.0)
    assert shape.long_chance(100.0) == pytest.approx(0.2)
    assert shape.long_chance(200.0) == pytest.approx(1.0 / (1.0 + 1.0))  # odds 0.25 * 4
    assert shape.at(50.0) == DwellShape(long_probability=1 / 17, long_reference_s=100.0)
    assert DwellShape(long_probability=0.2).long_chance(500.0) == 0.2  # no reference


def test_remaining_dwell_of_a_long_one_follows_the_fleets_quantiles_of_the_extra() -> None:
    # Long dwells add 300-900 s, evenly spread: 700 s into a stop whose usual dwell is 100 s,
    # the extra is past 600 s, so half of what is left of it (750 s) is about 150 s to come.
    even = tuple(330.0 + 60.0 * k for k in range(10))
    shape = DwellShape(sigma=0.1, long_probability=0.5, long_extras_s=even)
    assert 110.0 < remaining_dwell_s(700.0, 100.0, shape) < 190.0
    # A log-normal extra of the same median would say the dwell is nearly over.
    lognormal = DwellShape(sigma=0.1, long_probability=0.5, long_extra_s=600.0, long_sigma=0.1)
    assert remaining_dwell_s(700.0, 100.0, lognormal) < 60.0
    with pytest.raises(ValueError):
        DwellShape(long_extras_s=(600.0, 300.0))


def test_fleet_learner_finds_the_shape_of_long_dwells_and_how_often_they_come() -> None:
    # Dwells 1.1 times a plan of 100-300 s (spread 0.25), and at 10 % of stops 300-900 s
    # longer, evenly spread: a log-normal extra would take the short ones for usual dwells.
    rng = np.random.default_rng(11)
    learner = FleetLearner()
    for r in range(60):
        planned = rng.uniform(100.0, 300.0, 10)
        usual = planned * 1.1 * np.exp(rng.normal(0.0, 0.25, 10))
        extra = (rng.random(10) < 0.1) * rng.uniform(300.0, 900.0, 10)
        dwells = tuple(zip(planned.tolist(), (usual + extra).tolist(), strict=True))
        learner.observe(f"r{r}", RouteObservations(dwells=dwells))
    shape = learner.prior().dwell
    extras = shape.long_extras_s
    assert len(extras) == 10 and list(extras) == sorted(extras)
    assert extras[0] < 420.0 and extras[-1] > 780.0
    assert extras[4] == pytest.approx(600.0, abs=90.0)
    assert shape.long_chance(200.0) == pytest.approx(0.1, abs=0.03)


def long_dwell_allowance(
    leads_s: list[float], shapes: list[DwellShape], usual_s: list[float], tolerance: float
) -> np.ndarray:
    """The allowances for remaining stops ``shapes`` in order, ``leads_s`` ahead."""
    model = AllowanceModel(shapes, usual_s, tolerance)
    return model.allowance(np.arange(len(shapes), dtype=np.intp), leads_s)


def test_far_out_etas_allow_for_long_dwells_at_the_stops_before_near_ones_do_not() -> None:
    shape = DwellShape(
        long_probability=0.1, long_extras_s=tuple(330.0 + 60.0 * k for k in range(10))
    )
    shapes, usual = [shape] * 4, [200.0] * 4
    near = long_dwell_allowance([300.0, 600.0], shapes, usual, 0.3)
    assert near.tolist() == [0.0, 0.0]  # a long dwell's extra is beyond 30 % of 10 minutes
    far = long_dwell_allowance([300.0, 900.0, 1500.0, 2100.0], shapes, usual, 0.3)
    assert far[0] == 0.0 and 0.0 < far[2] < far[3] < 600.0  # more stops, more room
    never = [msgspec.structs.replace(shape, long_probability=0.0)] * 2
    assert long_dwell_allowance([300.0, 2100.0], never, usual[:2], 0.3).tolist() == [0.0, 0.0]
    assert not long_dwell_allowance([300.0, 2100.0], shapes, usual, 0.0).any()


def test_a_stop_ahead_that_nearly_always_runs_long_has_its_extra_counted_even_near() -> None:
    # The stop before the next one is a site where 9 visits in 10 run about 600 s long.
    slow = DwellShape(long_probability=0.9, long_extra_s=600.0, long_sigma=0.1)
    usual = DwellShape(long_probability=0.02, long_extra_s=600.0, long_sigma=0.1)
    allowance = long_dwell_allowance([300.0, 1200.0], [slow, usual], [200.0, 200.0], 0.3)
    assert allowance[0] == 0.0
    assert allowance[1] == pytest.approx(600.0, abs=60.0)
    # The same lead behind an ordinary stop gets nothing.
    plain = long_dwell_allowance([300.0, 1200.0], [usual, usual], [200.0, 200.0], 0.3)
    assert plain.tolist() == [0.0, 0.0]
    # Two slow stops ahead add up (not each counted once).
    two = long_dwell_allowance([300.0, 900.0, 2400.0], [slow, slow, usual], [200.0] * 3, 0.3)
    assert two[2] == pytest.approx(1200.0, abs=120.0)


def _site_history(
    rng: np.random.Generator, routes: int, slow: dict[str, float], sites: list[str]
) -> FleetLearner:
    """Routes of 8 stops at random sites: usual dwells 1.0 times a plan of 150 s (spread 0.25);
    at the ``slow`` sites 9 visits in 10 are longer by the site's extra (spread 0.1), elsewhere
    1 in 50 by 300-900 s."""
    learner = FleetLearner()
    for r in range(routes):
        keys = rng.choice(sites, 8, replace=False).tolist()
        dwells = []
        for key in keys:
            dwell = 150.0 * math.exp(rng.normal(0.0, 0.25))
            if key in slow and rng.random() < 0.9:
                dwell += slow[key] * math.exp(rng.normal(0.0, 0.1))
            elif key not in slow and rng.random() < 0.02:
                dwell += rng.uniform(300.0, 900.0)
            dwells.append((150.0, dwell))
        learner.observe(f"r{r}", RouteObservations(dwells=tuple(dwells), sites=tuple(keys)))
    return learner


def test_site_model_learns_which_locations_run_long_and_by_how_much() -> None:
    rng = np.random.default_rng(5)
    sites = [site_key(48.0 + i * 1e-3, 11.0) for i in range(100)]
    slow = {sites[i]: 300.0 + 60.0 * i for i in range(10)}  # 300-840 s, each its own
    learner = _site_history(rng, 200, slow, sites)
    model = learner.sites()
    assert 0.0 < model.strength < 5.0  # sites differ: a few visits already count
    ordinary = []
    for key in sites:
        shape = model.shape(key, 150.0)
        if key in slow:
            assert shape.long_probability > 0.7
            assert shape.long_extra_s == pytest.approx(slow[key], rel=0.15)
            assert not shape.long_extras_s  # its own extra, not the fleet's quantiles
        else:
            ordinary.append(shape.long_probability)
    # An ordinary site that happened to run long once or twice is not taken for a slow one.
    assert float(np.mean(ordinary)) < 0.04 and max(ordinary) < 0.2
    # A site never visited keeps the fleet's shape; so does every site if routes carry no sites.
    assert model.shape(site_key(10.0, 10.0), 150.0) == learner.prior().dwell.at(150.0)
    bare = FleetLearner()
    for rid, (dwells, _) in learner._routes.items():
        bare.observe(rid, RouteObservations(dwells=tuple(dwells.values())))
    assert bare.site_count == 0
    assert bare.sites().shape(sites[0], 150.0) == bare.prior().dwell.at(150.0)


@pytest.mark.parametrize("strength", [1e-6, 0.5, 4.0])
def test_a_slow_sites_extra_is_as_uncertain_as_its_few_visits_leave_it(strength: float) -> None:
    # A site seen once, 600 s long. Its next long visit's extra spreads by one visit's spread
    # (0.2) and by what one visit leaves unknown of the site's own mean: a random-effects
    # posterior, 0.2 / sqrt(1 + strength). Where sites differ wildly (strength near 0), the one
    # visit is all there is to go on, so the spread is 0.2 * sqrt(2), not 0.2.
    key = site_key(48.0, 11.0)
    prior = EtaPrior(dwell=DwellShape(sigma=0.02, long_probability=0.1))
    model = SiteModel(
        {key: {"r1": (150.0, 750.0)}},
        prior,
        strength=1.0,
        extra_center=math.log(600.0),
        extra_strength=strength,
        extra_sigma=0.2,
    )
    shape = model.shape(key, 150.0)
    assert shape.long_extra_s == pytest.approx(600.0, rel=1e-6)
    usual = 150.0 * prior.service_ratio
    extra_sd = math.sqrt(
        (shape.long_sigma * (usual + shape.long_extra_s)) ** 2 - (0.02 * usual) ** 2
    )
    assert extra_sd / shape.long_extra_s == pytest.approx(
        0.2 * math.sqrt(1.0 + 1.0 / (1.0 + strength)), rel=1e-3
    )


def _visits(
    rng: np.random.Generator, routes: int, sites: list[str], dwell: Callable[[str], float]
) -> FleetLearner:
    """Routes of 8 stops at random ``sites``, each planned at 150 s and taking ``dwell(site)``."""
    learner = FleetLearner()
    for r in range(routes):
        keys = rng.choice(sites, 8, replace=False).tolist()
        dwells = tuple((150.0, dwell(key)) for key in keys)
        learner.observe(f"r{r}", RouteObservations(dwells=dwells, sites=tuple(keys)))
    return learner


def test_site_model_gives_sites_no_say_where_long_dwells_come_by_chance() -> None:
    # Every site alike: 1 visit in 10 runs long, wherever.
    rng = np.random.default_rng(6)
    sites = [site_key(48.0 + i * 1e-3, 11.0) for i in range(100)]
    learner = _visits(
        rng,
        200,
        sites,
        lambda _: 150.0 * math.exp(rng.normal(0.0, 0.25)) + (rng.random() < 0.1) * 600.0,
    )
    model = learner.sites()
    fleet = learner.prior().dwell.at(150.0).long_probability
    chances = [model.shape(key, 150.0).long_probability for key in sites]
    assert max(chances) < 0.3 and min(chances) > 0.03
    assert float(np.mean(chances)) == pytest.approx(fleet, abs=0.03)


def test_site_visits_are_kept_per_route_and_bounded() -> None:
    learner = FleetLearner(max_sites=3)
    key = site_key(48.1, 11.5)
    for step in range(1, 4):  # the same route seen growing: its visit counts once
        learner.observe("r1", RouteObservations(dwells=((100.0, 90.0 + step),), sites=(key,)))
    assert learner._sites[key] == {"r1": (100.0, 93.0)}
    for i in range(25):
        learner.observe(f"s{i}", RouteObservations(dwells=((100.0, 100.0),), sites=(key,)))
    assert len(learner._sites[key]) == 10  # the latest visits
    assert "r1" not in learner._sites[key]
    for i in range(4):
        other = site_key(40.0 + i, 10.0)
        learner.observe(f"t{i}", RouteObservations(dwells=((100.0, 100.0),), sites=(other,)))
    assert learner.site_count == 3 and key not in learner._sites  # least recently visited
    # Dwells and sites that do not pair up are not taken as site visits.
    learner.observe("u", RouteObservations(dwells=((100.0, 100.0),) * 2, sites=(key,)))
    assert key not in learner._sites


def test_tracker_etas_and_counted_dwell_include_the_allowance() -> None:
    # Stops 2 km apart on a straight path at 10 m/s, 200 s of service each.
    stops = tuple(_stop(i, 2000.0 * (i + 1), None, service_s=200.0) for i in range(5))
    path = tuple(FRAME.latlon(0.0, y) for y in range(0, 10_001, 100))
    route = Route(id="r", vehicle_id="v", stops=stops, path=path)
    prior = EtaPrior(dwell=DwellShape(sigma=0.1, long_probability=0.15))
    etas, dwells = [], []
    for share in (0.0, 0.3):
        cfg = TrackerConfig(typical_speed_mps=10.0, eta_tolerance_share=share, prior=prior)
        tracker = RouteTracker(route, cfg)
        tracker.update(T0, *FRAME.latlon(0.0, 0.0), speed_mps=10.0)
        etas.append(tracker.etas())
        dwells.append(tracker.eta_dwell_s())
    added = {s: etas[1][s] - etas[0][s] for s in etas[0]}
    assert added["s0"] == added["s1"] == 0.0  # the first stop ahead, then 10 minutes out
    assert 0.0 < added["s3"] < added["s4"]
    assert dwells[1]["s4"] - dwells[0]["s4"] == pytest.approx(added["s4"])


def test_tracker_counts_a_known_slow_site_ahead_and_reports_the_sites_it_visited() -> None:
    # Stops 2 km apart at 10 m/s, 150 s of service each; the fleet has seen stop s1's site run
    # about 600 s long on each of its visits.
    stops = tuple(_stop(i, 2000.0 * (i + 1), None, service_s=150.0) for i in range(4))
    path = tuple(FRAME.latlon(0.0, y) for y in range(0, 8_001, 100))
    route = Route(id="r", vehicle_id="v", stops=stops, path=path)
    rng = np.random.default_rng(8)
    others = [site_key(40.0 + i * 1e-3, 10.0) for i in range(60)]
    slow_key = site_key(stops[1].lat, stops[1].lon)
    learner = _site_history(rng, 150, {slow_key: 600.0, others[0]: 600.0}, [slow_key, *others])
    cfg = TrackerConfig(typical_speed_mps=10.0, prior=learner.prior())
    plain = RouteTracker(route, cfg)
    knowing = RouteTracker(route, cfg, sites=learner.sites())
    for t in (plain, knowing):
        t.update(T0, *FRAME.latlon(0.0, 0.0), speed_mps=10.0)
    added = {s: knowing.etas()[s] - plain.etas()[s] for s in plain.etas()}
    assert added["s0"] == added["s1"] == 0.0  # nothing long before them
    assert added["s2"] == pytest.approx(600.0, abs=120.0)  # s1's long dwell, 8 minutes out
    assert added["s3"] == pytest.approx(added["s2"], abs=120.0)
    # While the van stands at s1, what is left of its dwell counts the site's extra at once.
    for t in (plain, knowing):
        for k in range(0, 200, 5):
            t.update(T0 + 400.0 + k, *FRAME.latlon(0.0, 4000.0), speed_mps=0.0)
    assert knowing.etas()["s2"] - plain.etas()["s2"] > 400.0
    # Leaving s1, the tracker reports the dwell with its site; a restored tracker keeps it.
    for t in (plain, knowing):
        t.update(T0 + 1200.0, *FRAME.latlon(0.0, 4300.0), speed_mps=10.0)
    seen = knowing.observations()
    assert seen.sites == (slow_key,) and len(seen.dwells) == 1
    again = RouteTracker.from_state(route, knowing.export_state(), cfg, sites=learner.sites())
    assert again.observations() == seen


def test_learner_refits_after_enough_new_observations_and_counts_site_visits_at_once() -> None:
    slow_key, other = site_key(48.0, 11.0), site_key(48.1, 11.0)
    learner = FleetLearner(min_routes=1, refit_after=3)
    fast = RouteObservations(dwells=((100.0, 100.0),) * 4, legs=((100.0, 100.0),) * 4)
    learner.observe("r0", fast)
    first = learner.prior()
    assert first.pace_ratio == pytest.approx(1.0)
    slow = RouteObservations(dwells=((100.0, 100.0),) * 4, legs=((100.0, 200.0),) * 4)
    learner.observe("r1", slow)
    learner.observe("r2", slow)
    assert learner.prior() is first  # two new routes: not fitted again yet
    learner.observe("r3", slow)
    assert learner.prior().pace_ratio > 1.5  # the third: fitted again
    # Dwells reported one by one (from the stream) have their sites remembered at once and
    # count towards the next refit like routes.
    model = learner.sites()
    learner.observe_dwell("v1", 0, 100.0, 100.0, site=other)
    learner.observe_dwell("v2", 0, 100.0, 700.0, site=slow_key)
    assert learner.site_count == 2 and learner.sites() is model
    learner.observe_dwell("v3", 0, 100.0, 700.0, site=slow_key)
    assert learner.sites() is not model


def test_learning_one_dwell_and_leg_at_a_time_equals_learning_whole_routes() -> None:
    rng = np.random.default_rng(3)
    whole, parts = FleetLearner(), FleetLearner()
    for r in range(30):
        planned = rng.uniform(100.0, 300.0, 6)
        dwells = tuple(
            zip(planned.tolist(), (planned * np.exp(rng.normal(0, 0.3, 6))).tolist(), strict=True)
        )
        legs = tuple((p, p * float(rng.uniform(0.8, 1.6))) for p in rng.uniform(60, 400, 5))
        keys = tuple(site_key(48.0 + k * 1e-3, 11.0) for k in rng.choice(20, 6, replace=False))
        whole.observe(f"r{r}", RouteObservations(dwells=dwells, legs=legs, sites=keys))
        # Each stop as the van leaves it, each leg as it arrives; some said twice (a
        # stream read again), which changes nothing.
        for i in range(6):
            parts.observe_dwell(f"r{r}", i, *dwells[i], site=keys[i])
            if i:
                parts.observe_leg(f"r{r}", i, *legs[i - 1])
        parts.observe_dwell(f"r{r}", 2, *dwells[2], site=keys[2])
        parts.observe_leg(f"r{r}", 3, *legs[2])
    assert len(parts) == len(whole) == 30
    assert parts.site_count == whole.site_count
    assert parts.prior() == whole.prior()
    assert parts._sites == whole._sites
    # Keeping only the latest routes drops the oldest one's dwells and legs together.
    few = FleetLearner(max_routes=2)
    for r in range(3):
        few.observe_dwell(f"r{r}", 0, 100.0, 100.0)
        few.observe_leg(f"r{r}", 1, 100.0, 120.0)
    assert len(few) == 2 and "r0" not in few._routes


def test_site_model_learns_each_locations_usual_dwell() -> None:
    # 100 sites, each with its own usual factor (spread 0.3); one visit's spread 0.15.
    rng = np.random.default_rng(7)
    sites = [site_key(48.0 + i * 1e-3, 11.0) for i in range(100)]
    factor = {key: math.exp(rng.normal(0.0, 0.3)) for key in sites}
    learner = _visits(rng, 150, sites, lambda k: 150.0 * factor[k] * math.exp(rng.normal(0, 0.15)))
    model = learner.sites()
    assert model.usual_sigma == pytest.approx(0.15, rel=0.2)
    # About 12 visits a site, against a strength of 0.15^2 / 0.3^2 = 0.25: mostly their own.
    assert 0.1 < model.usual_strength < 0.6
    learnt = np.log([model.shape(key, 150.0).usual_factor for key in sites])
    truth = np.log([factor[key] for key in sites])
    fleet = math.log(learner.prior().service_ratio)
    assert float(np.std(learnt + fleet - truth)) < 0.08
    # A site's usual dwells spread by one visit's spread (and a little for what is unknown).
    assert model.shape(sites[0], 150.0).sigma == pytest.approx(0.15, rel=0.25)
    # The tracker counts the site's usual dwell.
    stop = _stop(0, 1000.0, None, service_s=150.0)
    at = Stop(**{**msgspec.structs.asdict(stop), "lat": 48.0, "lon": 11.0})
    tracker = RouteTracker(Route(id="r", vehicle_id="v", stops=(at,)), sites=model)
    assert tracker.service.expected()[0] == pytest.approx(
        150.0 * tracker.service.ratio() * model.shape(sites[0], 150.0).usual_factor
    )


def test_site_model_gives_usual_dwells_no_say_where_sites_do_not_differ() -> None:
    rng = np.random.default_rng(8)
    sites = [site_key(48.0 + i * 1e-3, 11.0) for i in range(100)]
    learner = _visits(rng, 150, sites, lambda _: 150.0 * math.exp(rng.normal(0.0, 0.3)))
    model = learner.sites()
    factors = [model.shape(key, 150.0).usual_factor for key in sites]
    assert max(abs(math.log(f)) for f in factors) < 0.1
