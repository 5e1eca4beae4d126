"""Routes, stops and deliveries as the gateway stores them, and their internal ids.

A :class:`RouteRecord` is stored as JSON at ``route:{dispatch}:<id>`` with its stops
embedded; each stop lists the ids of its deliveries. A :class:`DeliveryRecord` is stored as
JSON at ``dlv:{dispatch}:<id>``: a ``notify.deliveries.Delivery`` (what the notifier reads,
with the same ``Window`` and ``Recipient``) with the stop's location, the goods' temperature
range and the status history fields.

Internal ids are derived from the shipper's external ids (a hash), so importing the same
external id again always lands on the same record, whichever process does it.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

import geofence
from notify.deliveries import Delivery, Recipient, Window

PLANNED: Final = "planned"
STARTED: Final = "started"
FINISHED: Final = "finished"
ROUTE_STATUSES: Final = (PLANNED, STARTED, FINISHED)

DELIVERY: Final = "delivery"
PICKUP: Final = "pickup"  # return pickups: reverse logistics
STOP_KINDS: Final = (DELIVERY, PICKUP)

PHONE_QUERY_MIN_DIGITS: Final = 4
PHONE_QUERY_CHARS: Final = "0123456789+-.() "

ID_HASH_CHARS: Final = 16  # 64 bits of SHA-256: no collision in any realistic fleet


class Location(msgspec.Struct, frozen=True):
    lat: float
    lon: float


class Driver(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    phone: str | None = None

    @property
    def first_name(self) -> str:
        """What customers are shown of the driver."""
        return self.name.split()[0] if self.name.split() else ""


class DeliveryRecord(Delivery, frozen=True, kw_only=True):
    """One order to hand over (or to pick up) at a stop: what the notifier reads of it
    (``notify.deliveries.Delivery``, the fields it defines), and the rest."""

    id: str
    external_id: str
    route: str | None
    stop: str | None
    status: str
    address: str
    window: Window
    brand: str
    kind: str
    recipient: Recipient
    notes: str
    temp_min_c: float | None
    temp_max_c: float | None
    location: Location
    reason: str | None = None
    note: str | None = None
    created: float = 0.0
    updated: float = 0.0


class StopRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    external_id: str
    kind: str
    location: Location
    address: str
    window: Window
    service_s: float
    planned_arrival: float | None
    deliveries: tuple[str, ...]


class RouteRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A vehicle's day: stops in planned order and, optionally, the planned path."""

    id: str
    external_id: str
    vehicle: str
    driver: Driver
    date: str
    status: str
    stops: tuple[StopRecord, ...]
    path: tuple[tuple[float, float], ...] | None = None
    created: float = 0.0
    updated: float = 0.0
    started: float | None = None

    def delivery_ids(self) -> list[str]:
        return [d for s in self.stops for d in s.deliveries]

    def summary(self) -> dict[str, object]:
        """The route without its stops and path, for listings."""
        return {
            "id": self.id,
            "external_id": self.external_id,
            "vehicle": self.vehicle,
            "driver": msgspec.to_builtins(self.driver),
            "date": self.date,
            "status": self.status,
            "stops": len(self.stops),
            "deliveries": len(self.delivery_ids()),
            "created": self.created,
            "updated": self.updated,
            "started": self.started,
        }


def _hash_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:ID_HASH_CHARS]}"


def route_id(external_id: str) -> str:
    return _hash_id("r", external_id)


def stop_id(route_external_id: str, stop_external_id: str) -> str:
    # Stop external ids need only be unique within their route.
    return _hash_id("s", route_external_id, stop_external_id)


def delivery_id(external_id: str) -> str:
    return _hash_id("d", external_id)


_route_dec: Final = msgspec.json.Decoder(RouteRecord)
_delivery_dec: Final = msgspec.json.Decoder(DeliveryRecord)
_enc: Final = msgspec.json.Encoder()


def encode(record: RouteRecord | DeliveryRecord) -> bytes:
    return _enc.encode(record)


def decode_route(raw: bytes) -> RouteRecord:
    return _route_dec.decode(raw)


def decode_delivery(raw: bytes) -> DeliveryRecord:
    return _delivery_dec.decode(raw)


def to_geofence_route(
    route: RouteRecord, *, arrival_radius_m: float | None = None
) -> geofence.Route:
    """The route as the pure :class:`geofence.Route` a route tracker follows.

    Stop ids are the internal stop ids. Import validation keeps within the geofence limits,
    so a stored route always converts.
    """
    return geofence.Route(
        id=route.id,
        vehicle_id=route.vehicle,
        stops=tuple(
            geofence.Stop(
                id=s.id,
                lat=s.location.lat,
                lon=s.location.lon,
                window_start=s.window.start,
                window_end=s.window.end,
                service_s=s.service_s,
                planned_arrival=s.planned_arrival,
                arrival_radius_m=arrival_radius_m,
            )
            for s in route.stops
        ),
        path=route.path,
    )


def matches_query(d: DeliveryRecord, q: str) -> bool:
    """Whether a search ``q`` finds ``d``: a case-insensitive part of its id, external id,
    recipient name or address, or, for a query that looks like a phone number (digits and
    separators, at least 4 digits), part of its recipient's phone."""
    needle = q.strip().casefold()
    if not needle:
        return True
    if any(needle in hay.casefold() for hay in (d.external_id, d.recipient.name, d.address, d.id)):
        return True
    # Phones match on digits alone, so "+33 6 12 34" finds "+33612345678".
    digits = "".join(c for c in needle if c.isdigit())
    phone_like = len(digits) >= PHONE_QUERY_MIN_DIGITS and not needle.strip(PHONE_QUERY_CHARS)
    return phone_like and d.recipient.phone is not None and digits in d.recipient.phone
