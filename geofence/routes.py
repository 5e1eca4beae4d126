"""Routes: a vehicle's ordered stops with promised windows, and an optional planned path.

:class:`Stop` and :class:`Route` are frozen msgspec Structs, so the gateway can decode them
straight from the shipper's JSON (``msgspec.json.decode(body, type=Route)``); invalid values
raise :class:`~geofence.errors.RouteError` (wrapped in ``msgspec.ValidationError`` when
decoding). Points are ``(lat, lon)``; times are epoch seconds.

:class:`PlannedPath` measures progress along the planned polyline: where a position projects
onto it (distance along, in metres) and how far off it the position is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from .errors import RouteError
from .geo import LocalFrame, unwrapped_center
from .zones import Zone

MAX_STOPS: Final = 1_000
MAX_PATH_POINTS: Final = 50_000
MAX_ID_LENGTH: Final = 200


def _check_point(lat: float, lon: float, field: str) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        raise RouteError(field, f"({lat}, {lon}) is not a valid (lat, lon)")


def _check_id(value: str, field: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH:
        raise RouteError(field, f"must be a non-empty string of at most {MAX_ID_LENGTH} chars")


class Stop(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One delivery or pickup: where, the promised window ``[window_start, window_end]``, how
    long the service takes, and optionally when the plan expects the vehicle and the radius of
    its arrival zone (else the tracker's ``arrival_radius_m``)."""

    id: str
    lat: float
    lon: float
    window_start: float
    window_end: float
    service_s: float = 0.0
    planned_arrival: float | None = None
    arrival_radius_m: float | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, "stop.id")
        _check_point(self.lat, self.lon, f"stops[{self.id}].location")
        if not (math.isfinite(self.window_start) and math.isfinite(self.window_end)):
            raise RouteError(f"stops[{self.id}].window", "window times must be finite")
        if self.window_end < self.window_start:
            raise RouteError(f"stops[{self.id}].window", "window ends before it starts")
        if not (math.isfinite(self.service_s) and self.service_s >= 0):
            raise RouteError(f"stops[{self.id}].service_s", "must be a number of seconds >= 0")
        if self.planned_arrival is not None and not math.isfinite(self.planned_arrival):
            raise RouteError(f"stops[{self.id}].planned_arrival", "must be finite")
        r = self.arrival_radius_m
        if r is not None and not (math.isfinite(r) and 0 < r <= 5_000):
            raise RouteError(f"stops[{self.id}].arrival_radius_m", "must be in (0, 5000] metres")


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A vehicle's stops in planned order, with the planned path as ``(lat, lon)`` points."""

    id: str
    vehicle_id: str
    stops: tuple[Stop, ...]
    path: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, "route.id")
        _check_id(self.vehicle_id, "route.vehicle_id")
        if not self.stops:
            raise RouteError("route.stops", "a route needs at least one stop")
        if len(self.stops) > MAX_STOPS:
            raise RouteError("route.stops", f"more than the limit of {MAX_STOPS} stops")
        ids = [s.id for s in self.stops]
        if len(set(ids)) != len(ids):
            raise RouteError("route.stops", "stop ids must be unique within a route")
        if self.path is not None:
            if not 2 <= len(self.path) <= MAX_PATH_POINTS:
                raise RouteError("route.path", f"needs 2 to {MAX_PATH_POINTS} points")
            for i, (lat, lon) in enumerate(self.path):
                _check_point(lat, lon, f"route.path[{i}]")

    def stop(self, stop_id: str) -> Stop:
        """The stop with ``stop_id`` (KeyError if absent)."""
        for s in self.stops:
            if s.id == stop_id:
                return s
        raise KeyError(stop_id)

    def stop_zones(self, default_radius_m: float) -> list[Zone]:
        """Each stop's arrival zone as a circle :class:`Zone` with id ``"<route>/<stop>"``, kind
        ``customer_stop``, for maps or for a :class:`~geofence.engine.GeofenceEngine`."""
        return [
            Zone.circle(
                f"{self.id}/{s.id}",
                s.lat,
                s.lon,
                s.arrival_radius_m or default_radius_m,
                name=s.id,
                kind="customer_stop",
                tags=frozenset({f"route:{self.id}"}),
            )
            for s in self.stops
        ]


class PlannedPath:
    """A planned polyline, measured in metres.

    Built in a :class:`~geofence.geo.LocalFrame` around the path, so lengths and offsets are
    ellipsoidal metres (to 1e-5 within 50 km of the path's centre). Immutable after
    construction.
    """

    __slots__ = ("_ax", "_ay", "_cum", "_dx", "_dy", "_len2", "_seg_m", "frame", "length_m")

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise RouteError("route.path", "needs at least two (lat, lon) points")
        lat, lon = pts[:, 0], pts[:, 1]
        clat, clon = unwrapped_center(lon, lat)
        self.frame = LocalFrame(clat, clon)
        x, y = self.frame.to_xy(lat, lon)
        self._ax, self._ay = x[:-1], y[:-1]
        self._dx, self._dy = np.diff(x), np.diff(y)
        self._len2 = self._dx * self._dx + self._dy * self._dy
        self._seg_m = np.sqrt(self._len2)
        self._cum = np.concatenate(([0.0], np.cumsum(self._seg_m)))
        self.length_m = float(self._cum[-1])

    def locate(
        self, lat: float, lon: float, *, after_m: float | None = None
    ) -> tuple[float, float]:
        """``(along_m, offset_m)``: where ``(lat, lon)`` projects onto the path, as a distance
        from its start, and how far from the path it is.

        With ``after_m``, parts of the path ending before ``after_m`` are ignored unless they are
        much closer, so a path that passes the same street twice is followed in order.
        """
        px, py = self.frame.xy(lat, lon)
        t = ((px - self._ax) * self._dx + (py - self._ay) * self._dy) / np.where(
            self._len2 > 0, self._len2, 1.0
        )
        t = np.clip(t, 0.0, 1.0)
        ex = self._ax + t * self._dx - px
        ey = self._ay + t * self._dy - py
        d2: NDArray[np.float64] = ex * ex + ey * ey
        best = int(np.argmin(d2))
        if after_m is not None:
            ahead = self._cum[1:] >= after_m
            if ahead.any():
                cand = int(np.argmin(np.where(ahead, d2, np.inf)))
                # Prefer progress along the route unless going back is clearly closer.
                if math.sqrt(d2[cand]) <= math.sqrt(d2[best]) + 25.0:
                    best = cand
        along = float(self._cum[best] + t[best] * self._seg_m[best])
        return along, math.sqrt(float(d2[best]))
