import itertools
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np
import pytest

from geofence import (
    DwellShape,
    EtaChanged,
    LateRisk,
    LateRiskCleared,
    LocalFrame,
    OffRoute,
    OffRouteCleared,
    PlannedPath,
    Route,
    RouteError,
    RouteEvent,
    RouteTracker,
    Stop,
    StopArrived,
    StopArriving,
    StopDeparted,
    StoppedTooLong,
    StoppedTooLongCleared,
    TemperatureExcursion,
    TemperatureExcursionCleared,
    TrackerConfig,
)
from geofence.eta import EtaPrior

T0 = 1_700_000_000.0
FRAME = LocalFrame(52.0, 13.0)


def at(x: float, y: float) -> tuple[float, float]:
    return FRAME.latlon(x, y)


# An L-shaped drive on a street grid: 3 km north, then 3 km east.
CORNERS = [(0.0, 0.0), (0.0, 3000.0), (3000.0, 3000.0)]


def along_xy(s: float) -> tuple[float, float]:
    """Point ``s`` metres along CORNERS."""
    for (x0, y0), (x1, y1) in itertools.pairwise(CORNERS):
        seg = math.hypot(x1 - x0, y1 - y0)
        if s <= seg:
            return x0 + (x1 - x0) * s / seg, y0 + (y1 - y0) * s / seg
        s -= seg
    return CORNERS[-1]


PATH = tuple(at(*along_xy(s)) for s in range(0, 6001, 100))
STOPS_ALONG = [1000.0, 2000.0, 4000.0, 5500.0]


def make_route(
    *, path: bool = True, service_s: float = 0.0, window_end: float = T0 + 10_000, **kw: object
) -> Route:
    stops = tuple(
        Stop(
            id=f"s{i}",
            lat=at(*along_xy(s))[0],
            lon=at(*along_xy(s))[1],
            window_start=T0,
            window_end=window_end,
            service_s=service_s,
            **kw,  # type: ignore[arg-type]
        )
        for i, s in enumerate(STOPS_ALONG)
    )
    return Route(id="r", vehicle_id="van", stops=stops, path=PATH if path else None)


def drive(
    speed: Callable[[float], float], dt: float = 2.0, until: float = 6000.0
) -> Iterator[tuple[float, float, float, float]]:
    """(ts, lat, lon, speed) along CORNERS with a speed profile of elapsed time."""
    t, s = 0.0, 0.0
    while s < until:
        v = speed(t)
        yield (T0 + t, *at(*along_xy(s)), v)
        s += v * dt
        t += dt


def feed(tracker: RouteTracker, fixes: Iterator[tuple[float, float, float, float]]) -> list:
    out: list[RouteEvent] = []
    for ts, lat, lon, v in fixes:
        out.extend(tracker.update(ts, lat, lon, speed_mps=v))
    return out


def true_arrival(along: float, radius: float, v: float) -> float:
    return T0 + (along - radius) / v


@pytest.mark.parametrize("use_path", [True, False])
def test_eta_at_constant_speed_is_within_seconds_of_arrival(use_path: bool) -> None:
    cfg = TrackerConfig(typical_speed_mps=7.0, prior=EtaPrior(pace_prior_s=20.0), detour_factor=1.0)
    route = make_route(path=use_path)
    if not use_path:
        # Without a path, use the straight first leg only (great circle = the street).
        route = Route(id="r", vehicle_id="van", stops=route.stops[:2])
    tracker = RouteTracker(route, cfg)
    v = 10.0
    worst = 0.0
    checked = 0
    for ts, lat, lon, sp in drive(lambda t: v):
        tracker.update(ts, lat, lon, speed_mps=sp)
        if ts - T0 < 120:  # the speed model needs a few prior_s to trust the vehicle
            continue
        for sid, eta in tracker.etas().items():
            i = int(sid[1:])
            worst = max(worst, abs(eta - true_arrival(STOPS_ALONG[i], 50.0, v)))
            checked += 1
    assert checked > 30
    assert worst < 3.0


def test_eta_uses_detour_factor_without_a_path() -> None:
    route = Route(id="r", vehicle_id="van", stops=make_route().stops[:1])
    cfg = TrackerConfig(typical_speed_mps=10.0, detour_factor=1.3)
    tracker = RouteTracker(route, cfg)
    tracker.update(T0, *at(0, 0))
    expected = (1000.0 - 50.0) * 1.3 / 10.0
    assert tracker.etas()["s0"] - T0 == pytest.approx(expected, abs=1.0)


def test_far_off_the_path_the_way_to_the_next_stop_is_the_straight_line_not_the_path() -> None:
    # A U-shaped path: 3 km north, 800 m east, 3 km south to the stop. The van drove up the
    # first side and then cut back down between the sides, 350 m off the path: the nearest
    # part of the path is then behind it, on the first side, 4.3 km of path from the stop.
    corners = [(0.0, 0.0), (0.0, 3000.0), (800.0, 3000.0), (800.0, 0.0)]
    points = [
        at(x0 + (x1 - x0) * k / 50, y0 + (y1 - y0) * k / 50)
        for (x0, y0), (x1, y1) in itertools.pairwise(corners)
        for k in range(50)
    ]
    path = (*points, at(800.0, 0.0))
    stop = Stop(
        id="s0",
        lat=at(800.0, 0.0)[0],
        lon=at(800.0, 0.0)[1],
        window_start=T0,
        window_end=T0 + 10_000,
    )
    route = Route(id="r", vehicle_id="van", stops=(stop,), path=path)
    cfg = TrackerConfig(typical_speed_mps=10.0, detour_factor=1.3, prior=EtaPrior(pace_prior_s=1e9))
    tracker = RouteTracker(route, cfg)
    for k in range(0, 31):
        tracker.update(T0 + k * 10.0, *at(0.0, k * 100.0), speed_mps=10.0)
    tracker.update(T0 + 400.0, *at(350.0, 2500.0), speed_mps=10.0)
    tracker.update(T0 + 450.0, *at(350.0, 2000.0), speed_mps=10.0)
    assert tracker.offset_m > cfg.off_route_clear_distance_m
    straight = math.hypot(450.0, 2000.0) - cfg.arrival_radius_m
    assert tracker.etas()["s0"] - (T0 + 450.0) == pytest.approx(straight * 1.3 / 10.0, rel=0.02)
    # Back on the path, its length counts again.
    tracker.update(T0 + 500.0, *at(800.0, 1500.0), speed_mps=10.0)
    assert tracker.etas()["s0"] - (T0 + 500.0) == pytest.approx(
        (1500.0 - cfg.arrival_radius_m) / 10.0, rel=0.02
    )


# Speed pinned to typical, dwells exactly as planned.
EXACT = TrackerConfig(
    typical_speed_mps=10.0,
    prior=EtaPrior(pace_prior_s=1e9, dwell=DwellShape(sigma=0.0, long_probability=0.0)),
)


def test_eta_counts_service_time_of_earlier_stops() -> None:
    tracker = RouteTracker(make_route(service_s=300.0), EXACT)
    tracker.update(T0, *at(0, 0), speed_mps=10.0)
    eta = tracker.etas()
    assert eta["s0"] - T0 == pytest.approx(95.0, abs=0.5)
    # s1: 300 s of service at s0, then 1000 m (centre of s0 to s1's circle, plus s0's radius).
    assert eta["s1"] - T0 == pytest.approx(95.0 + 300.0 + 100.0, abs=0.5)
    # At s0, 100 s into its service: 200 s left, then the leg.
    tracker.update(T0 + 100, *at(*along_xy(955.0)), speed_mps=0.0)
    assert tracker.stop_status("s0") == "arrived"
    tracker.update(T0 + 200, *at(*along_xy(1000.0)), speed_mps=0.0)
    assert tracker.etas()["s1"] - T0 == pytest.approx(100 + 300 + 95.0, abs=0.5)


def test_etas_are_worked_out_again_every_few_seconds_and_at_once_on_a_stop() -> None:
    tracker = RouteTracker(make_route(service_s=300.0), EXACT)
    assert EXACT.eta_refresh_s == 5.0
    tracker.update(T0, *at(*along_xy(0.0)), speed_mps=10.0)
    first = tracker.etas()
    assert first["s0"] - T0 == pytest.approx(95.0, abs=0.5)
    # Within 5 s of fix time the ETAs stand; ticks do not rework them either.
    for k in range(1, 5):
        assert tracker.update(T0 + k, *at(*along_xy(10.0 * k)), speed_mps=10.0) == []
        assert tracker.etas() == first
    assert tracker.tick(T0 + 4.5) == [] and tracker.etas() == first
    tracker.update(T0 + 5, *at(*along_xy(50.0)), speed_mps=10.0)
    assert tracker.etas()["s0"] - (T0 + 5) == pytest.approx(90.0, abs=0.5)
    # Reaching a stop reworks them at once: s0 is no longer pending, s1 counts its service.
    tracker.update(T0 + 6, *at(*along_xy(955.0)), speed_mps=0.0)
    assert tracker.stop_status("s0") == "arrived"
    assert set(tracker.etas()) == {"s1", "s2", "s3"}
    # (all 300 s of its service to come, then 995 m from here to s1's circle)
    assert tracker.etas()["s1"] - (T0 + 6) == pytest.approx(300.0 + 99.5, abs=1.0)
    # A tick 5 s on reworks them too: the service goes on while the van stands.
    tracker.tick(T0 + 11)
    assert tracker.etas()["s1"] - (T0 + 11) == pytest.approx(295.0 + 99.5, abs=1.0)
    # A tick on the gateway's clock does not hold back a fix stamped before it (devices lag
    # the gateway's clock): the fix's position is newer than the one the tick used.
    lagging = RouteTracker(make_route(service_s=300.0), EXACT)
    lagging.update(T0, *at(*along_xy(0.0)), speed_mps=10.0)
    lagging.tick(T0 + 60)
    lagging.update(T0 + 30, *at(*along_xy(300.0)), speed_mps=10.0)
    assert lagging.etas()["s0"] - (T0 + 30) == pytest.approx(65.0, abs=0.5)
    # With no interval, every fix reworks them.
    every = RouteTracker(
        make_route(service_s=300.0), msgspec.structs.replace(EXACT, eta_refresh_s=0)
    )
    every.update(T0, *at(*along_xy(0.0)), speed_mps=10.0)
    every.update(T0 + 1, *at(*along_xy(10.0)), speed_mps=10.0)
    assert every.etas()["s0"] - (T0 + 1) == pytest.approx(94.0, abs=0.5)


def test_moving_off_after_standing_at_a_stop_ends_its_service() -> None:
    tracker = RouteTracker(make_route(service_s=300.0), EXACT)
    # Rolling into s0's circle: all of its service is still to come.
    tracker.update(T0, *at(*along_xy(990.0)), speed_mps=2.0)
    assert tracker.eta_dwell_s()["s1"] == pytest.approx(300.0, abs=0.5)
    tracker.update(T0 + 1, *at(*along_xy(1000.0)), speed_mps=0.0)
    tracker.update(T0 + 101, *at(*along_xy(1000.0)), speed_mps=0.0)
    assert tracker.eta_dwell_s()["s1"] == pytest.approx(200.0, abs=1.0)  # to about a second
    # Driving off, still inside the circle: the service is over, only the leg is left.
    tracker.update(T0 + 102, *at(*along_xy(1010.0)), speed_mps=5.0)
    assert tracker.stop_status("s0") == "arrived"
    assert tracker.eta_dwell_s()["s1"] == 0.0
    assert tracker.etas()["s1"] - (T0 + 102) == pytest.approx((2000.0 - 1010.0 - 50.0) / 10.0)


def test_observations_time_dwells_and_legs_as_the_eta_counts_them() -> None:
    tracker = RouteTracker(make_route(service_s=60.0), EXACT)
    for t in range(0, 121):  # standing at s0 from T0 to T0 + 120
        tracker.update(T0 + t, *at(*along_xy(1000.0)), speed_mps=0.0)
    for k in range(1, 100):  # then off to s1 at 10 m/s
        tracker.update(T0 + 120 + k, *at(*along_xy(1000.0 + 10.0 * k)), speed_mps=10.0)
    assert tracker.stop_status("s1") == "arrived"  # at T0 + 215, 950 m on
    seen = tracker.observations()
    assert seen.dwells == ((60.0, 120.0),)
    # The leg: s0's radius and 950 m to s1's circle, planned at 10 m/s; driven from the end
    # of the standing at s0 to entering s1's circle.
    [(planned, driven)] = seen.legs
    assert planned == pytest.approx(100.0) and driven == 95.0
    state = json.loads(json.dumps(tracker.export_state()))
    assert RouteTracker.from_state(make_route(service_s=60.0), state, EXACT).observations() == seen


def test_stop_arriving_arrived_departed_in_any_order() -> None:
    cfg = TrackerConfig(arriving_distance_m=300.0, arriving_lead_s=0.0, departure_margin_m=20.0)
    tracker = RouteTracker(make_route(), cfg)
    events = feed(tracker, drive(lambda t: 10.0, until=1200))
    names = [(type(e).__name__, getattr(e, "stop_id", None)) for e in events]
    seq = [n for n in names if n[0].startswith("Stop")]
    assert seq == [("StopArriving", "s0"), ("StopArrived", "s0"), ("StopDeparted", "s0")]
    arrived = next(e for e in events if isinstance(e, StopArrived))
    departed = next(e for e in events if isinstance(e, StopDeparted))
    assert arrived.ts == pytest.approx(T0 + 96.0)  # first 2 s fix within 50 m
    assert departed.ts == pytest.approx(T0 + 108.0)  # first fix beyond 70 m
    assert departed.arrived_ts == arrived.ts
    # Jump to s3 out of order: it arrives although s1 and s2 are pending.
    out = tracker.update(T0 + 2000, *at(*along_xy(5500.0)))
    assert [type(e) for e in out if type(e).__name__.startswith("Stop")] == [StopArrived]
    assert tracker.stop_status("s3") == "arrived"
    assert tracker.stop_status("s1") == "pending"


def test_late_risk_raises_once_and_clears_with_hysteresis() -> None:
    # Stop s1 (2 km) promised until T0+260: on time at 10 m/s (arrival T0+195).
    cfg = TrackerConfig(
        typical_speed_mps=10.0,
        prior=EtaPrior(pace_prior_s=10.0),
        speed_half_life_s=10.0,
        late_risk_margin_s=30.0,
        late_risk_clear_margin_s=60.0,
    )
    route = Route(id="r", vehicle_id="van", stops=make_route(window_end=T0 + 260).stops[1:2])
    tracker = RouteTracker(route, cfg)

    def profile(t: float) -> float:
        return 10.0 if t < 40 else 4.0 if t < 120 else 20.0

    events: list[RouteEvent] = []
    etas: list[tuple[float, float]] = []
    for ts, lat, lon, v in drive(profile, dt=2.0, until=1900):
        events += tracker.update(ts, lat, lon, speed_mps=v)
        if "s1" in tracker.etas():
            etas.append((ts, tracker.etas()["s1"]))
    risks = [e for e in events if isinstance(e, LateRisk | LateRiskCleared)]
    assert [type(e) for e in risks] == [LateRisk, LateRiskCleared]
    raised, cleared = risks
    assert isinstance(raised, LateRisk) and raised.late_by_s > 30.0
    assert cleared.eta < T0 + 260 - 60.0
    # Hysteresis did work: ETAs after the raise came back under the raise threshold before the
    # clear without producing a clear.
    between = [eta for ts, eta in etas if raised.ts < ts < cleared.ts]
    assert any(T0 + 260 - 60 < eta <= T0 + 260 + 30 for eta in between)


def test_eta_changed_is_thresholded_and_rate_limited() -> None:
    cfg = TrackerConfig(
        typical_speed_mps=10.0,
        prior=EtaPrior(pace_prior_s=5.0),
        speed_half_life_s=4.0,
        eta_change_threshold_s=30.0,
        eta_min_interval_s=100.0,
    )
    tracker = RouteTracker(make_route(), cfg)

    def profile(t: float) -> float:
        return 12.0 if (t // 60) % 2 == 0 else 3.0  # ETA swings every minute

    events = feed(tracker, drive(profile, dt=2.0, until=3900))
    changes = [e for e in events if isinstance(e, EtaChanged) and e.stop_id == "s3"]
    assert changes[0].previous_eta is None and changes[0].ts == T0
    assert len(changes) >= 4
    for a, b in itertools.pairwise(changes):
        assert b.ts - a.ts >= 100.0
        assert b.previous_eta == a.eta
        assert abs(b.eta - a.eta) > 30.0


def test_eta_changed_first_compares_with_planned_arrival() -> None:
    cfg = TrackerConfig(typical_speed_mps=10.0, eta_change_threshold_s=60.0)
    route = make_route(planned_arrival=T0 + 100.0)
    tracker = RouteTracker(route, cfg)
    out = tracker.update(T0, *at(0, 0))
    changed = {e.stop_id: e for e in out if isinstance(e, EtaChanged)}
    assert "s0" not in changed  # ETA T0+95 is within 60 s of the plan
    assert changed["s1"].previous_eta == T0 + 100.0


def test_stopped_too_long_outside_stops_only() -> None:
    cfg = TrackerConfig(stopped_too_long_s=600.0, stopped_speed_mps=0.5)
    tracker = RouteTracker(make_route(), cfg)
    here = at(*along_xy(500.0))
    events = []
    for k in range(0, 700, 10):
        events += tracker.update(T0 + k, *here, speed_mps=0.0)
    stops = [e for e in events if isinstance(e, StoppedTooLong)]
    assert len(stops) == 1 and stops[0].ts == T0 + 600 and stops[0].since_ts == T0
    out = tracker.update(T0 + 710, *at(*along_xy(520.0)), speed_mps=5.0)
    cleared = [e for e in out if isinstance(e, StoppedTooLongCleared)]
    assert len(cleared) == 1 and cleared[0].stopped_s == 710
    # Waiting at a stop, or somewhere restful, is not an alert.
    at_stop = at(*along_xy(1000.0))
    quiet = [tracker.update(T0 + 800 + k, *at_stop, speed_mps=0.0) for k in range(0, 900, 10)]
    assert not any(isinstance(e, StoppedTooLong) for out in quiet for e in out)
    t2 = RouteTracker(make_route(), cfg)
    rest = [t2.update(T0 + k, *here, speed_mps=0.0, resting=True) for k in range(0, 900, 10)]
    assert not any(isinstance(e, StoppedTooLong) for out in rest for e in out)


def test_stopped_too_long_fires_on_tick_without_fixes() -> None:
    tracker = RouteTracker(make_route(), TrackerConfig(stopped_too_long_s=300.0))
    tracker.update(T0, *at(*along_xy(500.0)), speed_mps=0.0)
    assert not any(isinstance(e, StoppedTooLong) for e in tracker.tick(T0 + 299))
    out = [e for e in tracker.tick(T0 + 300) if isinstance(e, StoppedTooLong)]
    assert len(out) == 1 and out[0].stopped_s == 300


def test_off_route_with_duration_and_hysteresis() -> None:
    cfg = TrackerConfig(
        off_route_distance_m=200.0, off_route_clear_distance_m=150.0, off_route_duration_s=120.0
    )
    tracker = RouteTracker(make_route(), cfg)
    events: list[RouteEvent] = []

    def go(t: float, x: float, y: float) -> None:
        events.extend(tracker.update(T0 + t, *at(x, y), speed_mps=8.0))

    go(0, 0, 0)
    for t in range(10, 100, 10):
        go(t, 300, 500)  # 300 m west of the street, only 90 s
    go(100, 0, 600)
    assert not any(isinstance(e, OffRoute) for e in events)
    for t in range(110, 300, 10):
        go(t, 300, 700)
    raised = [e for e in events if isinstance(e, OffRoute)]
    assert len(raised) == 1 and raised[0].ts == T0 + 230 and raised[0].since_ts == T0 + 110
    assert raised[0].distance_m == pytest.approx(300.0, abs=1.0)
    for t in range(300, 400, 10):
        go(t, 180, 700)  # between the clear and raise distances: still off route
    assert not any(isinstance(e, OffRouteCleared) for e in events)
    go(400, 100, 700)
    assert len([e for e in events if isinstance(e, OffRouteCleared)]) == 1


def test_temperature_excursion_with_duration_and_hysteresis() -> None:
    cfg = TrackerConfig(temp_min_c=2.0, temp_max_c=8.0, temp_excursion_s=300.0)
    tracker = RouteTracker(make_route(), cfg)
    here = at(0, 0)
    events: list[RouteEvent] = []

    def read(t: float, temp: float | None) -> None:
        events.extend(tracker.update(T0 + t, *here, speed_mps=5.0, temp_c=temp))

    read(0, 5.0)
    read(60, 9.0)  # excursion starts
    read(200, None)  # a fix without a reading does not reset it
    read(300, 8.4)
    assert not any(isinstance(e, TemperatureExcursion) for e in events)
    read(360, 8.6)
    raised = [e for e in events if isinstance(e, TemperatureExcursion)]
    assert len(raised) == 1 and raised[0].since_ts == T0 + 60 and raised[0].temp_c == 8.6
    read(400, 7.8)  # back in range but within the 0.5 C hysteresis
    assert not any(isinstance(e, TemperatureExcursionCleared) for e in events)
    read(460, 7.0)
    assert [type(e) for e in events if "Temperature" in type(e).__name__] == [
        TemperatureExcursion,
        TemperatureExcursionCleared,
    ]


def test_state_round_trip_continues_identically() -> None:
    cfg = TrackerConfig(temp_max_c=8.0, stopped_too_long_s=100.0)
    fixes = list(drive(lambda t: 9.0 if t % 300 < 200 else 0.0, until=5000))
    a = RouteTracker(make_route(service_s=60.0), cfg)
    half = len(fixes) // 2
    feed(a, iter(fixes[:half]))
    state = json.loads(json.dumps(a.export_state()))
    b = RouteTracker.from_state(make_route(service_s=60.0), state, cfg)
    rest_a = feed(a, iter(fixes[half:]))
    rest_b = feed(b, iter(fixes[half:]))
    assert rest_a == rest_b and len(rest_a) > 0


def test_out_of_order_fix_is_ignored() -> None:
    tracker = RouteTracker(make_route())
    tracker.update(T0 + 10, *at(0, 0))
    assert tracker.update(T0 + 5, *at(*along_xy(1000.0))) == []
    assert tracker.stop_status("s0") == "pending"


def test_route_decodes_from_json_and_validates() -> None:
    body = {
        "id": "r1",
        "vehicle_id": "v1",
        "stops": [{"id": "a", "lat": 52.0, "lon": 13.0, "window_start": 0, "window_end": 60}],
        "path": [[52.0, 13.0], [52.01, 13.0]],
    }
    route = msgspec.json.decode(json.dumps(body), type=Route)
    assert route.stops[0].id == "a" and route.path == ((52.0, 13.0), (52.01, 13.0))
    bad_stops = [
        ({"window_end": -1}, "window ends before it starts"),
        ({"lat": 95.0}, "not a valid (lat, lon)"),
        ({"service_s": -5}, "seconds >= 0"),
        ({"arrival_radius_m": 0}, "metres"),
    ]
    for change, words in bad_stops:
        bad_stop: dict[str, Any] = {**body["stops"][0], **change}  # type: ignore[dict-item]
        with pytest.raises(msgspec.ValidationError, match=re.escape(words)):
            msgspec.json.decode(json.dumps({**body, "stops": [bad_stop]}), type=Route)

    stop = Stop(id="a", lat=52.0, lon=13.0, window_start=0, window_end=60)
    with pytest.raises(RouteError, match="unique"):
        Route(id="r", vehicle_id="v", stops=(stop, stop))
    with pytest.raises(RouteError, match="at least one stop"):
        Route(id="r", vehicle_id="v", stops=())
    with pytest.raises(RouteError, match="2 to"):
        Route(id="r", vehicle_id="v", stops=(stop,), path=((52.0, 13.0),))


def test_config_rejects_inconsistent_thresholds() -> None:
    with pytest.raises(ValueError, match="off_route_clear_distance_m"):
        TrackerConfig(off_route_distance_m=100.0, off_route_clear_distance_m=150.0)
    with pytest.raises(ValueError, match="temp_min_c"):
        TrackerConfig(temp_min_c=8.0, temp_max_c=2.0)
    with pytest.raises(ValueError, match="eta_min_interval_s"):
        TrackerConfig(eta_min_interval_s=-1.0)
    with pytest.raises(ValueError, match="pace_ratio"):
        TrackerConfig(prior=EtaPrior(pace_ratio=0.0))
    with pytest.raises(ValueError, match="service_prior_stops"):
        EtaPrior(service_prior_stops=math.inf)


def test_stop_zones_match_arrival_radius() -> None:
    route = make_route()
    zones = route.stop_zones(75.0)
    assert [z.id for z in zones] == ["r/s0", "r/s1", "r/s2", "r/s3"]
    assert all(z.kind == "customer_stop" for z in zones)
    assert zones[0].shape.radius_m == 75.0  # type: ignore[union-attr]


def test_planned_path_follows_out_and_back_in_order() -> None:
    # Out 1 km north and back down the same street, 10 m to the east.
    pts = [at(0, y) for y in range(0, 1001, 100)] + [at(10, y) for y in range(1000, -1, -100)]
    path = PlannedPath(pts)
    assert path.length_m == pytest.approx(2010.0, abs=1.0)
    lat, lon = at(3, 300)
    first, off = path.locate(lat, lon)
    assert first == pytest.approx(300.0, abs=1.0) and off == pytest.approx(3.0, abs=0.1)
    back, _ = path.locate(lat, lon, after_m=1500.0)
    assert back == pytest.approx(1010.0 + 700.0, abs=1.0)
    arr = np.array([path.locate(*at(0, y))[0] for y in (0, 500, 1000)])
    assert np.all(np.diff(arr) > 0)


def test_arriving_by_lead_time() -> None:
    cfg = TrackerConfig(arriving_distance_m=0.0, arriving_lead_s=60.0, typical_speed_mps=10.0)
    tracker = RouteTracker(make_route(), cfg)
    first = None
    for ts, lat, lon, v in drive(lambda t: 10.0, until=1000):
        for e in tracker.update(ts, lat, lon, speed_mps=v):
            if isinstance(e, StopArriving) and e.stop_id == "s0" and first is None:
                first = e
    assert first is not None
    assert first.eta - first.ts <= 60.0
    assert first.ts == pytest.approx(T0 + 36.0, abs=2.1)  # 95 s to arrival minus 60 s
