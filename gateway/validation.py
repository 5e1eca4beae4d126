"""Per-device filtering of decoded positions: pure logic, no I/O.

Each position is checked in this order and the first failing check names the reason:
range (lat/lon/speed/heading finite and in range), fix in the future, fix too old,
accuracy too poor, duplicate (``seq`` not above the highest accepted), out of order
(fix time before the last accepted fix), implausible jump (speed needed to get from the
last accepted fix exceeds the limit).

A jump is not held against a device for ever: if the same far-away place is confirmed by
``JUMP_CONFIRMATIONS`` consecutive fixes that agree with each other, the earlier fix was the
outlier and the new place is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from .wire import Position, Reason, Rejection

EARTH_RADIUS_M: Final = 6_371_008.8
JUMP_CONFIRMATIONS: Final = 3
# Two fixes within this distance never count as a jump whatever the time between them
# (GPS noise on fixes taken in the same second).
JUMP_FLOOR_M: Final = 50.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Limits:
    future_tolerance_s: float = 60.0
    max_age_s: float = 7 * 86_400.0
    max_speed_mps: float = 70.0
    max_accuracy_m: float = 500.0


@dataclass(slots=True)
class DeviceCursor:
    """What is known of a device's last accepted fix (persisted beside the vehicle state)."""

    seq: int = 0
    ts: float = 0.0
    lat: float = math.nan
    lon: float = math.nan
    # Fixes rejected as jumps that agree with each other: (ts, lat, lon) of the latest, count.
    jump_ts: float = 0.0
    jump_lat: float = math.nan
    jump_lon: float = math.nan
    jump_count: int = 0

    def as_tuple(self) -> tuple[int, float, float, float]:
        return (self.seq, self.ts, self.lat, self.lon)

    @classmethod
    def from_tuple(cls, t: tuple[int, float, float, float] | list[float]) -> DeviceCursor:
        return cls(int(t[0]), float(t[1]), float(t[2]), float(t[3]))


@dataclass(slots=True)
class Verdict:
    accepted: list[Position] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _in_range(p: Position) -> str | None:
    # Comparisons with NaN are false, so "not (a <= x <= b)" also catches NaN.
    if not (-90.0 <= p.lat <= 90.0):
        return "lat"
    if not (-180.0 <= p.lon <= 180.0):
        return "lon"
    if not (-1e12 < p.ts < 1e12):
        return "ts"
    v = p.speed
    if v is not None and not (0.0 <= v < 1_000.0):
        return "speed"
    v = p.heading
    if v is not None and not (0.0 <= v <= 360.0):
        return "heading"
    v = p.accuracy
    if v is not None and not (v >= 0.0):
        return "accuracy"
    v = p.alt
    if v is not None and not (-1e6 < v < 1e6):
        return "alt"
    v = p.battery
    if v is not None and not (-1e6 < v < 1e6):
        return "battery"
    v = p.temp_c
    if v is not None and not (-1e6 < v < 1e6):
        return "temp_c"
    v = p.odometer
    if v is not None and not (-1e12 < v < 1e12):
        return "odometer"
    return None


def validate(cursor: DeviceCursor, positions: list[Position], now: float, limits: Limits) -> Verdict:
    """Filter ``positions`` (in the order received) against ``cursor``, advancing it.

    The cursor moves past every accepted position, so later positions of the same batch are
    checked against it.
    """
    out = Verdict()
    acc = out.accepted
    rej = out.rejected
    for p in positions:
        bad_field = _in_range(p)
        if bad_field is not None:
            rej.append(Rejection(p.seq, Reason.OUT_OF_RANGE, bad_field))
            continue
        if p.ts > now + limits.future_tolerance_s:
            rej.append(Rejection(p.seq, Reason.FUTURE))
            continue
        if p.ts < now - limits.max_age_s:
            rej.append(Rejection(p.seq, Reason.TOO_OLD))
            continue
        if p.accuracy is not None and p.accuracy > limits.max_accuracy_m:
            rej.append(Rejection(p.seq, Reason.POOR_ACCURACY))
            continue
        if p.seq <= cursor.seq:
            rej.append(Rejection(p.seq, Reason.DUPLICATE))
            continue
        if p.ts < cursor.ts:
            rej.append(Rejection(p.seq, Reason.OUT_OF_ORDER))
            continue
        if cursor.seq and not math.isnan(cursor.lat) and _is_jump(cursor, p, limits):
            if not _confirms_jump(cursor, p, limits):
                rej.append(Rejection(p.seq, Reason.IMPLAUSIBLE_JUMP))
                continue
        cursor.seq = p.seq
        cursor.ts = p.ts
        cursor.lat = p.lat
        cursor.lon = p.lon
        cursor.jump_count = 0
        acc.append(p)
    return out


_M_PER_DEG: Final = math.pi * EARTH_RADIUS_M / 180.0


def _is_jump(cursor: DeviceCursor, p: Position, limits: Limits) -> bool:
    allowed = limits.max_speed_mps * (p.ts - cursor.ts) + JUMP_FLOOR_M
    # Cheap bound first: the latitude difference alone is a lower bound of the distance,
    # and the larger of the two scaled differences an upper bound of half of it.
    dlat = abs(p.lat - cursor.lat) * _M_PER_DEG
    if dlat > allowed:
        return True
    dlon = abs(p.lon - cursor.lon)
    if dlon > 180.0:
        dlon = 360.0 - dlon
    if (dlat + dlon * _M_PER_DEG) <= allowed:
        return False
    return haversine_m(cursor.lat, cursor.lon, p.lat, p.lon) > allowed


def _confirms_jump(cursor: DeviceCursor, p: Position, limits: Limits) -> bool:
    """Record ``p`` as a rejected jump; True once enough agreeing jumps confirm the new place."""
    if cursor.jump_count and not math.isnan(cursor.jump_lat):
        d = haversine_m(cursor.jump_lat, cursor.jump_lon, p.lat, p.lon)
        agrees = d <= limits.max_speed_mps * max(0.0, p.ts - cursor.jump_ts) + JUMP_FLOOR_M
        cursor.jump_count = cursor.jump_count + 1 if agrees else 1
    else:
        cursor.jump_count = 1
    cursor.jump_ts, cursor.jump_lat, cursor.jump_lon = p.ts, p.lat, p.lon
    return cursor.jump_count >= JUMP_CONFIRMATIONS
