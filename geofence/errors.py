"""Domain errors raised by :mod:`geofence` when given invalid input."""

from __future__ import annotations


class GeofenceError(ValueError):
    """Invalid input to the geofence package. ``field`` names the offending input (a dotted
    path such as ``"geometry.coordinates"``), ``reason`` says what is wrong with it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[GeofenceError], tuple[str, str]]:
        return type(self), (self.field, self.reason)


class ZoneError(GeofenceError):
    """A zone definition (GeoJSON feature or constructor arguments) is invalid."""


class RouteError(GeofenceError):
    """A route or stop definition is invalid."""
