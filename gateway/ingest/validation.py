"""Per-device filtering of decoded positions: pure logic, no I/O.

Ranges (lat/lon/speed/heading in range, no NaN) are enforced while decoding (see
``wire``). Each position is then checked in this order and the first failing check names
the reason: ``seq`` of 2^64 or more (``out_of_range``: a sequence number is unsigned
64-bit), fix in the future, fix too old, accuracy too poor, duplicate (``seq`` not above the
highest accepted), out of order (fix time before the last accepted fix), implausible jump
(speed needed to get from the last accepted fix exceeds the limit).

A jump is not held against a device for ever: if the same far-away place is confirmed by
``JUMP_CONFIRMATIONS`` consecutive fixes that agree with each other, the earlier fix was the
outlier and the new place is accepted. Only fixes with later fix times confirm: a device
that resends the same glitch (an HTTP client resends until it gets an answer) repeats one
fix, which confirms nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from gateway.fleet.position import SEQ_LIMIT, Position
from gateway.ingest.wire import Reason, Rejection
from geofence.geo import EARTH_RADIUS_M, haversine_m

JUMP_CONFIRMATIONS: Final = 3
# Two fixes within this distance never count as a jump whatever the time between them
# (GPS noise on fixes taken in the same second).
JUMP_FLOOR_M: Final = 50.0
_M_PER_DEG: Final = math.pi * EARTH_RADIUS_M / 180.0


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


def validate(
    cursor: DeviceCursor, positions: list[Position], now: float, limits: Limits
) -> tuple[list[Position], list[Rejection]]:
    """Filter ``positions`` (in the order received) against ``cursor``, advancing it.

    Returns the accepted positions and a rejection for each of the others. Ranges (and NaN)
    were already enforced by decoding. The cursor moves past every accepted position, so
    later positions of the same batch are checked against it. When nothing is rejected (the
    common case) the accepted list is ``positions`` itself.
    """
    accepted: list[Position] | None = None  # built only once something is rejected
    rejected: list[Rejection] = []
    newest = now + limits.future_tolerance_s
    oldest = now - limits.max_age_s
    max_accuracy = limits.max_accuracy_m
    max_speed = limits.max_speed_mps
    seq0, ts0, lat0, lon0 = cursor.seq, cursor.ts, cursor.lat, cursor.lon
    located = seq0 > 0 and lat0 == lat0  # lat0 is NaN until a first fix
    jumps = cursor.jump_count != 0  # rejected jumps, forgotten at the next accepted fix
    for i, p in enumerate(positions):
        ts = p.ts
        seq = p.seq
        acc = p.accuracy
        # One test for the common case; the reason is worked out only for a rejection.
        if (
            oldest <= ts <= newest
            and seq0 < seq < SEQ_LIMIT
            and ts >= ts0
            and (acc is None or acc <= max_accuracy)
        ):
            lat = p.lat
            lon = p.lon
            if located:
                dlon = abs(lon - lon0)
                if dlon > 180.0:
                    dlon = 360.0 - dlon
                allowed = max_speed * (ts - ts0) + JUMP_FLOOR_M
                # The L1 sum of the scaled differences bounds the distance from above, so
                # most fixes skip the trigonometry.
                if (
                    (abs(lat - lat0) + dlon) * _M_PER_DEG > allowed
                    and haversine_m(lat0, lon0, lat, lon) > allowed
                    and not _confirms_jump(cursor, p, limits)
                ):
                    jumps = True
                    if accepted is None:
                        accepted = positions[:i]
                    rejected.append(Rejection(seq, Reason.IMPLAUSIBLE_JUMP))
                    continue
            else:
                located = True
            seq0 = seq
            ts0 = ts
            lat0 = lat
            lon0 = lon
            if jumps:
                cursor.jump_count = 0
                jumps = False
            if accepted is not None:
                accepted.append(p)
            continue
        if seq >= SEQ_LIMIT:
            if accepted is None:
                accepted = positions[:i]
            rejected.append(Rejection(None, Reason.OUT_OF_RANGE, "seq"))
            continue
        if ts > newest:
            reason = Reason.FUTURE
        elif ts < oldest:
            reason = Reason.TOO_OLD
        elif acc is not None and acc > max_accuracy:
            reason = Reason.POOR_ACCURACY
        elif seq <= seq0:
            reason = Reason.DUPLICATE
        else:
            reason = Reason.OUT_OF_ORDER
        if accepted is None:
            accepted = positions[:i]
        rejected.append(Rejection(seq, reason))
    cursor.seq, cursor.ts, cursor.lat, cursor.lon = seq0, ts0, lat0, lon0
    return (positions if accepted is None else accepted), rejected


def _confirms_jump(cursor: DeviceCursor, p: Position, limits: Limits) -> bool:
    """Record ``p`` as a rejected jump; True once enough agreeing jumps confirm the new place."""
    if cursor.jump_count and not math.isnan(cursor.jump_lat):
        if p.ts <= cursor.jump_ts:
            return False  # the same fix again, or an older one: no new evidence
        d = haversine_m(cursor.jump_lat, cursor.jump_lon, p.lat, p.lon)
        agrees = d <= limits.max_speed_mps * max(0.0, p.ts - cursor.jump_ts) + JUMP_FLOOR_M
        cursor.jump_count = cursor.jump_count + 1 if agrees else 1
    else:
        cursor.jump_count = 1
    cursor.jump_ts, cursor.jump_lat, cursor.jump_lon = p.ts, p.lat, p.lon
    return cursor.jump_count >= JUMP_CONFIRMATIONS
