"""The gateway: device ingest (WebSocket), validation, per-vehicle state on Redis, live
fan-out to browsers, the REST API and pages, configuration and the command line.

Geometry lives in ``geofence``; messages in ``notify``.
"""

from gateway.app import Endpoints, Gateway, run_gateway
from gateway.config import ConfigError, Settings, load_settings
from gateway.fleet.position import Position
from gateway.ingest.wire import Ack, ErrorReply, Reason, Rejection

__all__ = [
    "Ack",
    "ConfigError",
    "Endpoints",
    "ErrorReply",
    "Gateway",
    "Position",
    "Reason",
    "Rejection",
    "Settings",
    "load_settings",
    "run_gateway",
]
