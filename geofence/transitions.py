"""Transition detection for one (vehicle, zone) pair: a pure function of the previous
membership, what the current fix observed, and the fixes.

It follows the idea of Tile38's ``fence.go``, which classifies a move from the old and the new
object, but never touches zone objects and adds hysteresis and dwell. What a fix observed about
a zone is a bit mask:

* :data:`OUTER`: the fix is inside the zone grown by the exit margin;
* :data:`INNER`: the fix is inside the zone shrunk by the enter margin (implies OUTER);
* :data:`CROSS`: the straight segment from the previous fix meets the inner shape while neither
  fix is inside the outer one (sparse fixes jumping over a zone).

Membership is a Schmitt trigger between the two shapes, so GPS jitter on the boundary cannot make
enter and exit flap:

=================  ======================  ==========================================
member before      observation             result
=================  ======================  ==========================================
no                 INNER                   member, ``enter`` (silent when ``initial``)
no                 CROSS                   not member, ``cross``
no                 anything else           not member, nothing
yes                OUTER                   member, ``dwell`` once the threshold passes
yes                not OUTER               not member, ``exit``
=================  ======================  ==========================================

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
        if observed & INNER:
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
