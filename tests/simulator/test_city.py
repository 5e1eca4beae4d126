import itertools
import math
import random

import pytest

from simulator.city import (
    ARTERIAL_SPEED_MPS,
    BLOCK_M,
    LOCAL_SPEED_MPS,
    NODE_JITTER_M,
    City,
    Node,
    NoRoute,
    RoadClass,
    Street,
)
from simulator.geo import LocalProjection, haversine_m

CENTER = (52.3731, 4.8932)


def test_generated_city_is_connected_and_deterministic() -> None:
    a = City.generate(CENTER, seed=7, size_m=3000)
    b = City.generate(CENTER, seed=7, size_m=3000)
    c = City.generate(CENTER, seed=8, size_m=3000)
    assert a.is_connected()
    assert [(n.lat, n.lon) for n in a.nodes] == [(n.lat, n.lon) for n in b.nodes]
    assert [(s.a, s.b) for s in a.streets] == [(s.a, s.b) for s in b.streets]
    assert [(n.lat, n.lon) for n in a.nodes] != [(n.lat, n.lon) for n in c.nodes]


@pytest.mark.parametrize("center", [CENTER, (-33.87, 151.21), (0.0, -78.5), (64.14, -21.94)])
def test_blocks_are_city_sized_in_real_metres(center: tuple[float, float]) -> None:
    city = City.generate(center, seed=1, size_m=2000)
    lo, hi = BLOCK_M[0] - 2 * NODE_JITTER_M, BLOCK_M[1] + 2 * NODE_JITTER_M
    for s in city.streets:
        na, nb = city.nodes[s.a], city.nodes[s.b]
        metres = haversine_m(na.lat, na.lon, nb.lat, nb.lon)
        assert metres == pytest.approx(s.length_m, rel=7e-3)  # sphere vs ellipsoid
        assert lo <= metres <= hi * 1.01


def test_city_has_a_few_arterials_and_a_depot() -> None:
    city = City.generate(CENTER, seed=3, size_m=4000)
    roads = [s.road for s in city.streets]
    arterial = roads.count(RoadClass.ARTERIAL)
    assert 0.1 * len(roads) < arterial < 0.5 * len(roads)
    assert {s.speed_limit_mps for s in city.streets} == {ARTERIAL_SPEED_MPS, LOCAL_SPEED_MPS}
    depot = city.nodes[city.depot]
    assert city.adjacency[city.depot]
    assert math.hypot(depot.x, depot.y) < 4000


def test_random_addresses_are_distinct_street_nodes() -> None:
    city = City.generate(CENTER, seed=3, size_m=2000)
    addresses = city.random_addresses(random.Random(1), 20)
    assert len({a.node for a in addresses}) == 20
    assert city.depot not in {a.node for a in addresses}
    for a in addresses:
        number, street = a.label.split(" ", 1)
        assert 1 <= int(number) <= 199
        assert street in {s.name for s in city.adjacency[a.node]}
        assert (a.lat, a.lon) == (city.nodes[a.node].lat, city.nodes[a.node].lon)


def _floyd_warshall(city: City, by: str) -> list[list[float]]:
    n = len(city.nodes)
    d = [[math.inf] * n for _ in range(n)]
    for i in range(n):
        d[i][i] = 0.0
    for s in city.streets:
        w = s.travel_time_s if by == "time" else s.length_m
        d[s.a][s.b] = d[s.b][s.a] = min(d[s.a][s.b], w)
    for k, i, j in itertools.product(range(n), repeat=3):
        if d[i][k] + d[k][j] < d[i][j]:
            d[i][j] = d[i][k] + d[k][j]
    return d


@pytest.mark.parametrize("by", ["time", "distance"])
def test_shortest_paths_match_floyd_warshall(by: str) -> None:
    city = City.generate(CENTER, seed=11, size_m=900)
    best = _floyd_warshall(city, by)
    pairs = list(itertools.combinations(range(len(city.nodes)), 2))
    for a, b in random.Random(2).sample(pairs, 60):
        path = city.shortest_path(a, b, by=by)  # type: ignore[arg-type]
        cost = path.travel_time_s if by == "time" else path.length_m
        assert cost == pytest.approx(best[a][b])
        assert path.nodes[0] == a and path.nodes[-1] == b
        for u, v in itertools.pairwise(path.nodes):
            assert any(s.other(u) == v for s in city.adjacency[u])


def _small_city() -> City:
    """A 3x3 grid, 100 m blocks; the top row (6-7-8) is an arterial.

    6 = 7 = 8
    |   |   |
    3 - 4 - 5
    |   |   |
    0 - 1 - 2
    """
    proj = LocalProjection(*CENTER)
    nodes = []
    for j, i in itertools.product(range(3), range(3)):
        lat, lon = proj.to_latlon(i * 100.0, j * 100.0)
        nodes.append(Node(j * 3 + i, i * 100.0, j * 100.0, lat, lon))
    streets = []
    for j, i in itertools.product(range(3), range(3)):
        n = j * 3 + i
        if i < 2:
            road = RoadClass.ARTERIAL if j == 2 else RoadClass.LOCAL
            streets.append(Street(n, n + 1, 100.0, road, f"row {j}"))
        if j < 2:
            streets.append(Street(n, n + 3, 100.0, RoadClass.LOCAL, f"col {i}"))
    return City(proj, nodes, streets, depot=0)


def test_small_grid_routes() -> None:
    city = _small_city()
    path = city.shortest_path(0, 8, by="distance")
    assert path.length_m == pytest.approx(400)
    assert len(path.nodes) == 5
    # 3 -> 5 by time: 200 m at 30 km/h (24 s) beats up, across the arterial and down (32 s).
    assert city.shortest_path(3, 5, by="time").nodes == (3, 4, 5)
    # 6 -> 8 stays on the arterial.
    fast = city.shortest_path(6, 8)
    assert fast.nodes == (6, 7, 8)
    assert fast.travel_time_s == pytest.approx(200 / ARTERIAL_SPEED_MPS)
    assert len(fast.points) == 3 and len(fast.speed_limits) == 2
    total = sum(haversine_m(*p, *q) for p, q in itertools.pairwise(fast.points))
    assert total == pytest.approx(200, rel=7e-3)


def test_no_route_between_separate_parts() -> None:
    city = _small_city()
    cut = City(city.projection, city.nodes, [s for s in city.streets if 8 not in (s.a, s.b)], 0)
    assert not cut.is_connected()
    with pytest.raises(NoRoute):
        cut.shortest_path(0, 8)


def test_path_join() -> None:
    city = _small_city()
    joined = city.shortest_path(0, 2, by="distance").join(city.shortest_path(2, 8, by="distance"))
    assert joined.nodes == (0, 1, 2, 5, 8)
    assert joined.length_m == pytest.approx(400)
    with pytest.raises(ValueError):
        city.shortest_path(0, 1).join(city.shortest_path(3, 4))
