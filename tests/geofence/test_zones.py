import pickle
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely

from geofence import Area, Circle, Schedule, Zone, ZoneError, ZoneIndex
from geofence.zones import MAX_RADIUS_M, MAX_VERTICES, circle_segments

from . import _geodesy


def square(lat: float, lon: float, d: float = 0.01) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]


def feature(geometry: dict, **props: object) -> dict:
    return {"type": "Feature", "id": "z1", "geometry": geometry, "properties": props}


def index_contains(zone: Zone, lat: float, lon: float) -> bool:
    index = ZoneIndex()
    index.set(zone)
    p, _ = index.contains([lat], [lon])
    return p.size == 1


@pytest.mark.parametrize("lat", [0.0, 60.0, -70.0])
@pytest.mark.parametrize("radius", [30.0, 250.0, 5_000.0])
def test_circle_radius_is_metres_on_the_ellipsoid(lat: float, radius: float) -> None:
    zone = Zone.circle("c", lat, 20.0, radius)
    ring = np.asarray(zone.geometry.exterior.coords)
    # Polygon vertices sit on the circle (Vincenty distance, an independent formula).
    dists = [_geodesy.inverse(lat, 20.0, y, x) for x, y in ring]
    assert max(abs(d - radius) for d in dists) < 0.01
    # Membership uses the exact radius in every direction.
    for brg in range(0, 360, 15):
        assert index_contains(zone, *_geodesy.direct(lat, 20.0, brg, radius - 0.05))
        assert not index_contains(zone, *_geodesy.direct(lat, 20.0, brg, radius + 0.05))


def test_circle_polygon_sagitta_bound() -> None:
    for r in (10.0, 100.0, 2_000.0):
        n = circle_segments(r)
        sagitta = r * (1 - np.cos(np.pi / n))
        assert sagitta <= 0.5 + 1e-9 or n == 720


@pytest.mark.parametrize("lat", [0.0, 60.0, -70.0])
def test_corridor_width(lat: float) -> None:
    start = (lat, 10.0)
    end = _geodesy.direct(lat, 10.0, 30.0, 2_000.0)
    zone = Zone.corridor("k", [start, end], 40.0)
    mid = _geodesy.direct(lat, 10.0, 30.0, 1_000.0)
    for side in (120.0, 300.0):
        assert index_contains(zone, *_geodesy.direct(*mid, side, 19.5))
        assert not index_contains(zone, *_geodesy.direct(*mid, side, 20.5))
    # Round caps: within half the width of the end point, past the end.
    assert index_contains(zone, *_geodesy.direct(*end, 30.0, 19.0))
    assert not index_contains(zone, *_geodesy.direct(*end, 30.0, 21.0))


def test_circle_across_antimeridian_is_split_and_works() -> None:
    zone = Zone.circle("c", 0.0, 179.9995, 200.0)
    assert zone.geometry.geom_type == "MultiPolygon"
    assert zone.geometry.bounds[0] == -180.0 and zone.geometry.bounds[2] == 180.0
    assert index_contains(zone, 0.0, -179.9995)  # 111 m east, across the line
    assert not index_contains(zone, 0.0, -179.997)


def test_geojson_round_trips() -> None:
    schedule = {"tz": "Europe/Paris", "days": ["mon", "tue"], "hours": [["08:00", "18:30"]]}
    feats = [
        feature({"type": "Polygon", "coordinates": [square(48.0, 2.0)]}, name="A", kind="depot"),
        feature(
            {"type": "MultiPolygon", "coordinates": [[square(48.0, 2.0)], [square(48.1, 2.1)]]},
            tags=["x", "y"],
            dwell_threshold_s=300,
            schedule=schedule,
            color="red",
        ),
        feature({"type": "Point", "coordinates": [2.0, 48.0]}, radius_m=75.0, kind="customer_stop"),
        feature(
            {"type": "LineString", "coordinates": [[2.0, 48.0], [2.01, 48.0]]},
            width_m=30.0,
            kind="restricted",
        ),
    ]
    for f in feats:
        zone = Zone.from_geojson(f)
        again = Zone.from_geojson(zone.to_geojson())
        assert again == zone
        assert again.geometry.equals(zone.geometry)
    z = Zone.from_geojson(feats[1])
    assert z.extra["color"] == "red"
    assert z.to_geojson()["properties"]["schedule"] == schedule
    assert isinstance(Zone.from_geojson(feats[2]).shape, Circle)
    assert isinstance(Zone.from_geojson(feats[0]).shape, Area)


def test_zone_pickles() -> None:
    z = Zone.circle("c", 48.0, 2.0, 50.0, tags=frozenset({"a"}), extra={"k": 1})
    assert pickle.loads(pickle.dumps(z)) == z


BAD_CASES = [
    # (feature, field, words in the reason)
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
        "geometry",
        "Self-intersection",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}),
        "geometry",
        "zero area",
    ),
    (
        feature({"type": "Polygon", "coordinates": [square(48.0, 2.0, 1e-9)]}),
        "geometry",
        "zero area",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], [181, 0], [181, 1], [0, 0]]]}),
        "geometry.coordinates[0][1]",
        "longitude 181.0 out of range",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 91], [1, 0], [0, 0]]]}),
        "geometry.coordinates[0][1]",
        "latitude 91.0 out of range",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0.1, 0]]]}),
        "geometry.coordinates[0]",
        "not closed",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 0], ["a", 1], [1, 0], [0, 0]]]}),
        "geometry.coordinates[0][1]",
        "not a [lon, lat] position",
    ),
    (
        feature(
            {
                "type": "Polygon",
                "coordinates": [[[-179, 0], [179, 0], [179, 1], [-179, 1], [-179, 0]]],
            }
        ),
        "geometry.coordinates",
        "antimeridian",
    ),
    (
        feature({"type": "Polygon", "coordinates": [[[0, 80], [1, 86], [1, 80], [0, 80]]]}),
        "geometry.coordinates[0][1]",
        "within 85.0 degrees",
    ),
    (
        feature({"type": "Point", "coordinates": [2, 48]}, radius_m=0),
        "properties.radius_m",
        "positive",
    ),
    (
        feature({"type": "Point", "coordinates": [2, 48]}, radius_m=-5),
        "properties.radius_m",
        "positive",
    ),
    (
        feature({"type": "Point", "coordinates": [2, 48]}, radius_m=float("nan")),
        "properties.radius_m",
        "positive",
    ),
    (
        feature({"type": "Point", "coordinates": [2, 48]}, radius_m=MAX_RADIUS_M * 2),
        "properties.radius_m",
        "exceeds the limit",
    ),
    (feature({"type": "Point", "coordinates": [2, 48]}), "properties.radius_m", "required"),
    (
        feature({"type": "LineString", "coordinates": [[2, 48], [2.01, 48]]}, width_m=0),
        "properties.width_m",
        "positive",
    ),
    (
        feature({"type": "LineString", "coordinates": [[2, 48], [2.01, 48]]}, width_m=1e6),
        "properties.width_m",
        "exceeds the limit",
    ),
    (
        feature({"type": "LineString", "coordinates": [[2, 48], [2, 48]]}, width_m=10),
        "geometry.coordinates",
        "zero length",
    ),
    (
        feature({"type": "GeometryCollection", "geometries": []}),
        "geometry.type",
        "unsupported geometry type 'GeometryCollection'",
    ),
    (feature({"type": "MultiPoint", "coordinates": [[0, 0]]}), "geometry.type", "unsupported"),
    (
        feature({"type": "Polygon", "coordinates": [square(48.0, 2.0)]}, dwell_threshold_s=-1),
        "properties.dwell_threshold_s",
        "seconds",
    ),
    (
        feature({"type": "Polygon", "coordinates": [square(48.0, 2.0)]}, kind="Not A Word"),
        "properties.kind",
        "lower-case",
    ),
    (
        feature(
            {"type": "Polygon", "coordinates": [square(48.0, 2.0)]}, schedule={"tz": "Mars/Base"}
        ),
        "properties.schedule.tz",
        "unknown time zone",
    ),
    (
        feature(
            {"type": "Polygon", "coordinates": [square(48.0, 2.0)]},
            schedule={"tz": "UTC", "hours": [["25:00", "26:00"]]},
        ),
        "properties.schedule.hours",
        "HH:MM",
    ),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [2, 48]}}, "id", "missing"),
]


@pytest.mark.parametrize(("feat", "field", "words"), BAD_CASES)
def test_invalid_zones_are_rejected_with_a_reason(feat: dict, field: str, words: str) -> None:
    with pytest.raises(ZoneError) as info:
        Zone.from_geojson(feat)
    assert info.value.field == field
    assert words in info.value.reason


def test_too_many_vertices() -> None:
    n = MAX_VERTICES + 1
    theta = np.linspace(0, 2 * np.pi, n - 1, endpoint=False)
    ring = [[2 + 0.01 * np.cos(t), 48 + 0.01 * np.sin(t)] for t in theta]
    ring.append(ring[0])
    with pytest.raises(ZoneError) as info:
        Zone.from_geojson(feature({"type": "Polygon", "coordinates": [ring]}))
    assert "limit of 10000" in info.value.reason
    # Exactly at the limit is fine.
    ring = [*ring[: MAX_VERTICES - 1], ring[0]]
    assert Zone.from_geojson(feature({"type": "Polygon", "coordinates": [ring]})).id == "z1"


def test_shapely_polygon_validation_without_geojson() -> None:
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(ZoneError, match="Self-intersection"):
        Zone("b", Area(bowtie))
    with pytest.raises(ZoneError, match="expected Polygon"):
        Zone("b", Area(shapely.Point(0, 0)))


def ts_at(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp()


def test_schedule_days_hours_and_time_zone() -> None:
    s = Schedule.from_json({"tz": "Europe/Paris", "days": ["mon"], "hours": [["08:00", "18:00"]]})
    assert s.is_active(ts_at("Europe/Paris", 2024, 6, 3, 8, 0))  # Monday 08:00 local
    assert s.is_active(ts_at("Europe/Paris", 2024, 6, 3, 17, 59))
    assert not s.is_active(ts_at("Europe/Paris", 2024, 6, 3, 18, 0))
    assert not s.is_active(ts_at("Europe/Paris", 2024, 6, 3, 7, 59))
    assert not s.is_active(ts_at("Europe/Paris", 2024, 6, 4, 12, 0))  # Tuesday
    # 07:30 UTC on that Monday is 09:30 in Paris (summer time).
    assert s.is_active(ts_at("UTC", 2024, 6, 3, 7, 30))


def test_schedule_overnight_range_belongs_to_its_start_day() -> None:
    s = Schedule.from_json({"tz": "UTC", "days": ["fri"], "hours": [["22:00", "06:00"]]})
    assert s.is_active(ts_at("UTC", 2024, 6, 7, 23, 0))  # Friday night
    assert s.is_active(ts_at("UTC", 2024, 6, 8, 5, 59))  # Saturday early, still Friday's
    assert not s.is_active(ts_at("UTC", 2024, 6, 8, 23, 0))  # Saturday night
    assert not s.is_active(ts_at("UTC", 2024, 6, 7, 5, 0))  # Friday early: Thursday's range


def test_zone_without_schedule_is_always_active() -> None:
    assert Zone.circle("c", 0, 0, 10).is_active(0.0)
