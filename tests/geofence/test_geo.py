import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence.geo import (
    LocalFrame,
    destination,
    haversine_m,
    haversine_m_array,
    initial_bearing_deg,
    initial_bearing_deg_array,
    normalize_lon,
    split_antimeridian,
)

from . import _geodesy

lats = st.floats(-80, 80)
lons = st.floats(-180, 180)


def test_haversine_known_distance() -> None:
    # One degree of latitude on the mean-radius sphere.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(6_371_008.8 * math.pi / 180, rel=1e-12)
    # Paris to London, great circle on the sphere: about 343.9 km.
    assert haversine_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_900, rel=2e-3)


def test_haversine_within_0_6_percent_of_ellipsoid() -> None:
    for lat in (0.0, 45.0, 60.0, -70.0):
        for brg in (0.0, 45.0, 90.0):
            la, lo = _geodesy.direct(lat, 10.0, brg, 5_000.0)
            assert haversine_m(lat, 10.0, la, lo) == pytest.approx(5_000.0, rel=6e-3)


def test_antimeridian_distance_is_short() -> None:
    assert haversine_m(0.0, 179.9995, 0.0, -179.9995) == pytest.approx(111.2, abs=0.5)
    assert haversine_m_array(0.0, [179.9995], 0.0, [-179.9995])[0] == pytest.approx(111.2, abs=0.5)


def test_bearing_cardinal_points() -> None:
    assert initial_bearing_deg(0, 0, 1, 0) == pytest.approx(0.0)
    assert initial_bearing_deg(0, 0, 0, 1) == pytest.approx(90.0)
    assert initial_bearing_deg(0, 0, -1, 0) == pytest.approx(180.0)
    assert initial_bearing_deg(0, 0, 0, -1) == pytest.approx(270.0)
    # Across the antimeridian, going east.
    assert initial_bearing_deg(0, 179.9, 0, -179.9) == pytest.approx(90.0)


@given(lats, lons, lats, lons)
def test_array_variants_match_scalar(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    d = haversine_m_array([lat1], [lon1], [lat2], [lon2])[0]
    assert d == pytest.approx(haversine_m(lat1, lon1, lat2, lon2), rel=1e-9, abs=1e-6)
    b = initial_bearing_deg_array([lat1], [lon1], [lat2], [lon2])[0]
    assert b == pytest.approx(initial_bearing_deg(lat1, lon1, lat2, lon2), abs=1e-6)


@given(lats, lons, st.floats(0, 360), st.floats(1, 100_000))
def test_destination_round_trip(lat: float, lon: float, brg: float, dist: float) -> None:
    la, lo = destination(lat, lon, brg, dist)
    assert -180 <= lo < 180
    assert haversine_m(lat, lon, la, lo) == pytest.approx(dist, rel=1e-6)


@given(st.floats(-85, 85), lons, st.floats(-50_000, 50_000), st.floats(-50_000, 50_000))
def test_local_frame_round_trip(lat0: float, lon0: float, x: float, y: float) -> None:
    f = LocalFrame(lat0, lon0)
    la, lo = f.latlon(x, y)
    x2, y2 = f.xy(la, lo)
    assert abs(x2 - x) < 1e-3 and abs(y2 - y) < 1e-3


@pytest.mark.parametrize("lat0", [0.0, 60.0, -70.0])
def test_local_frame_distances_are_ellipsoidal_metres(lat0: float) -> None:
    f = LocalFrame(lat0, 25.0)
    for brg in range(0, 360, 30):
        la, lo = _geodesy.direct(lat0, 25.0, brg, 2_000.0)
        x, y = f.xy(la, lo)
        assert math.hypot(x, y) == pytest.approx(f.plane_radius_m(2_000.0), abs=2e-3)
        assert float(f.surface_distance_m(x, y)) == pytest.approx(2_000.0, abs=2e-3)


def test_local_frame_has_no_antimeridian_seam() -> None:
    f = LocalFrame(10.0, 179.9999)
    x_east, _ = f.xy(10.0, -179.9999)
    assert x_east == pytest.approx(21.9, abs=0.1)  # 0.0002 degrees east at 10N
    _, lon = f.to_latlon(np.array([50.0]), np.array([0.0]), wrap=False)
    assert lon[0] > 180.0
    _, lon = f.to_latlon(np.array([50.0]), np.array([0.0]))
    assert -180.0 <= lon[0] < -179.99


def test_normalize_lon() -> None:
    assert normalize_lon(180.0) == -180.0
    assert normalize_lon(190.0) == pytest.approx(-170.0)
    assert normalize_lon(-190.0) == pytest.approx(170.0)


def test_split_antimeridian() -> None:
    import shapely

    box = shapely.box(179.0, 0.0, 181.0, 1.0)
    parts = split_antimeridian(box)
    assert parts.geom_type == "MultiPolygon"
    xmin, _, xmax, _ = parts.bounds
    assert xmin == -180.0 and xmax == 180.0
    assert parts.area == pytest.approx(2.0)
    inside = shapely.box(0, 0, 1, 1)
    assert split_antimeridian(inside) is inside


@given(
    st.floats(-85, 85),
    st.floats(-180, 180),
    st.lists(st.tuples(st.floats(-85, 85), st.floats(-180, 180)), min_size=0, max_size=40),
)
def test_one_point_against_a_few_agrees_with_the_vectorised_form(
    lat: float, lon: float, others: list[tuple[float, float]]
) -> None:
    """The point-by-point path (a fix against a route's few stops) gives what the numpy
    path gives (to a micrometre, or a part in 10^12 of the distance), for any size either
    side of the threshold."""
    lats = np.array([o[0] for o in others], dtype=np.float64)
    lons = np.array([o[1] for o in others], dtype=np.float64)
    few = haversine_m_array(lat, lon, lats, lons)
    vectorised = haversine_m_array(np.full(len(others), lat), np.full(len(others), lon), lats, lons)
    assert few.dtype == np.float64 and few.shape == (len(others),)
    np.testing.assert_allclose(few, vectorised, rtol=1e-12, atol=1e-6)
