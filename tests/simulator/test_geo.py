import math

import pytest

from simulator.geo import LocalProjection, haversine_m


@pytest.mark.parametrize("lat0", [0.0, 45.76, 52.37, -33.87, 64.15, 78.2])
def test_projection_distances_match_great_circle(lat0: float) -> None:
    proj = LocalProjection(lat0, 10.0)
    for x, y in [(1000.0, 0.0), (0.0, 1000.0), (700.0, -700.0), (-2500.0, 1800.0)]:
        lat, lon = proj.to_latlon(x, y)
        # The sphere and the ellipsoid differ by up to 0.6%; a wrong cos(lat) would be far off.
        assert haversine_m(lat0, 10.0, lat, lon) == pytest.approx(math.hypot(x, y), rel=7e-3)


@pytest.mark.parametrize(
    ("lat0", "per_deg_lat", "per_deg_lon"),
    # Lengths of a degree on the WGS84 ellipsoid (published tables).
    [(0.0, 110_574, 111_320), (45.0, 111_132, 78_847), (60.0, 111_412, 55_800)],
)
def test_projection_uses_ellipsoid_degree_lengths(
    lat0: float, per_deg_lat: float, per_deg_lon: float
) -> None:
    proj = LocalProjection(lat0, 0.0)
    assert proj.m_per_deg_lat == pytest.approx(per_deg_lat, abs=2)
    assert proj.m_per_deg_lon == pytest.approx(per_deg_lon, abs=2)


def test_projection_round_trip() -> None:
    proj = LocalProjection(52.37, 4.89)
    lat, lon = proj.to_latlon(1234.5, -678.9)
    x, y = proj.to_xy(lat, lon)
    assert x == pytest.approx(1234.5, abs=1e-6)
    assert y == pytest.approx(-678.9, abs=1e-6)
    assert lat < 52.37 and lon > 4.89


def test_projection_refuses_the_poles() -> None:
    with pytest.raises(ValueError):
        LocalProjection(89.0, 0.0)


def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-4)
