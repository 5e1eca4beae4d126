"""Event values produced by the geofence engine and the route tracker.

Every event is a frozen :class:`msgspec.Struct` tagged by a ``type`` field, so the gateway can
log it, send it as a webhook and decode it back with ``msgspec.json.decode(data, type=Event)``.
Times are epoch seconds (UTC) taken from the fixes or from an explicit ``now``; positions are
the vehicle's ``(lat, lon)`` at that time.

Geofence events (from :class:`~geofence.engine.GeofenceEngine`):

========================  =====================================================================
``geofence.enter``        the vehicle is now inside the zone (by more than the enter margin)
``geofence.exit``         the vehicle left the zone (by more than the exit margin)
``geofence.dwell``        the vehicle has been inside for the zone's dwell threshold; once a visit
``geofence.cross``        the segment between two fixes passed through the zone, neither inside
========================  =====================================================================

Route events (from :class:`~geofence.tracker.RouteTracker`): ``stop.arriving``,
``stop.arrived``, ``stop.departed``, ``eta_changed``, ``late_risk`` / ``late_risk_cleared``,
``stopped_too_long`` / ``stopped_too_long_cleared``, ``off_route`` / ``off_route_cleared``,
``temperature_excursion`` / ``temperature_excursion_cleared``. Alerts come in raise/clear pairs
so an ops view can resolve them.
"""

from __future__ import annotations

import msgspec


class GeofenceEvent(msgspec.Struct, frozen=True, tag_field="type"):
    """Fields shared by every geofence event."""

    vehicle_id: str
    zone_id: str
    ts: float
    lat: float
    lon: float


class ZoneEnter(GeofenceEvent, frozen=True, tag="geofence.enter"):
    """The vehicle entered the zone at this fix."""


class ZoneExit(GeofenceEvent, frozen=True, tag="geofence.exit"):
    """The vehicle left the zone at this fix. ``entered_ts`` is when the visit began and
    ``last_inside_ts`` the time of the last fix still inside (the exit happened in between)."""

    entered_ts: float
    last_inside_ts: float


class ZoneDwell(GeofenceEvent, frozen=True, tag="geofence.dwell"):
    """The vehicle has been inside since ``entered_ts``, ``dwell_s`` seconds at ``ts``."""

    entered_ts: float
    dwell_s: float


class ZoneCross(GeofenceEvent, frozen=True, tag="geofence.cross"):
    """The vehicle passed through the zone between the fix at ``from_ts`` and this one."""

    from_ts: float
    from_lat: float
    from_lon: float


class RouteEvent(msgspec.Struct, frozen=True, tag_field="type"):
    """Fields shared by every route event."""

    vehicle_id: str
    route_id: str
    ts: float
    lat: float
    lon: float


class StopArriving(RouteEvent, frozen=True, tag="stop.arriving"):
    """The vehicle is close to the stop (in distance or in time); once per stop."""

    stop_id: str
    eta: float
    distance_m: float


class StopArrived(RouteEvent, frozen=True, tag="stop.arrived"):
    """The vehicle entered the stop's arrival zone."""

    stop_id: str


class StopDeparted(RouteEvent, frozen=True, tag="stop.departed"):
    """The vehicle left the stop's arrival zone after arriving at ``arrived_ts``."""

    stop_id: str
    arrived_ts: float


class EtaChanged(RouteEvent, frozen=True, tag="eta_changed"):
    """A new ETA for the stop; ``previous_eta`` is the last one announced (None the first
    time)."""

    stop_id: str
    eta: float
    previous_eta: float | None


class LateRisk(RouteEvent, frozen=True, tag="late_risk"):
    """The ETA is past the end of the stop's promised window by ``late_by_s``."""

    stop_id: str
    eta: float
    window_end: float
    late_by_s: float


class LateRiskCleared(RouteEvent, frozen=True, tag="late_risk_cleared"):
    """The ETA is back inside the stop's window (or the stop was reached)."""

    stop_id: str
    eta: float
    window_end: float


class StoppedTooLong(RouteEvent, frozen=True, tag="stopped_too_long"):
    """The vehicle has not moved since ``since_ts`` while away from every stop."""

    since_ts: float
    stopped_s: float


class StoppedTooLongCleared(RouteEvent, frozen=True, tag="stopped_too_long_cleared"):
    """The vehicle stopped at ``since_ts`` is moving again (or reached a stop)."""

    since_ts: float
    stopped_s: float


class OffRoute(RouteEvent, frozen=True, tag="off_route"):
    """The vehicle has been farther than the limit from the planned path since ``since_ts``."""

    distance_m: float
    since_ts: float


class OffRouteCleared(RouteEvent, frozen=True, tag="off_route_cleared"):
    """The vehicle is back on the planned path."""

    distance_m: float
    since_ts: float


class TemperatureExcursion(RouteEvent, frozen=True, tag="temperature_excursion"):
    """The load temperature has been outside ``[min_c, max_c]`` since ``since_ts``."""

    temp_c: float
    min_c: float | None
    max_c: float | None
    since_ts: float


class TemperatureExcursionCleared(RouteEvent, frozen=True, tag="temperature_excursion_cleared"):
    """The load temperature is back in range."""

    temp_c: float
    since_ts: float


AnyGeofenceEvent = ZoneEnter | ZoneExit | ZoneDwell | ZoneCross
AnyRouteEvent = (
    StopArriving
    | StopArrived
    | StopDeparted
    | EtaChanged
    | LateRisk
    | LateRiskCleared
    | StoppedTooLong
    | StoppedTooLongCleared
    | OffRoute
    | OffRouteCleared
    | TemperatureExcursion
    | TemperatureExcursionCleared
)
Event = AnyGeofenceEvent | AnyRouteEvent
