"""Approach: which stop a vehicle drives to, judged from its fixes, stops served in any order."""

from __future__ import annotations

from geofence import LocalFrame, Route, RouteTracker, Stop, TrackerConfig
from geofence.approach import Approach

T0 = 1_700_000_000.0
FRAME = LocalFrame(52.0, 13.0)
CFG = TrackerConfig()
# Planned order S1, S2, S3: S2 3 km north of S1, S3 3 km south of it.
STOPS = {"S1": (0.0, 0.0), "S2": (0.0, 3000.0), "S3": (0.0, -3000.0)}


def route() -> Route:
    stops = []
    for sid, (x, y) in STOPS.items():
        lat, lon = FRAME.latlon(x, y)
        stops.append(Stop(id=sid, lat=lat, lon=lon, window_start=T0, window_end=T0 + 7200))
    return Route(id="r1", vehicle_id="v1", stops=tuple(stops))


class Drive:
    """A tracker and its approach, fed fixes 10 s apart at positions in metres from S1."""

    def __init__(self) -> None:
        r = route()
        self.tracker = RouteTracker(r, CFG)
        self.approach = Approach(r, CFG)
        self.ts = T0

    def to(self, *points: tuple[float, float], speed: float = 10.0) -> str | None:
        for x, y in points:
            self.ts += 10
            lat, lon = FRAME.latlon(x, y)
            self.tracker.update(self.ts, lat, lon, speed_mps=speed)
            self.approach.update(self.tracker)
        return self.approach.target


def line(x: float, y0: float, y1: float, step: float = 50.0) -> list[tuple[float, float]]:
    n = round(abs(y1 - y0) / step)
    return [(x, y0 + (y1 - y0) * k / n) for k in range(n + 1)]


def test_no_stop_until_the_vehicle_closes_in_and_none_while_it_stands_at_one() -> None:
    d = Drive()
    assert d.to((900.0, 0.0)) is None  # one fix says nothing of where it goes
    assert d.to((850.0, 0.0)) is None  # 50 m closer: not yet
    assert d.to((790.0, 0.0)) == "S1"
    assert d.to((400.0, 0.0), (100.0, 0.0)) == "S1"
    assert d.to((10.0, 10.0), speed=0.0) is None  # at S1's door: no stop is next
    assert d.tracker.stop_status("S1") == "arrived"
    assert d.to((10.0, 10.0), (12.0, 10.0), speed=0.0) is None


def test_stops_served_out_of_order_follow_the_vehicle_not_the_plan() -> None:
    d = Drive()
    d.to(*line(30.0, 900.0, 10.0))
    d.to((10.0, 10.0), speed=0.0)
    # Leaving S1 southwards: S3 (planned last) is next, never S2 (planned next).
    seen = [d.to(p) for p in line(30.0, -100.0, -2800.0)]
    assert "S2" not in seen and seen[-1] == "S3"
    assert seen[0] is None  # right after leaving a stop, nothing
    assert d.to((10.0, -2990.0), speed=0.0) is None
    assert d.tracker.stop_status("S3") == "arrived"
    seen = [d.to(p) for p in line(30.0, -2900.0, -200.0)]
    assert seen[0] is None and seen[-1] == "S2" and "S3" not in seen


def test_driving_away_from_the_nearest_stop_names_none() -> None:
    d = Drive()
    d.to(*line(30.0, -2000.0, -10.0))
    d.to((10.0, 10.0), speed=0.0)
    # Leaving S1 south-west, away from every pending stop at first: S3 is nearest but the
    # vehicle is not closing in on it.
    assert [d.to((-100.0 * k, 40.0)) for k in range(1, 15)] == [None] * 14


def test_turning_back_drops_the_stop_and_coming_again_restores_it() -> None:
    d = Drive()
    assert d.to(*line(30.0, 1000.0, 600.0)) == "S1"
    assert d.to((30.0, 650.0), (30.0, 680.0)) == "S1"  # jitter, a short reverse
    assert d.to((30.0, 720.0)) is None  # 120 m farther than it came: not driving there
    assert d.to((30.0, 800.0), (30.0, 750.0)) is None
    assert d.to((30.0, 690.0)) == "S1"


def test_a_poor_fix_is_not_movement() -> None:
    d = Drive()
    d.to(*line(30.0, 1000.0, 600.0))
    d.ts += 10
    lat, lon = FRAME.latlon(30.0, 1500.0)
    d.tracker.update(d.ts, lat, lon, speed_mps=10.0, accuracy_m=400.0)
    d.approach.update(d.tracker, accuracy_m=400.0)
    assert d.approach.target == "S1"


def test_clear_of_every_stop_means_outside_its_circle_and_margin() -> None:
    d = Drive()
    guard = CFG.arrival_radius_m + CFG.departure_margin_m
    for sid in STOPS:
        x, y = STOPS[sid]
        assert not d.approach.clear(*FRAME.latlon(x + guard - 5, y))
        assert d.approach.clear(*FRAME.latlon(x + guard + 5, y))


def test_the_state_carries_over_to_another_instance() -> None:
    d = Drive()
    d.to(*line(30.0, 1000.0, 600.0))
    state = d.approach.export_state()
    assert Approach.target_in(state, "r1") == "S1" and Approach.target_in(state, "r2") is None
    again = Approach(route(), CFG)
    again.restore(state)
    assert again.target == "S1"
    other = Approach(Route(id="r2", vehicle_id="v1", stops=route().stops), CFG)
    other.restore(state)
    assert other.target is None
