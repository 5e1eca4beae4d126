import dataclasses
import math
import statistics

import pytest

from simulator.city import City
from simulator.traffic import FREE_FLOW, TrafficConfig, TrafficField
from simulator.vehicle import Van, VanConfig

CENTER = (48.1374, 11.5755)
QUIET = VanConfig(
    outlier_probability=0.0,
    dropout_probability=0.0,
    poor_accuracy_probability=0.0,
    initial_wait_s=(0.0, 0.0),
    detour_probability=0.0,
    long_dwell_probability=(0.0, 0.0),
    slow_site_share=0.0,
)


def test_the_field_is_a_function_of_seed_place_and_time() -> None:
    a, b, c = TrafficField(3), TrafficField(3), TrafficField(4)
    points = [
        (x, y, t) for x in (-1500.0, 0.0, 900.0) for y in (-700.0, 1200.0) for t in (0.0, 5e3)
    ]
    # Asked in another order, or by another object with the same seed: the same levels.
    assert [a.factor(*p) for p in points] == [b.factor(*p) for p in reversed(points)][::-1]
    assert [a.factor(*p) for p in points] != [c.factor(*p) for p in points]


def test_levels_follow_their_shares_and_stay_within_their_ranges() -> None:
    field = TrafficField(1)
    levels = [field.level(i, j, k) for i in range(-5, 5) for j in range(-5, 5) for k in range(40)]
    assert all(0.3 <= v <= 1.0 for v in levels)
    jammed = sum(v < 0.55 for v in levels) / len(levels)
    free = sum(v >= 0.85 for v in levels) / len(levels)
    assert 0.07 < jammed < 0.13  # 10 % of knots are jams
    assert 0.6 < free < 0.7  # 65 % free flow


def test_the_field_is_continuous_and_congestion_lasts() -> None:
    field = TrafficField(2)
    cfg = field.config
    # Between cell centres and knots the field is interpolated: a few metres or seconds away it
    # hardly moves, a few cells or knots away it has changed.
    near = [
        abs(field.factor(x, y, t) - field.factor(x + 5.0, y, t + 5.0))
        for x in range(-2000, 2000, 370)
        for y in range(-2000, 2000, 410)
        for t in range(0, 20_000, 1_700)
    ]
    far = [
        abs(field.factor(x, y, t) - field.factor(x + 3 * cfg.cell_m, y, t + 3 * cfg.knot_s))
        for x in range(-2000, 2000, 370)
        for y in range(-2000, 2000, 410)
        for t in range(0, 20_000, 1_700)
    ]
    assert max(near) < 0.02
    assert statistics.mean(far) > 10 * statistics.mean(near)
    # At a knot, at a cell centre: exactly the level drawn there.
    assert field.factor(0.5 * cfg.cell_m, 1.5 * cfg.cell_m, 7 * cfg.knot_s) == field.level(0, 1, 7)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        TrafficConfig(levels=((0.5, 0.9, 1.0),))
    with pytest.raises(ValueError, match="within"):
        TrafficConfig(levels=((1.0, 0.0, 1.0),))
    with pytest.raises(ValueError, match="positive"):
        TrafficConfig(cell_m=0.0)


def _city(traffic: TrafficConfig) -> City:
    city = City.generate(CENTER, seed=5, size_m=3000)
    return City(city.projection, city.nodes, city.streets, city.depot, TrafficField(5, traffic))


def _route_drive_s(city: City, seed: int) -> float:
    """Simulated seconds the van spent driving (not at stops) on its first route."""
    van = Van(city, QUIET, seed=seed, epoch=0.0)
    van.poll(6 * 3600.0)
    visits = van.visits[: QUIET.stops_per_route]
    assert all(v.departed_s is not None for v in visits)
    dwelt = sum((v.departed_s or 0.0) - v.arrived_s for v in visits)
    return visits[-1].departed_s - visits[0].arrived_s - dwelt  # type: ignore[operator]


def test_vans_drive_slower_through_congestion() -> None:
    jammed = TrafficConfig(levels=((1.0, 0.4, 0.4),))
    for seed in (1, 2):
        free = _route_drive_s(_city(FREE_FLOW), seed)
        slow = _route_drive_s(_city(jammed), seed)
        # Acceleration, turns and traffic lights do not scale with the level, so less than 2.5x.
        assert 1.6 < slow / free < 2.5


def test_vans_read_the_field_on_one_shared_clock_whatever_their_time_scale() -> None:
    city = City.generate(CENTER, seed=5, size_m=3000)
    a = Van(city, QUIET, seed=1, epoch=1_700_000_000.0)
    b = Van(city, dataclasses.replace(QUIET, time_scale=2.0), seed=2, epoch=850_000_000.0)
    # Both clocks read the same shared time (wall seconds times the time scale).
    assert a._clock0 == b._clock0
    t = a._clock0 + 1234.0
    assert city.traffic.factor(100.0, 200.0, t) == City.generate(
        CENTER, seed=5, size_m=3000
    ).traffic.factor(100.0, 200.0, t)


def test_sites_have_their_own_usual_service_time() -> None:
    city = City.generate(CENTER, seed=5, size_m=3000)
    cfg = dataclasses.replace(QUIET, service_sigma=0.0)
    vans = [Van(city, cfg, seed=seed, epoch=0.0) for seed in (4, 5, 6)]
    for van in vans:
        van.poll(8 * 3600.0)
    done = [(van, v) for van in vans for v in van.visits if v.departed_s is not None]
    factors = {v.stop.address: vans[0].site_service_factor(v.stop.address) for _, v in done}
    # The same factor for every van; with no spread of its own, every visit takes exactly it.
    assert all(van.site_service_factor(a) == f for van in vans for a, f in factors.items())
    for _, visit in done:
        taken = ((visit.departed_s or 0.0) - visit.arrived_s) / visit.stop.service_s
        lo, hi = cfg.service_factor
        assert taken == pytest.approx(min(max(factors[visit.stop.address], lo), hi), abs=0.01)
    spread = statistics.pstdev(math.log(f) for f in factors.values())
    assert 0.1 < spread < 0.35  # site_service_sigma 0.21
