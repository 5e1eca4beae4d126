"""Reference geodesy for tests: Vincenty's formulae on the WGS84 ellipsoid.

Independent of :mod:`geofence.geo` (which uses ECEF tangent planes), so tests can check metres
against a different derivation. Accurate to well under a millimetre away from antipodes.
"""

from __future__ import annotations

import math

A = 6_378_137.0
F = 1 / 298.257223563
B = A * (1 - F)


def inverse(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ellipsoidal distance in metres between two points."""
    u1 = math.atan((1 - F) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - F) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    lam = big_l
    su1, cu1, su2, cu2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        if ss == 0:
            return 0.0
        cs = su1 * su2 + cu1 * cu2 * cl
        sigma = math.atan2(ss, cs)
        sa = cu1 * cu2 * sl / ss
        c2a = 1 - sa * sa
        c2sm = cs - 2 * su1 * su2 / c2a if c2a else 0.0
        c = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
        prev = lam
        lam = big_l + (1 - c) * F * sa * (sigma + c * ss * (c2sm + c * cs * (-1 + 2 * c2sm**2)))
        if abs(lam - prev) < 1e-13:
            break
    u_sq = c2a * (A * A - B * B) / (B * B)
    k1 = (math.sqrt(1 + u_sq) - 1) / (math.sqrt(1 + u_sq) + 1)
    big_a = (1 + k1 * k1 / 4) / (1 - k1)
    big_b = k1 * (1 - 3 / 8 * k1 * k1)
    ds = (
        big_b
        * ss
        * (
            c2sm
            + big_b
            / 4
            * (cs * (-1 + 2 * c2sm**2) - big_b / 6 * c2sm * (-3 + 4 * ss**2) * (-3 + 4 * c2sm**2))
        )
    )
    return B * big_a * (sigma - ds)


def direct(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point ``dist_m`` from ``(lat, lon)`` at initial ``bearing_deg``: ``(lat, lon)``."""
    a1 = math.radians(bearing_deg)
    sa1, ca1 = math.sin(a1), math.cos(a1)
    tu1 = (1 - F) * math.tan(math.radians(lat))
    cu1 = 1 / math.sqrt(1 + tu1 * tu1)
    su1 = tu1 * cu1
    s1 = math.atan2(tu1, ca1)
    sa = cu1 * sa1
    c2a = 1 - sa * sa
    u_sq = c2a * (A * A - B * B) / (B * B)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    sigma = dist_m / (B * big_a)
    for _ in range(200):
        c2sm = math.cos(2 * s1 + sigma)
        ss, cs = math.sin(sigma), math.cos(sigma)
        ds = (
            big_b
            * ss
            * (
                c2sm
                + big_b
                / 4
                * (
                    cs * (-1 + 2 * c2sm**2)
                    - big_b / 6 * c2sm * (-3 + 4 * ss**2) * (-3 + 4 * c2sm**2)
                )
            )
        )
        prev = sigma
        sigma = dist_m / (B * big_a) + ds
        if abs(sigma - prev) < 1e-14:
            break
    ss, cs = math.sin(sigma), math.cos(sigma)
    c2sm = math.cos(2 * s1 + sigma)
    x = su1 * ss - cu1 * cs * ca1
    lat2 = math.atan2(su1 * cs + cu1 * ss * ca1, (1 - F) * math.hypot(sa, x))
    lam = math.atan2(ss * sa1, cu1 * cs - su1 * ss * ca1)
    c = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
    big_l = lam - (1 - c) * F * sa * (sigma + c * ss * (c2sm + c * cs * (-1 + 2 * c2sm**2)))
    lon2 = (math.degrees(math.radians(lon) + big_l) + 180) % 360 - 180
    return math.degrees(lat2), lon2
