"""Local metric projection and great-circle distance.

The simulated city is a few kilometres across, so an equirectangular projection about its
centre is accurate to well under a metre per kilometre. The metres-per-degree factors come from
the WGS84 ellipsoid, so distances stay right at any latitude, not only near the equator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

EARTH_RADIUS_M: Final = 6_371_008.8  # mean radius (IUGG)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """Maps metres east/north of an origin to degrees and back.

    Valid for points within a few tens of kilometres of the origin and away from the poles
    (``|lat0| < 85``).
    """

    lat0: float
    lon0: float
    m_per_deg_lat: float = field(init=False)
    m_per_deg_lon: float = field(init=False)

    def __post_init__(self) -> None:
        if not -85.0 < self.lat0 < 85.0:
            raise ValueError(f"latitude {self.lat0} is too close to a pole for a local grid")
        if not -180.0 <= self.lon0 <= 180.0:
            raise ValueError(f"longitude {self.lon0} is out of range")
        phi = math.radians(self.lat0)
        # Series expansions of the WGS84 meridian and parallel arc lengths per degree.
        lat_m = 111_132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
        lon_m = 111_412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
        object.__setattr__(self, "m_per_deg_lat", lat_m)
        object.__setattr__(self, "m_per_deg_lon", lon_m)

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """Degrees (lat, lon) of the point ``x`` metres east and ``y`` metres north."""
        return self.lat0 + y / self.m_per_deg_lat, self.lon0 + x / self.m_per_deg_lon

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Metres (east, north) of a point given in degrees."""
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat
