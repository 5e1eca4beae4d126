"""Geofencing, ETA and drift detection for delivery vehicles: pure logic, no I/O.

The package takes positions and returns events; it never touches sockets, Redis or the clock.

Zones and geometry
    :class:`Zone` (with :class:`Circle`, :class:`Corridor`, :class:`Area` shapes and an optional
    :class:`Schedule`), parsed from and written to GeoJSON; :class:`ZoneError` on bad input.
    :mod:`geofence.geo` has the metres-correct maths (:func:`haversine_m`, :class:`LocalFrame`).

Geofence engine
    :class:`GeofenceEngine` holds the zones, a :class:`ZoneIndex` and each vehicle's membership.
    Feed it :class:`FixBatch` batches with :meth:`GeofenceEngine.process` and call
    :meth:`GeofenceEngine.tick` for dwell without fixes. It returns :class:`ZoneEnter`,
    :class:`ZoneExit`, :class:`ZoneDwell` and :class:`ZoneCross` events. The per-pair rule is the
    pure function :func:`transition`: a move between fixes is evidence as well as a fix, and
    evidence within a fix's reported accuracy does not count (:mod:`geofence.transitions`).

Routes and ETAs
    A :class:`Route` of :class:`Stop` values, optionally with a planned path, is followed by a
    :class:`RouteTracker` (tuned by :class:`TrackerConfig`) that emits stop, ETA and alert
    events (:class:`StopArriving` ... :class:`TemperatureExcursion`). Its ETAs come from a
    :class:`SpeedModel` (pace against the plan), a :class:`ServiceModel` (service times learnt
    from the route's dwells, shaped by :class:`DwellShape`) and :func:`estimate_arrivals`;
    a :class:`FleetLearner` learns the prior from the fleet's routes and, per stop location
    (:func:`site_key`), a :class:`SiteModel`. An :class:`Approach` judges which stop the
    vehicle drives to, whatever the planned order, and whether a position is clear of every
    stop.

All events are frozen msgspec Structs tagged by ``type``; decode any of them with
``msgspec.json.decode(data, type=geofence.Event)``.
"""

from .approach import Approach
from .engine import EngineConfig, EngineStats, FixBatch, GeofenceEngine
from .errors import GeofenceError, RouteError, ZoneError
from .eta import (
    DwellShape,
    EtaPrior,
    FleetLearner,
    ServiceModel,
    SiteModel,
    SpeedModel,
    estimate_arrivals,
    remaining_dwell_s,
    site_key,
)
from .events import (
    AnyGeofenceEvent,
    AnyRouteEvent,
    EtaChanged,
    Event,
    GeofenceEvent,
    LateRisk,
    LateRiskCleared,
    OffRoute,
    OffRouteCleared,
    RouteEvent,
    StopArrived,
    StopArriving,
    StopDeparted,
    StoppedTooLong,
    StoppedTooLongCleared,
    TemperatureExcursion,
    TemperatureExcursionCleared,
    ZoneCross,
    ZoneDwell,
    ZoneEnter,
    ZoneExit,
)
from .geo import (
    EARTH_RADIUS_M,
    LocalFrame,
    destination,
    haversine_m,
    haversine_m_array,
    initial_bearing_deg,
    initial_bearing_deg_array,
)
from .index import Hits, ZoneIndex
from .routes import PlannedPath, Route, Stop
from .tracker import RouteTracker, TrackerConfig
from .transitions import (
    CROSS,
    INNER,
    OUTER,
    STILL_SPEED_MPS,
    UNSURE,
    FixPoint,
    Membership,
    transition,
)
from .zones import MAX_VERTICES, Area, Circle, Corridor, Schedule, Zone

__all__ = [
    "CROSS",
    "EARTH_RADIUS_M",
    "INNER",
    "MAX_VERTICES",
    "OUTER",
    "STILL_SPEED_MPS",
    "UNSURE",
    "AnyGeofenceEvent",
    "AnyRouteEvent",
    "Approach",
    "Area",
    "Circle",
    "Corridor",
    "DwellShape",
    "EngineConfig",
    "EngineStats",
    "EtaChanged",
    "EtaPrior",
    "Event",
    "FixBatch",
    "FixPoint",
    "FleetLearner",
    "GeofenceEngine",
    "GeofenceError",
    "GeofenceEvent",
    "Hits",
    "LateRisk",
    "LateRiskCleared",
    "LocalFrame",
    "Membership",
    "OffRoute",
    "OffRouteCleared",
    "PlannedPath",
    "Route",
    "RouteError",
    "RouteEvent",
    "RouteTracker",
    "Schedule",
    "ServiceModel",
    "SiteModel",
    "SpeedModel",
    "Stop",
    "StopArrived",
    "StopArriving",
    "StopDeparted",
    "StoppedTooLong",
    "StoppedTooLongCleared",
    "TemperatureExcursion",
    "TemperatureExcursionCleared",
    "TrackerConfig",
    "Zone",
    "ZoneCross",
    "ZoneDwell",
    "ZoneEnter",
    "ZoneError",
    "ZoneExit",
    "ZoneIndex",
    "destination",
    "estimate_arrivals",
    "haversine_m",
    "haversine_m_array",
    "initial_bearing_deg",
    "initial_bearing_deg_array",
    "remaining_dwell_s",
    "site_key",
    "transition",
]
