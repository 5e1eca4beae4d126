"""A fleet of virtual delivery vans that report to the gateway over the wire, like real devices.

- :mod:`~simulator.city`: a synthetic street grid with a depot, addresses and routing.
- :mod:`~simulator.traffic`: congestion by district and time, the same for every van.
- :mod:`~simulator.vehicle`: a van driving its route, producing GPS fixes (pure logic).
- :mod:`~simulator.device`: the WebSocket client of one device: acks, backlog, reconnects.
- :mod:`~simulator.registry`: device registration through the REST API.
- :mod:`~simulator.manifest`: a van's planned route as a route import payload (pure logic).
- :mod:`~simulator.dispatch`: route import and start, stop reports of the driver app.
- :mod:`~simulator.fleet`: many vans and devices run together; :func:`run_fleet`.
- ``python -m simulator``: the command line (:mod:`simulator.cli`).

Nothing here imports the gateway: the simulator only knows the wire contract.
"""

from .city import Address, City, NoRoute, Path, RoadClass, Street
from .device import DeviceClient, DeviceConfig
from .dispatch import DispatchClient, Dispatcher, DispatchError, DispatchStats
from .fleet import DEFAULT_CENTER, Fleet, FleetConfig, format_status, run_fleet
from .geo import LocalProjection, haversine_m
from .manifest import RouteManifest, StopManifest, build_manifest
from .registry import RegistrationError, Registry
from .stats import DeviceStats, FleetReport
from .traffic import TrafficConfig, TrafficField
from .vehicle import Fix, Phase, PlannedStop, RoutePlan, StopVisit, Van, VanConfig
from .wire import Ack, Encoding, ErrorReply, Position, Rejection, decode_reply, encode_frame

__all__ = [
    "DEFAULT_CENTER",
    "Ack",
    "Address",
    "City",
    "DeviceClient",
    "DeviceConfig",
    "DeviceStats",
    "DispatchClient",
    "DispatchError",
    "DispatchStats",
    "Dispatcher",
    "Encoding",
    "ErrorReply",
    "Fix",
    "Fleet",
    "FleetConfig",
    "FleetReport",
    "LocalProjection",
    "NoRoute",
    "Path",
    "Phase",
    "PlannedStop",
    "Position",
    "RegistrationError",
    "Registry",
    "Rejection",
    "RoadClass",
    "RouteManifest",
    "RoutePlan",
    "StopManifest",
    "StopVisit",
    "Street",
    "TrafficConfig",
    "TrafficField",
    "Van",
    "VanConfig",
    "build_manifest",
    "decode_reply",
    "encode_frame",
    "format_status",
    "haversine_m",
    "run_fleet",
]
