import dataclasses
import itertools
import math

import pytest

from simulator.city import ARTERIAL_SPEED_MPS, City
from simulator.geo import haversine_m
from simulator.vehicle import CREEP_SPEED_MPS, Fix, Phase, Van, VanConfig

CENTER = (48.1374, 11.5755)
CITY = City.generate(CENTER, seed=5, size_m=3000)
QUIET = VanConfig(
    outlier_probability=0.0,
    dropout_probability=0.0,
    poor_accuracy_probability=0.0,
    initial_wait_s=(0.0, 0.0),
)


def _drive(van: Van, seconds: float, step: float = 1.0) -> list[tuple[Fix, tuple[float, float]]]:
    """Fixes with the van's true position when each was produced (one fix per poll)."""
    out = []
    t = van.epoch
    while t <= van.epoch + seconds:
        for fix in van.poll(t):
            out.append((fix, van.position))
        t += step
    return out


def test_fixes_come_at_the_interval_with_wall_clock_stamps() -> None:
    cfg = VanConfig(interval_s=2.0, dropout_probability=0.0)
    van = Van(CITY, cfg, seed=1, epoch=1_700_000_000.0)
    fixes = van.poll(1_700_000_000.0 + 600.0)
    assert len(fixes) == 301
    assert [f.ts for f in fixes] == [1_700_000_000.0 + 2 * k for k in range(301)]
    assert van.poll(1_700_000_000.0 + 601.9) == []
    assert len(van.poll(1_700_000_000.0 + 602.0)) == 1


def test_same_seed_same_drive() -> None:
    a = Van(CITY, VanConfig(), seed=9, epoch=0.0).poll(3000)
    b = Van(CITY, VanConfig(), seed=9, epoch=0.0).poll(3000)
    c = Van(CITY, VanConfig(), seed=10, epoch=0.0).poll(3000)
    assert a == b
    assert a != c


def test_speeds_and_accelerations_stay_urban() -> None:
    van = Van(CITY, QUIET, seed=2, epoch=0.0)
    speeds = []
    positions = []
    phases = []
    for t in range(0, 4 * 3600):
        van.poll(float(t))
        speeds.append(van.speed)
        positions.append(van.position)
        phases.append(van.phase)
    limit = ARTERIAL_SPEED_MPS * QUIET.driver_factor[1]
    assert max(speeds) <= limit + 1e-9
    assert max(speeds) > 0.8 * ARTERIAL_SPEED_MPS  # it does reach arterial speed somewhere
    moving = [v for v in speeds if v > 0.5]
    assert 4.0 < sum(moving) / len(moving) < 12.0  # urban average, stops and turns included
    for (v0, v1), (p0, p1) in zip(
        itertools.pairwise(speeds), itertools.pairwise(phases), strict=True
    ):
        # Reaching a stop ends at exactly zero within the last half-step (at most creeping
        # speed plus what the half-step before could brake): more slack there.
        arriving = p0 is Phase.DRIVING and p1 is not Phase.DRIVING
        slack = (
            QUIET.decel_mps2 * 0.5 + 2 * CREEP_SPEED_MPS if arriving else 0.05 * QUIET.decel_mps2
        )
        assert -QUIET.decel_mps2 - slack <= v1 - v0 <= QUIET.accel_mps2 + 1e-9
    for p, q in itertools.pairwise(positions):
        assert haversine_m(*p, *q) <= limit * 1.01 + 0.1


def test_van_stops_at_every_planned_address_and_dwells() -> None:
    van = Van(CITY, QUIET, seed=4, epoch=0.0)
    moments: list[tuple[float, Phase, tuple[float, float], float]] = []
    for t in range(0, 6 * 3600):
        van.poll(float(t))
        moments.append((float(t), van.phase, van.position, van.speed))
        if van.counters.routes == 2:
            break
    assert van.counters.routes == 2, "the van should finish a route and start the next"
    first_route = van.visits[: QUIET.stops_per_route]
    assert len(first_route) == QUIET.stops_per_route
    lo, hi = QUIET.service_factor
    for visit in first_route:
        assert visit.departed_s is not None
        dwell = visit.departed_s - visit.arrived_s
        planned = visit.stop.service_s
        extra = (visit.long_extra_s, visit.long_extra_s) if visit.long_dwell else (0.0, 0.0)
        assert lo * planned + extra[0] - 0.5 <= dwell <= hi * planned + extra[1] + 0.5
        if visit.long_dwell and van.site_extra_s(visit.stop.address) == 0:
            assert QUIET.long_dwell_s[0] <= visit.long_extra_s <= QUIET.long_dwell_s[1]
        at = [m for m in moments if visit.arrived_s + 1 <= m[0] <= visit.departed_s - 1]
        assert at and all(m[1] is Phase.DWELLING and m[3] == 0.0 for m in at)
        stop = visit.stop.address
        assert all(haversine_m(*m[2], stop.lat, stop.lon) < 1.0 for m in at)
    assert [v.stop.index for v in first_route] == list(range(QUIET.stops_per_route))
    # Between routes the van is back at the depot.
    depot = CITY.nodes[CITY.depot]
    at_depot = [m for m in moments if m[1] is Phase.DEPOT and m[0] > first_route[-1].arrived_s]
    assert at_depot
    assert all(haversine_m(*m[2], depot.lat, depot.lon) < 1.0 for m in at_depot)


def test_long_dwells_make_later_stops_late() -> None:
    cfg = VanConfig(
        long_dwell_probability=(1.0, 1.0), dropout_probability=0.0, initial_wait_s=(0.0, 0.0)
    )
    van = Van(CITY, cfg, seed=4, epoch=0.0)
    van.poll(4 * 3600.0)
    assert van.counters.long_dwells >= 3
    assert van.visits[3].late_s > 600


def test_long_dwells_follow_the_parcel_count() -> None:
    # No chance at one parcel, certainty at two: the plan foretells every long dwell.
    cfg = dataclasses.replace(
        QUIET, parcels=(1, 2), long_dwell_probability=(0.0, 1.0), slow_site_share=0.0
    )
    van = Van(CITY, cfg, seed=4, epoch=0.0)
    van.poll(6 * 3600.0)
    done = [v for v in van.visits if v.departed_s is not None]
    assert {v.stop.parcels for v in done} == {1, 2}
    assert all(v.long_dwell == (v.stop.parcels == 2) for v in done)


def test_slow_sites_are_the_same_for_every_van_and_run_long_by_their_own_extra() -> None:
    cfg = dataclasses.replace(
        QUIET, slow_site_share=0.3, slow_site_probability=1.0, long_dwell_probability=(0.0, 0.0)
    )
    vans = [Van(CITY, cfg, seed=seed, epoch=0.0) for seed in (4, 5, 6)]
    for van in vans:
        van.poll(8 * 3600.0)
    done = [(van, v) for van in vans for v in van.visits if v.departed_s is not None]
    addresses = {v.stop.address for _, v in done}
    extras = {a: vans[0].site_extra_s(a) for a in addresses}
    # Every van (whatever its seed) finds the same addresses slow, by the same typical extra.
    assert all(van.site_extra_s(a) == extras[a] for van in vans for a in addresses)
    slow = [a for a, e in extras.items() if e > 0]
    assert 0 < len(slow) < len(addresses)
    assert all(cfg.slow_site_extra_s[0] <= extras[a] <= cfg.slow_site_extra_s[1] for a in slow)
    # Slow sites always run long here, by their extra times a spread of 0.2; others never.
    for van, visit in done:
        typical = extras[visit.stop.address]
        assert visit.long_dwell == (typical > 0)
        assert van.long_dwell_chance(visit.stop) == (1.0 if typical > 0 else 0.0)
        if typical > 0:
            assert math.exp(-1.0) < visit.long_extra_s / typical < math.exp(1.0)


def test_gps_noise_accuracy_and_outliers() -> None:
    cfg = VanConfig(outlier_probability=0.05, dropout_probability=0.0)
    van = Van(CITY, cfg, seed=6, epoch=0.0)
    fixes = _drive(van, 20_000)
    outliers = [(f, p) for f, p in fixes if f.outlier]
    normal = [(f, p) for f, p in fixes if not f.outlier and f.accuracy < 50]
    assert 0.04 < len(outliers) / len(fixes) < 0.06
    assert van.counters.outliers == len(outliers)
    for f, p in outliers:
        assert haversine_m(f.lat, f.lon, *p) > 250
        assert f.accuracy < 10  # looks fine: only the jump gives it away
    errors = sorted(haversine_m(f.lat, f.lon, *p) for f, p in normal)
    assert errors[len(errors) // 2] < 6  # a few metres typically
    assert errors[-1] < 40
    assert all(cfg.accuracy_m[0] <= f.accuracy <= cfg.accuracy_m[1] for f, _ in normal)


def test_dropouts_leave_gaps_at_the_configured_rate() -> None:
    cfg = VanConfig(dropout_probability=0.01, dropout_s=(10.0, 20.0), outlier_probability=0.0)
    van = Van(CITY, cfg, seed=8, epoch=0.0)
    fixes = van.poll(30_000.0)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(fixes) if b.ts - a.ts > 1.0]
    # A dropout may start on the first fix after another one: their gaps merge.
    assert 0.95 * van.counters.dropouts <= len(gaps) <= van.counters.dropouts
    assert all(g >= 10.0 for g in gaps)
    assert sorted(gaps)[len(gaps) // 2] <= 21.0
    assert sum(g - 1 for g in gaps) <= van.counters.skipped <= sum(g - 1 for g in gaps) + 21
    assert van.counters.fixes + van.counters.skipped == 30_001
    attempts = van.counters.fixes + van.counters.dropouts
    assert 0.007 < van.counters.dropouts / attempts < 0.013


def test_time_scale_moves_faster_but_stamps_real_time() -> None:
    cfg = VanConfig(time_scale=10.0, dropout_probability=0.0, outlier_probability=0.0)
    van = Van(CITY, cfg, seed=3, epoch=1000.0)
    fixes = van.poll(1000.0 + 360.0)
    assert van.sim_time == pytest.approx(3600.0)
    assert fixes[-1].ts == 1360.0  # never ahead of the wall clock it was given
    assert len(fixes) == 361
    slow = Van(CITY, VanConfig(dropout_probability=0.0, outlier_probability=0.0), seed=3, epoch=0)
    slow.poll(3600.0)
    assert van.odometer == pytest.approx(slow.odometer)  # same drive, ten times quicker
    fast_speeds = [f.speed for f in fixes]
    assert max(fast_speeds) > 5 * ARTERIAL_SPEED_MPS


def test_battery_drains_and_reefer_reports_temperature() -> None:
    van = Van(CITY, VanConfig(reefer=True, initial_wait_s=(0, 0)), seed=5, epoch=0.0)
    fixes = van.poll(3 * 3600.0)
    driving = [f for f in fixes if f.speed > 0]
    assert driving[-1].battery < driving[0].battery
    temps = [f.temp_c for f in fixes]
    # The load warms while the door is open at a stop: up to about 0.6 degrees a minute for a
    # long dwell of 20 minutes or so, and cools back to the setpoint while driving.
    assert all(t is not None and -2 < t < 4.5 + 0.01 * 1_500 for t in temps)
    assert min(t for t in temps if t is not None) < 5.0
    plain = Van(CITY, VanConfig(), seed=5, epoch=0.0).poll(100.0)
    assert all(f.temp_c is None for f in plain)
    assert all(0 <= f.heading < 360 for f in fixes)
    odometers = [f.odometer for f in fixes]
    assert odometers == sorted(odometers)


def test_detours_lengthen_a_leg() -> None:
    cfg = VanConfig(detour_probability=1.0, dropout_probability=0.0, initial_wait_s=(0.0, 0.0))
    van = Van(CITY, cfg, seed=12, epoch=0.0)
    van.poll(1.0)
    assert van.counters.detours >= 1
    route = van._route
    assert route is not None
    direct = CITY.shortest_path(CITY.depot, van.plan[0].address.node, by="distance").length_m
    assert route.legs[0].path.length_m >= direct
    assert any(leg.path.length_m > 1.2 * math.dist(leg.path.xy[0], leg.path.xy[-1]) + 200
               for leg in route.legs)  # fmt: skip
