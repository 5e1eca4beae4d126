from .engine import EngineConfig, EngineStats, FixBatch, GeofenceEngine
from .geo import LocalFrame
from .zones import Zone
