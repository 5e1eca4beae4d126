"""Zones: named areas that vehicles enter, leave, dwell in and cross.

A :class:`Zone` is an immutable value: an id, a name, a kind (``depot``, ``customer_stop``,
``restricted``, ``service_area`` or any other lower-case word), tags, an optional dwell
threshold, an optional weekly :class:`Schedule`, and a shape:

* :class:`Area`: a Polygon or MultiPolygon in lon/lat, edges straight in lon/lat as GeoJSON
  (RFC 7946) defines them;
* :class:`Circle`: a centre and a radius in metres (GeoJSON extension: a ``Point`` geometry with
  ``properties.radius_m``);
* :class:`Corridor`: a path and a total width in metres (GeoJSON extension: a ``LineString``
  geometry with ``properties.width_m``), i.e. every point within ``width_m / 2`` of the path.

Circles and corridors are built in metres in a :class:`~geofence.geo.LocalFrame` around their
centre and converted to a lon/lat polygon (:attr:`Zone.geometry`), dense enough that a circle's
polygon is never more than :data:`CIRCLE_MAX_SAGITTA_M` inside the true circle. The engine tests
circles against their exact radius, not the polygon.

Antimeridian: circles and corridors that cross +/-180 degrees are split into a MultiPolygon
automatically. An Area must already be split there (RFC 7946 section 3.1.9); one whose
longitudes span more than 180 degrees is rejected. Zones must keep clear of the poles
(:data:`MAX_ABS_LAT_DEG`).

Every invalid input raises :class:`~geofence.errors.ZoneError` naming the field and the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, mapping

from .errors import ZoneError
from .geo import LocalFrame, split_antimeridian, unwrapped_center

MAX_VERTICES: Final = 10_000
MAX_RADIUS_M: Final = 50_000.0
MAX_CORRIDOR_WIDTH_M: Final = 5_000.0
MAX_EXTENT_M: Final = 500_000.0  # longest side of a zone's bounding box in the local plane
MIN_AREA_M2: Final = 1.0
MAX_ABS_LAT_DEG: Final = 85.0
MAX_DWELL_THRESHOLD_S: Final = 30 * 86_400.0
MAX_ID_LENGTH: Final = 200
CIRCLE_MAX_SAGITTA_M: Final = 0.5
CIRCLE_MIN_SEGMENTS: Final = 32
CIRCLE_MAX_SEGMENTS: Final = 720
CORRIDOR_MAX_EDGE_M: Final = 250.0  # plane edges longer than this are split before conversion

KNOWN_KINDS: Final = frozenset({"depot", "customer_stop", "restricted", "service_area", "other"})
_KIND_RE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM_RE: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")
_M_PER_DEG_LAT: Final = 111_000.0

Polygonal: TypeAlias = Polygon | MultiPolygon


@dataclass(frozen=True, slots=True)
class Area:
    """A Polygon or MultiPolygon shape in lon/lat."""

    geometry: Polygonal


@dataclass(frozen=True, slots=True)
class Circle:
    """All points within ``radius_m`` metres of ``(lat, lon)``."""

    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class Corridor:
    """All points within ``width_m / 2`` metres of a path of ``(lat, lon)`` points."""

    path: tuple[tuple[float, float], ...]
    width_m: float


Shape = Area | Circle | Corridor


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly activity of a zone in local time.

    ``days`` holds weekday numbers (0 = Monday). ``ranges`` holds ``(start, end)`` minutes from
    local midnight, end exclusive; a range whose start is after its end runs past midnight and
    belongs to the day it starts on (``mon 22:00-06:00`` covers Tuesday 03:00). JSON form:
    ``{"tz": "Europe/Paris", "days": ["mon", "fri"], "hours": [["08:00", "18:00"]]}``.
    """

    tz: str
    days: frozenset[int] = frozenset(range(7))
    ranges: tuple[tuple[int, int], ...] = ((0, 1440),)
    _tzinfo: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        f = "properties.schedule"
        try:
            tzinfo = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ZoneError(f"{f}.tz", f"unknown time zone {self.tz!r}") from None
        object.__setattr__(self, "_tzinfo", tzinfo)
        if not self.days or not all(isinstance(d, int) and 0 <= d <= 6 for d in self.days):
            raise ZoneError(f"{f}.days", "must be a non-empty set of weekdays 0-6 (Monday = 0)")
        if not self.ranges:
            raise ZoneError(f"{f}.hours", "must hold at least one time range")
        for start, end in self.ranges:
            if not (0 <= start <= 1440 and 0 <= end <= 1440) or start == end:
                raise ZoneError(f"{f}.hours", f"invalid range {start}-{end} (minutes)")

    def is_active(self, ts: float) -> bool:
        """Whether the schedule is active at epoch time ``ts``."""
        local = datetime.fromtimestamp(ts, self._tzinfo)
        minute = local.hour * 60 + local.minute + local.second / 60.0
        day = local.weekday()
        for start, end in self.ranges:
            if start < end:
                if day in self.days and start <= minute < end:
                    return True
            elif (day in self.days and minute >= start) or (
                (day - 1) % 7 in self.days and minute < end
            ):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        """The JSON form described in the class docstring."""
        return {
            "tz": self.tz,
            "days": [_DAY_NAMES[d] for d in sorted(self.days)],
            "hours": [[_hhmm(s), _hhmm(e)] for s, e in self.ranges],
        }

    @classmethod
    def from_json(cls, obj: object) -> Schedule:
        """Parse the JSON form; raises :class:`ZoneError`."""
        f = "properties.schedule"
        if not isinstance(obj, Mapping):
            raise ZoneError(f, "must be an object")
        unknown = set(obj) - {"tz", "days", "hours"}
        if unknown:
            raise ZoneError(f, f"unknown keys {sorted(unknown)}")
        tz = obj.get("tz")
        if not isinstance(tz, str):
            raise ZoneError(f"{f}.tz", "must be an IANA time zone name")
        days_raw = obj.get("days", list(_DAY_NAMES))
        if not isinstance(days_raw, list):
            raise ZoneError(f"{f}.days", "must be a list of day names")
        days: set[int] = set()
        for d in days_raw:
            if isinstance(d, str) and d.lower()[:3] in _DAY_NAMES:
                days.add(_DAY_NAMES.index(d.lower()[:3]))
            elif isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6:
                days.add(d)
            else:
                raise ZoneError(f"{f}.days", f"unknown day {d!r}")
        hours_raw = obj.get("hours", [["00:00", "24:00"]])
        if not isinstance(hours_raw, list):
            raise ZoneError(f"{f}.hours", "must be a list of [start, end] pairs")
        ranges = []
        for pair in hours_raw:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise ZoneError(f"{f}.hours", f"{pair!r} is not a [start, end] pair")
            ranges.append((_parse_hhmm(pair[0], f), _parse_hhmm(pair[1], f)))
        return cls(tz=tz, days=frozenset(days), ranges=tuple(ranges))


def _parse_hhmm(value: object, f: str) -> int:
    if not isinstance(value, str) or not _HHMM_RE.fullmatch(value):
        raise ZoneError(f"{f}.hours", f"{value!r} is not a HH:MM time")
    h, m = value.split(":")
    return int(h) * 60 + int(m)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_coordinates(lon: np.ndarray, lat: np.ndarray, f: str) -> None:
    if lon.size > MAX_VERTICES:
        raise ZoneError(f, f"{lon.size} vertices, more than the limit of {MAX_VERTICES}")
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ZoneError(f, "coordinates must be finite numbers")
    bad_lon = np.abs(lon) > 180.0
    if bad_lon.any():
        raise ZoneError(f, f"longitude {float(lon[bad_lon][0])} out of range [-180, 180]")
    bad_lat = np.abs(lat) > 90.0
    if bad_lat.any():
        raise ZoneError(f, f"latitude {float(lat[bad_lat][0])} out of range [-90, 90]")
    if (np.abs(lat) > MAX_ABS_LAT_DEG).any():
        raise ZoneError(f, f"zones must stay within {MAX_ABS_LAT_DEG} degrees of the equator")


def _check_extent(planar: shapely.Geometry, f: str) -> None:
    xmin, ymin, xmax, ymax = planar.bounds
    side = max(xmax - xmin, ymax - ymin)
    if side > MAX_EXTENT_M:
        raise ZoneError(f, f"extent {side / 1000:.0f} km exceeds {MAX_EXTENT_M / 1000:.0f} km")


def polygonal_part(geom: shapely.Geometry) -> Polygonal:
    """The polygons of ``geom`` (splitting can leave stray boundary lines)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(part.geoms)
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _frame_for(lon: np.ndarray, lat: np.ndarray) -> LocalFrame:
    clat, clon = unwrapped_center(lon, lat)
    return LocalFrame(clat, clon)


def _build_area(shape: Area) -> tuple[Polygonal, LocalFrame]:
    g = shape.geometry
    if not isinstance(g, Polygon | MultiPolygon):
        raise ZoneError("geometry.type", f"expected Polygon or MultiPolygon, got {g.geom_type}")
    if g.is_empty:
        raise ZoneError("geometry", "empty polygon")
    coords = shapely.get_coordinates(g)
    lon, lat = coords[:, 0], coords[:, 1]
    _check_coordinates(lon, lat, "geometry.coordinates")
    parts = g.geoms if isinstance(g, MultiPolygon) else [g]
    if any(p.bounds[2] - p.bounds[0] > 180.0 for p in parts):
        raise ZoneError(
            "geometry.coordinates",
            "spans more than 180 degrees of longitude: a shape across the antimeridian must be "
            "split at +/-180 into a MultiPolygon (RFC 7946 section 3.1.9)",
        )
    frame = _frame_for(lon, lat)
    reason = shapely.is_valid_reason(g)
    if reason != "Valid Geometry":
        if shapely.area(shapely.convex_hull(g)) == 0.0:
            raise ZoneError("geometry", "zero area: all vertices are on one line")
        raise ZoneError("geometry", f"invalid polygon: {reason}")
    planar = frame.project(g)
    if planar.area < MIN_AREA_M2:
        raise ZoneError("geometry", f"zero area: {planar.area:.3g} m2 is below {MIN_AREA_M2} m2")
    _check_extent(planar, "geometry")
    return g, frame


def _check_center(lat: float, lon: float, f: str) -> None:
    if not (_is_number(lat) and _is_number(lon)):
        raise ZoneError(f, "centre must be numbers")
    _check_coordinates(np.array([lon], dtype=float), np.array([lat], dtype=float), f)


def circle_segments(radius_m: float) -> int:
    """Vertex count of the polygon of a circle of ``radius_m``: enough that no edge is more than
    :data:`CIRCLE_MAX_SAGITTA_M` inside the circle."""
    if radius_m <= CIRCLE_MAX_SAGITTA_M:
        return CIRCLE_MIN_SEGMENTS
    n = math.ceil(math.pi / math.acos(1.0 - CIRCLE_MAX_SAGITTA_M / radius_m))
    return max(CIRCLE_MIN_SEGMENTS, min(CIRCLE_MAX_SEGMENTS, n))


def circle_polygon(frame: LocalFrame, radius_m: float, *, circumscribed: bool = False) -> Polygonal:
    """Lon/lat polygon of the circle of surface radius ``radius_m`` around ``frame``'s origin.

    Vertices lie on the circle; with ``circumscribed`` the edges touch it from outside instead,
    so the polygon covers the whole circle (what a bounding-box index needs)."""
    n = circle_segments(radius_m)
    r = frame.plane_radius_m(radius_m)
    if circumscribed:
        r /= math.cos(math.pi / n)
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    lat, lon = frame.to_latlon(r * np.sin(theta), r * np.cos(theta), wrap=False)
    ring = np.column_stack([lon, lat])
    return polygonal_part(split_antimeridian(Polygon(ring)))


def _build_circle(shape: Circle) -> tuple[Polygonal, LocalFrame]:
    _check_center(shape.lat, shape.lon, "geometry.coordinates")
    r = shape.radius_m
    if not _is_number(r) or not math.isfinite(r) or r <= 0:
        raise ZoneError("properties.radius_m", f"must be a positive number of metres, got {r!r}")
    if r > MAX_RADIUS_M:
        raise ZoneError("properties.radius_m", f"{r} m exceeds the limit of {MAX_RADIUS_M} m")
    if abs(shape.lat) + r / _M_PER_DEG_LAT > MAX_ABS_LAT_DEG:
        raise ZoneError("geometry.coordinates", f"circle reaches past {MAX_ABS_LAT_DEG} degrees")
    frame = LocalFrame(shape.lat, shape.lon)
    return circle_polygon(frame, r), frame


def _build_corridor(shape: Corridor) -> tuple[Polygonal, LocalFrame]:
    f = "geometry.coordinates"
    if len(shape.path) < 2:
        raise ZoneError(f, "a corridor path needs at least two points")
    if len(shape.path) > MAX_VERTICES:
        raise ZoneError(f, f"{len(shape.path)} vertices, more than the limit of {MAX_VERTICES}")
    try:
        pts = np.array(shape.path, dtype=np.float64)
    except (TypeError, ValueError):
        raise ZoneError(f, "path points must be (lat, lon) number pairs") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ZoneError(f, "path points must be (lat, lon) number pairs")
    lat, lon = pts[:, 0], pts[:, 1]
    _check_coordinates(lon, lat, f)
    w = shape.width_m
    if not _is_number(w) or not math.isfinite(w) or w <= 0:
        raise ZoneError("properties.width_m", f"must be a positive number of metres, got {w!r}")
    if w > MAX_CORRIDOR_WIDTH_M:
        raise ZoneError(
            "properties.width_m", f"{w} m exceeds the limit of {MAX_CORRIDOR_WIDTH_M} m"
        )
    if float(np.abs(lat).max()) + w / 2 / _M_PER_DEG_LAT > MAX_ABS_LAT_DEG:
        raise ZoneError(f, f"corridor reaches past {MAX_ABS_LAT_DEG} degrees")
    frame = _frame_for(lon, lat)
    x, y = frame.to_xy(lat, lon)
    line = LineString(np.column_stack([x, y]))
    if line.length < 1e-3:
        raise ZoneError(f, "zero length: all path points coincide")
    _check_extent(line, f)
    half = frame.plane_radius_m(w / 2.0)
    quad = max(8, circle_segments(w / 2.0) // 4)
    planar = shapely.segmentize(line.buffer(half, quad_segs=quad), CORRIDOR_MAX_EDGE_M)
    return polygonal_part(split_antimeridian(frame.unproject(planar))), frame


@dataclass(frozen=True)
class Zone:
    """An immutable, validated zone. Construct it directly with a :data:`Shape`, with the
    :meth:`circle`, :meth:`corridor` and :meth:`polygon` helpers, or from GeoJSON with
    :meth:`from_geojson`. Construction raises :class:`ZoneError` on any invalid field.

    ``geometry`` (lon/lat Polygon or MultiPolygon) and ``frame`` (a local metric plane around the
    zone) are derived from ``shape``. ``extra`` keeps the other GeoJSON properties so that
    :meth:`to_geojson` returns what was given.
    """

    id: str
    shape: Shape
    name: str = ""
    kind: str = "other"
    tags: frozenset[str] = frozenset()
    dwell_threshold_s: float | None = None
    schedule: Schedule | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    geometry: Polygonal = field(init=False, repr=False, compare=False, hash=False)
    frame: LocalFrame = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > MAX_ID_LENGTH:
            raise ZoneError("id", f"must be a non-empty string of at most {MAX_ID_LENGTH} chars")
        if not isinstance(self.name, str):
            raise ZoneError("properties.name", "must be a string")
        if not isinstance(self.kind, str) or not _KIND_RE.fullmatch(self.kind):
            raise ZoneError("properties.kind", f"{self.kind!r} is not a lower-case word")
        if not all(isinstance(t, str) for t in self.tags):
            raise ZoneError("properties.tags", "must be strings")
        object.__setattr__(self, "tags", frozenset(self.tags))
        d = self.dwell_threshold_s
        if d is not None and (
            not _is_number(d) or not math.isfinite(d) or not 0 < d <= MAX_DWELL_THRESHOLD_S
        ):
            raise ZoneError(
                "properties.dwell_threshold_s",
                f"must be null or a number of seconds in (0, {MAX_DWELL_THRESHOLD_S:.0f}]",
            )
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        shape = self.shape
        if isinstance(shape, Area):
            geom, frame = _build_area(shape)
        elif isinstance(shape, Circle):
            geom, frame = _build_circle(shape)
        elif isinstance(shape, Corridor):
            geom, frame = _build_corridor(shape)
        else:
            raise ZoneError("geometry.type", f"unsupported shape {type(shape).__name__}")
        shapely.prepare(geom)
        object.__setattr__(self, "geometry", geom)
        object.__setattr__(self, "frame", frame)

    def __reduce__(self) -> tuple[type[Zone], tuple[Any, ...]]:
        return type(self), (
            self.id,
            self.shape,
            self.name,
            self.kind,
            self.tags,
            self.dwell_threshold_s,
            self.schedule,
            dict(self.extra),
        )

    @classmethod
    def circle(cls, id: str, lat: float, lon: float, radius_m: float, **kw: Any) -> Zone:
        """A circular zone; ``kw`` are the other :class:`Zone` fields."""
        return cls(id=id, shape=Circle(lat, lon, radius_m), **kw)

    @classmethod
    def corridor(
        cls, id: str, path: Iterable[tuple[float, float]], width_m: float, **kw: Any
    ) -> Zone:
        """A corridor zone around ``path`` of ``(lat, lon)`` points."""
        return cls(
            id=id, shape=Corridor(tuple((float(a), float(b)) for a, b in path), width_m), **kw
        )

    @classmethod
    def polygon(
        cls,
        id: str,
        exterior: Sequence[tuple[float, float]],
        holes: Sequence[Sequence[tuple[float, float]]] = (),
        **kw: Any,
    ) -> Zone:
        """A polygon zone from rings of ``(lat, lon)`` points (closed or not)."""

        def ring(pts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
            return [(lon, lat) for lat, lon in pts]

        return cls(id=id, shape=Area(Polygon(ring(exterior), [ring(h) for h in holes])), **kw)

    @property
    def center(self) -> tuple[float, float]:
        """``(lat, lon)`` of the zone's local frame origin (a circle's centre)."""
        return self.frame.lat0, self.frame.lon0

    def is_active(self, ts: float) -> bool:
        """Whether the zone produces events at epoch time ``ts`` (always, without schedule)."""
        return self.schedule is None or self.schedule.is_active(ts)

    def to_geojson(self) -> dict[str, Any]:
        """The zone as a GeoJSON Feature (with the circle/corridor extensions)."""
        props: dict[str, Any] = dict(self.extra)
        props.update(
            name=self.name,
            kind=self.kind,
            tags=sorted(self.tags),
            dwell_threshold_s=self.dwell_threshold_s,
            schedule=self.schedule.to_json() if self.schedule else None,
        )
        shape = self.shape
        geometry: dict[str, Any]
        if isinstance(shape, Circle):
            geometry = {"type": "Point", "coordinates": [shape.lon, shape.lat]}
            props["radius_m"] = shape.radius_m
        elif isinstance(shape, Corridor):
            geometry = {"type": "LineString", "coordinates": [[lo, la] for la, lo in shape.path]}
            props["width_m"] = shape.width_m
        else:
            geometry = _listify(mapping(shape.geometry))
        return {"type": "Feature", "id": self.id, "geometry": geometry, "properties": props}

    @classmethod
    def from_geojson(cls, feature: object) -> Zone:
        """Parse a GeoJSON Feature; raises :class:`ZoneError` naming the bad field."""
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise ZoneError("type", "must be a GeoJSON Feature object")
        props = feature.get("properties") or {}
        if not isinstance(props, Mapping):
            raise ZoneError("properties", "must be an object")
        props = dict(props)
        zid = feature.get("id", props.pop("id", None))
        if isinstance(zid, int) and not isinstance(zid, bool):
            zid = str(zid)
        if not isinstance(zid, str):
            raise ZoneError("id", "missing: set the feature id or properties.id")
        geom = feature.get("geometry")
        if not isinstance(geom, Mapping):
            raise ZoneError("geometry", "must be a GeoJSON geometry object")
        gtype = geom.get("type")
        coords = geom.get("coordinates")
        shape: Shape
        if gtype == "Polygon":
            shape = Area(_parse_polygon(coords, "geometry.coordinates", [0]))
        elif gtype == "MultiPolygon":
            if not isinstance(coords, list) or not coords:
                raise ZoneError("geometry.coordinates", "must be a non-empty list of polygons")
            budget = [0]
            parts = [
                _parse_polygon(p, f"geometry.coordinates[{i}]", budget)
                for i, p in enumerate(coords)
            ]
            shape = Area(MultiPolygon(parts))
        elif gtype == "Point":
            lon, lat = _parse_position(coords, "geometry.coordinates")
            if "radius_m" not in props:
                raise ZoneError("properties.radius_m", "required for a Point (circle) zone")
            shape = Circle(lat, lon, props.pop("radius_m"))
        elif gtype == "LineString":
            if not isinstance(coords, list):
                raise ZoneError("geometry.coordinates", "must be a list of positions")
            if len(coords) > MAX_VERTICES:
                raise ZoneError(
                    "geometry.coordinates",
                    f"{len(coords)} vertices, more than the limit of {MAX_VERTICES}",
                )
            pts = [_parse_position(c, f"geometry.coordinates[{i}]") for i, c in enumerate(coords)]
            if "width_m" not in props:
                raise ZoneError("properties.width_m", "required for a LineString (corridor) zone")
            shape = Corridor(tuple((la, lo) for lo, la in pts), props.pop("width_m"))
        else:
            raise ZoneError(
                "geometry.type",
                f"unsupported geometry type {gtype!r}: expected Polygon, MultiPolygon, "
                "Point (circle, with radius_m) or LineString (corridor, with width_m)",
            )
        props.pop("radius_m", None)
        props.pop("width_m", None)
        tags = props.pop("tags", None) or []
        if not isinstance(tags, list):
            raise ZoneError("properties.tags", "must be a list of strings")
        schedule_raw = props.pop("schedule", None)
        return cls(
            id=zid,
            shape=shape,
            name=props.pop("name", None) or "",
            kind=props.pop("kind", None) or "other",
            tags=frozenset(tags),
            dwell_threshold_s=props.pop("dwell_threshold_s", None),
            schedule=None if schedule_raw is None else Schedule.from_json(schedule_raw),
            extra=props,
        )


def _listify(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [_listify(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    return obj


def _parse_position(p: object, f: str) -> tuple[float, float]:
    if not isinstance(p, list | tuple) or len(p) < 2 or not all(_is_number(v) for v in p[:2]):
        raise ZoneError(f, f"{p!r} is not a [lon, lat] position")
    lon, lat = float(p[0]), float(p[1])
    _check_coordinates(np.array([lon]), np.array([lat]), f)
    return lon, lat


def _parse_polygon(rings: object, f: str, budget: list[int]) -> Polygon:
    """Parse GeoJSON polygon rings, counting vertices into ``budget`` so a huge input is
    rejected before any geometry is built."""
    if not isinstance(rings, list) or not rings:
        raise ZoneError(f, "a polygon needs at least an exterior ring")
    parsed: list[list[tuple[float, float]]] = []
    for i, ring in enumerate(rings):
        rf = f"{f}[{i}]"
        if not isinstance(ring, list):
            raise ZoneError(rf, "a ring must be a list of positions")
        budget[0] += len(ring)
        if budget[0] > MAX_VERTICES:
            raise ZoneError(f, f"more than the limit of {MAX_VERTICES} vertices")
        pts = [_parse_position(c, f"{rf}[{j}]") for j, c in enumerate(ring)]
        if len(pts) < 4:
            raise ZoneError(rf, f"a ring needs at least 4 positions, got {len(pts)}")
        if pts[0] != pts[-1]:
            raise ZoneError(rf, "ring is not closed: first and last positions differ")
        parsed.append(pts)
    return Polygon(parsed[0], parsed[1:])
