"""Transition detection for one (vehicle, zone) pair: a pure function of the previous
membership, what the current fix observed, and the fixes.

It follows the idea of Tile38's ``fence.go``, which classifies a move from the old and the new
object, but never touches zone objects and adds hysteresis and dwell. What a fix observed about
a zone is a bit mask:

* :data:`OUTER`: the fix is inside the zone grown by the exit margin;
* :data:`INNER`: the fix is inside the zone shrunk by the enter margin (implies OUTER);
* :data:`CROSS`: the fix is not inside the inner shape, but the straight move from the previous
  fix passed through it (the path went into the zone between two fixes);
* :data:`UNSURE`: the evidence that a vehicle outside went in (INNER, or CROSS) is within the
  fix's reported accuracy: neither the fix nor the move to it went deeper inside than that.

Membership is a Schmitt trigger between the two shapes, so GPS jitter on the boundary cannot make
enter and exit flap, and a move is evidence as well as a point, so sparse fixes cannot jump over a
zone whatever band around its edge they land in:

=================  ======================  ==========================================
member before      observation             result
=================  ======================  ==========================================
no                 UNSURE                  not member, nothing
no                 INNER                   member, ``enter`` (silent when ``initial``)
no                 CROSS and OUTER         member, ``enter`` (it went in and is at the edge)
no                 CROSS, not OUTER        not member, ``cross``
no                 anything else           not member, nothing
yes                OUTER                   member, ``dwell`` once the threshold passes
yes                anything else           not member, ``exit``
=================  ======================  ==========================================

So a pass through a zone between fixes gives one ``cross`` when the fix after it is beyond the
exit margin, or an ``enter`` and later an ``exit`` when a fix lands in the band around the edge
(outside but within the exit margin, or inside by less than the enter margin).

Who sets the bits (see :mod:`geofence.engine`): CROSS only for a move the vehicle drove: it
reports a speed of at least :data:`STILL_SPEED_MPS`, or it is further from the previous fix than
the two fixes' uncertainty (each the larger of the enter margin and its reported accuracy), so
the jitter of a parked vehicle is never taken for a path. A fix whose reported accuracy is
beyond the margins counts as evidence only beyond its accuracy: UNSURE unless it (or its move) is
deeper inside than its accuracy, and OUTER while it is within its accuracy of the zone, so it
neither exits nor crosses. So the hysteresis is never narrower than twice the accuracy, and a
vehicle whose fixes stay within their reported accuracy of where it stands changes membership at
most once, wherever it stands.

Applying the same observation twice changes nothing (the function is idempotent in the
observation), which is what lets the engine skip fixes whose observations equal the previous
fix's. Events for a zone that is not ``active`` (outside its schedule) are suppressed while
membership keeps being tracked; a dwell threshold passed while inactive counts as used.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from .events import GeofenceEvent, ZoneCross, ZoneDwell, ZoneEnter, ZoneExit

OUTER: Final = 1
INNER: Final = 2
CROSS: Final = 4
UNSURE: Final = 8
STILL_SPEED_MPS: Final = 1.0  # a reported speed below this (3.6 km/h) is standing still


class FixPoint(NamedTuple):
    """A fix reduced to what transitions need."""

    ts: float
    lat: float
    lon: float


class Membership(msgspec.Struct, frozen=True, gc=False):
    """A vehicle is inside a zone since ``since``; ``dwell_done`` once the visit's dwell event
    was emitted (or suppressed)."""

    since: float
    dwell_done: bool = False


def dwell_due(member: Membership, dwell_threshold_s: float | None) -> float | None:
    """When ``member`` will owe a dwell event, or None if it never will."""
    if dwell_threshold_s is None or member.dwell_done:
        return None
    return member.since + dwell_threshold_s


def check_dwell(
    vehicle_id: str,
    zone_id: str,
    member: Membership,
    fix: FixPoint,
    dwell_threshold_s: float | None,
    *,
    active: bool = True,
) -> tuple[Membership, ZoneDwell | None]:
    """Emit the visit's dwell event if ``fix.ts`` reached the threshold and it was not emitted
    yet. Used for fixes that change nothing else and for ticks without fixes."""
    due = dwell_due(member, dwell_threshold_s)
    if due is None or fix.ts < due:
        return member, None
    done = Membership(member.since, True)
    if not active:
        return done, None
    return done, ZoneDwell(
        vehicle_id,
        zone_id,
        fix.ts,
        fix.lat,
        fix.lon,
        entered_ts=member.since,
        dwell_s=fix.ts - member.since,
    )


def transition(
    vehicle_id: str,
    zone_id: str,
    member: Membership | None,
    observed: int,
    fix: FixPoint,
    prev: FixPoint | None,
    dwell_threshold_s: float | None,
    *,
    initial: bool = False,
    active: bool = True,
) -> tuple[Membership | None, GeofenceEvent | None]:
    """Apply one fix's ``observed`` bits to ``member``; return the new membership and at most
    one event (see the module docstring for the table).

    ``initial`` marks the first fix known for the vehicle: membership is set up without an enter
    event. ``prev`` is the vehicle's previous fix, used for exits and crossings.
    """
    if member is None:
        if observed & UNSURE:
            return None, None
        if observed & INNER or (observed & CROSS and observed & OUTER):
            new = Membership(fix.ts)
            if initial or not active:
                return new, None
            return new, ZoneEnter(vehicle_id, zone_id, fix.ts, fix.lat, fix.lon)
        if observed & CROSS and prev is not None and active and not initial:
            return None, ZoneCross(
                vehicle_id,
                zone_id,
                fix.ts,
                fix.lat,
                fix.lon,
                from_ts=prev.ts,
                from_lat=prev.lat,
                from_lon=prev.lon,
            )
        return None, None
    if observed & OUTER:
        return check_dwell(vehicle_id, zone_id, member, fix, dwell_threshold_s, active=active)
    if not active:
        return None, None
    return None, ZoneExit(
        vehicle_id,
        zone_id,
        fix.ts,
        fix.lat,
        fix.lon,
        entered_ts=member.since,
        last_inside_ts=prev.ts if prev is not None else member.since,
    )
