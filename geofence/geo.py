"""Metres-correct geodesy: distances, bearings and a local metric plane.

Conventions used throughout :mod:`geofence`:

* Python-level points are ``(lat, lon)`` in degrees. Shapely geometries and GeoJSON are
  ``(lon, lat)``, i.e. ``(x, y)``. Functions that take shapely geometries say so.
* Every function that has an ``_array`` twin is the scalar version of the same formula; the twin
  takes numpy arrays (or anything broadcastable) and returns ``float64`` arrays.

Two earth models are used, each where it is accurate enough and cheap:

* :func:`haversine_m`, :func:`initial_bearing_deg` and :func:`destination` work on a sphere of
  the mean earth radius :data:`EARTH_RADIUS_M`. Against the WGS84 ellipsoid they are within
  0.6 %, which is plenty for ETAs, jump checks and ranking.
* :class:`LocalFrame` is the east-north tangent plane of the WGS84 ellipsoid at a reference
  point, computed through earth-centred (ECEF) coordinates. It is what zone shapes are built
  and buffered in: within 50 km of the reference, a surface distance ``s`` from the origin
  appears in the plane as ``R sin(s/R)`` (short by ``s**3 / 6R**2``: 4 mm at 10 km, 0.5 m at
  50 km), and :meth:`LocalFrame.plane_radius_m` converts exactly between the two.

Antimeridian: every function accepts any longitude and takes longitude differences modulo
360 degrees, so two points either side of +/-180 degrees are as close as they are on the
ground. :class:`LocalFrame` has no seam at all because it goes through ECEF. Longitudes it
returns are continuous around the reference (they may leave [-180, 180) when ``wrap=False``),
which is what :func:`split_antimeridian` expects. The poles are the only places these
functions degrade: bearings are undefined there and zones are kept away from them
(see :mod:`geofence.zones`).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import shapely
import shapely.affinity
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

FloatArray = NDArray[np.float64]

EARTH_RADIUS_M: Final = 6_371_008.8  # IUGG mean radius
WGS84_A_M: Final = 6_378_137.0
WGS84_F: Final = 1 / 298.257223563
WGS84_E2: Final = WGS84_F * (2 - WGS84_F)

_GEODETIC_ITERATIONS: Final = 5


def normalize_lon(lon: float) -> float:
    """Return ``lon`` wrapped into [-180, 180)."""
    return (lon + 180.0) % 360.0 - 180.0


def normalize_lon_array(lon: ArrayLike) -> FloatArray:
    """Vectorised :func:`normalize_lon`."""
    return np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0) - 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points (spherical earth)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


SMALL_ARRAY: Final = 32  # one point against at most this many: plain math beats numpy's calls


def haversine_m_array(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike
) -> FloatArray:
    """Vectorised :func:`haversine_m`; arguments broadcast against each other.

    One point against a few (a vehicle against its route's stops, every fix): each of the
    dozen numpy calls costs more than the arithmetic on so few elements, so that case is
    computed point by point with :func:`haversine_m`, the same formula."""
    if (
        isinstance(lat1, float | int)
        and isinstance(lon1, float | int)
        and isinstance(lat2, np.ndarray)
        and isinstance(lon2, np.ndarray)
        and lat2.ndim == 1
        and lat2.shape == lon2.shape
        and lat2.size <= SMALL_ARRAY
    ):
        return np.array(
            [
                haversine_m(lat1, lon1, a, b)
                for a, b in zip(lat2.tolist(), lon2.tolist(), strict=True)
            ],
            dtype=np.float64,
        )
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(1.0, h)))


def initial_bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north in
    [0, 360). Undefined (returns 0) for coincident points."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def initial_bearing_deg_array(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike
) -> FloatArray:
    """Vectorised :func:`initial_bearing_deg`."""
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.mod(np.degrees(np.arctan2(y, x)), 360.0)


def destination(
    lat: float, lon: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point ``distance_m`` along the great circle from ``(lat, lon)`` at the initial
    ``bearing_deg``; returns ``(lat, lon)`` with lon in [-180, 180)."""
    d = distance_m / EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1 = math.radians(lat)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = math.radians(lon) + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), normalize_lon(math.degrees(l2))


def gaussian_radius_m(lat: float) -> float:
    """Gaussian mean radius of curvature of WGS84 at ``lat``: the radius of the sphere that best
    fits the ellipsoid around that latitude."""
    s2 = math.sin(math.radians(lat)) ** 2
    return WGS84_A_M * math.sqrt(1 - WGS84_E2) / (1 - WGS84_E2 * s2)


def ecef_array(lat: ArrayLike, lon: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Earth-centred earth-fixed coordinates (metres) of points on the WGS84 surface."""
    phi = np.radians(lat)
    lam = np.radians(lon)
    sphi = np.sin(phi)
    cphi = np.cos(phi)
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sphi * sphi)
    return n * cphi * np.cos(lam), n * cphi * np.sin(lam), n * (1.0 - WGS84_E2) * sphi


def _geodetic_array(x: FloatArray, y: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Latitude and longitude (radians) of the ellipsoid normal through ECEF points near the
    surface. The fixed-point form ``atan2(z + e2 N sin(lat), p)`` stays stable at the poles."""
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1.0 - WGS84_E2))
    for _ in range(_GEODETIC_ITERATIONS):
        s = np.sin(lat)
        n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * s * s)
        lat = np.arctan2(z + WGS84_E2 * n * s, p)
    return lat, np.arctan2(y, x)


class LocalFrame:
    """East-north tangent plane of WGS84 at ``(lat0, lon0)``, in metres.

    ``x`` points east and ``y`` north at the origin. Use it to build and buffer shapes in metres
    and to measure short distances exactly; see the module docstring for its accuracy. The
    frame is immutable and cheap to create (a few trigonometric calls).
    """

    __slots__ = ("_e", "_n", "_u", "_x0", "_y0", "_z0", "lat0", "lon0", "radius_m")

    def __init__(self, lat0: float, lon0: float) -> None:
        if not (math.isfinite(lat0) and math.isfinite(lon0)) or abs(lat0) > 90.0:
            raise ValueError(f"invalid frame origin ({lat0}, {lon0})")
        self.lat0 = float(lat0)
        self.lon0 = normalize_lon(float(lon0))
        self.radius_m = gaussian_radius_m(lat0)
        phi = math.radians(lat0)
        lam = math.radians(self.lon0)
        sp, cp, sl, cl = math.sin(phi), math.cos(phi), math.sin(lam), math.cos(lam)
        self._e = (-sl, cl, 0.0)
        self._n = (-sp * cl, -sp * sl, cp)
        self._u = (cp * cl, cp * sl, sp)
        x0, y0, z0 = ecef_array(lat0, self.lon0)
        self._x0, self._y0, self._z0 = float(x0), float(y0), float(z0)

    def __repr__(self) -> str:
        return f"LocalFrame({self.lat0!r}, {self.lon0!r})"

    def to_xy(self, lat: ArrayLike, lon: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Project points to plane coordinates ``(x, y)`` in metres."""
        x, y, z = ecef_array(lat, lon)
        dx = x - self._x0
        dy = y - self._y0
        dz = z - self._z0
        e, n = self._e, self._n
        return e[0] * dx + e[1] * dy, n[0] * dx + n[1] * dy + n[2] * dz

    def to_latlon(
        self, x: ArrayLike, y: ArrayLike, *, wrap: bool = True
    ) -> tuple[FloatArray, FloatArray]:
        """Inverse of :meth:`to_xy`: the surface points whose plane coordinates are ``(x, y)``.

        With ``wrap=False`` longitudes are continuous around ``lon0`` (they may leave
        [-180, 180)); otherwise they are normalised. Round trips agree to well under a
        millimetre within 50 km of the origin.
        """
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
        # The surface falls below the tangent plane by about r**2 / 2R; starting on it rather
        # than on the plane leaves a residual small enough for one correction step.
        u = -(xa * xa + ya * ya) / (2.0 * self.radius_m)
        e, n, up = self._e, self._n, self._u
        ex = self._x0 + e[0] * xa + n[0] * ya + up[0] * u
        ey = self._y0 + e[1] * xa + n[1] * ya + up[1] * u
        ez = self._z0 + n[2] * ya + up[2] * u
        lat_r, lon_r = _geodetic_array(ex, ey, ez)
        lat = np.degrees(lat_r)
        lon = self.lon0 + normalize_lon_array(np.degrees(lon_r) - self.lon0)
        fx, fy = self.to_xy(lat, lon)
        s2 = np.sin(lat_r) ** 2
        w = np.sqrt(1.0 - WGS84_E2 * s2)
        meridional = WGS84_A_M * (1.0 - WGS84_E2) / (w * w * w)
        parallel = WGS84_A_M / w * np.cos(lat_r)
        lat = lat - np.degrees((fy - ya) / meridional)
        lon = lon - np.degrees(
            np.divide(fx - xa, parallel, where=parallel > 1e-3, out=np.zeros_like(fx))
        )
        if wrap:
            lon = normalize_lon_array(lon)
        return lat, lon

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Scalar :meth:`to_xy`."""
        x, y = self.to_xy(lat, lon)
        return float(x), float(y)

    def latlon(self, x: float, y: float) -> tuple[float, float]:
        """Scalar :meth:`to_latlon` (longitude normalised)."""
        lat, lon = self.to_latlon(x, y)
        return float(lat), float(lon)

    def plane_radius_m(self, surface_m: float) -> float:
        """Plane distance from the origin of a point ``surface_m`` away on the surface."""
        return self.radius_m * math.sin(surface_m / self.radius_m)

    def surface_distance_m(self, x: ArrayLike, y: ArrayLike) -> FloatArray:
        """Surface distance from the origin of plane points (inverse of
        :meth:`plane_radius_m`)."""
        r = np.hypot(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return self.radius_m * np.arcsin(np.minimum(1.0, r / self.radius_m))

    def project(self, geom: BaseGeometry) -> BaseGeometry:
        """Project a shapely geometry in (lon, lat) into this plane."""

        def fn(c: FloatArray) -> FloatArray:
            x, y = self.to_xy(c[:, 1], c[:, 0])
            return np.column_stack([x, y])

        return shapely.transform(geom, fn)

    def unproject(self, geom: BaseGeometry) -> BaseGeometry:
        """Inverse of :meth:`project`; longitudes stay continuous around ``lon0``, so pass the
        result through :func:`split_antimeridian` before using it as a lon/lat shape."""

        def fn(c: FloatArray) -> FloatArray:
            lat, lon = self.to_latlon(c[:, 0], c[:, 1], wrap=False)
            return np.column_stack([lon, lat])

        return shapely.transform(geom, fn)


def unwrapped_center(lon: ArrayLike, lat: ArrayLike) -> tuple[float, float]:
    """A ``(lat, lon)`` near the middle of a set of points, robust to the antimeridian: the
    longitudes are first made continuous around the first one."""
    lo = np.asarray(lon, dtype=np.float64).ravel()
    la = np.asarray(lat, dtype=np.float64).ravel()
    if lo.size == 0:
        raise ValueError("no points")
    ref = lo[0]
    u = ref + normalize_lon_array(lo - ref)
    return float((la.min() + la.max()) / 2), normalize_lon(float((u.min() + u.max()) / 2))


_WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)


def split_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """Cut a lon/lat geometry whose longitudes run past +/-180 into pieces inside
    [-180, 180], as RFC 7946 section 3.1.9 asks. Geometries already inside are returned
    unchanged."""
    xmin, _, xmax, _ = geom.bounds
    if xmin >= -180.0 and xmax <= 180.0:
        return geom
    pieces = []
    for shift in (-360.0, 0.0, 360.0):
        window = shapely.affinity.translate(_WORLD, xoff=shift)
        part = geom.intersection(window)
        if not part.is_empty:
            pieces.append(shapely.affinity.translate(part, xoff=-shift))
    return shapely.union_all(pieces)
