"""The shapes of the device, vehicle and event endpoints' input and output: read by the
handlers and described in ``/openapi.json`` from these same Structs (``api_spec``)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from gateway.core.fields import EpochS, Ident
from gateway.fleet.devices import Filtered
from gateway.fleet.position import Position
from gateway.fleet.state import VehicleState
from notify.events import Event

MAX_TRACK_ROWS: Final = 50_000


class DeviceCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A device to register."""

    id: Ident
    vehicle: Ident | msgspec.UnsetType = msgspec.UNSET  # the device id if not given
    name: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET


class Device(msgspec.Struct):
    """A registered device; ``filtered``: its latest fix not stored, and why (one device's
    list entry leaves it out)."""

    id: str
    vehicle: str
    name: str
    revoked: bool
    created: float
    filtered: Filtered | None = None


class DeviceList(msgspec.Struct):
    """Every registered device."""

    devices: list[Device]


class NewDevice(msgspec.Struct):
    """The device registered, with its secret token: shown once, stored only hashed."""

    id: str
    vehicle: str
    name: str
    token: str


class NewToken(msgspec.Struct):
    """The device's new token; the old one stops working (and a revoked device works again)."""

    id: str
    token: str


class Revoked(msgspec.Struct):
    """The device's token is revoked and its open connections closed (4003)."""

    id: str
    revoked: bool


class VehicleZone(msgspec.Struct):
    """A zone the vehicle is inside (by the geofence rules: past the enter margin, not yet past
    the exit margin), since the fix time ``since``."""

    id: str
    name: str
    kind: str
    since: float


class VehicleDetail(VehicleState, kw_only=True):
    """The latest state of one vehicle and the zones it is inside now, by zone id."""

    zones: list[VehicleZone] = msgspec.field(default_factory=list)


class VehicleList(msgspec.Struct):
    """The latest state of every vehicle this process knows."""

    vehicles: list[VehicleState]


class TrackQuery(msgspec.Struct):
    since: EpochS | msgspec.UnsetType = msgspec.UNSET  # default: an hour ago
    until: EpochS | msgspec.UnsetType = msgspec.UNSET  # default: now
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TRACK_ROWS)] = 10_000


class TrackedPosition(Position, kw_only=True, frozen=True):
    device: str  # the device that sent it


class Track(msgspec.Struct):
    """A vehicle's positions from `since` to `until`, oldest first."""

    vehicle: str
    since: float
    until: float
    positions: list[TrackedPosition]


class EventsQuery(msgspec.Struct):
    after: (
        Annotated[
            str,
            msgspec.Meta(pattern=r"^[0-9]+-[0-9]+$", description="events after this event id"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    order: Annotated[
        Literal["asc", "desc"],
        msgspec.Meta(
            description="asc: the oldest events (after `after`), oldest first; desc: the "
            "newest, newest first"
        ),
    ] = "asc"
    type: (
        Annotated[str, msgspec.Meta(description="only events of this type, in the page read")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class Events(msgspec.Struct):
    """A page of the event log."""

    events: list[Event]


class Health(msgspec.Struct, omit_defaults=True):
    """The gateway serves and Redis answers (``degraded`` with 503 when it does not)."""

    status: str
    redis: str | None = None
    mqtt: Literal["connected", "reconnecting"] | None = None
    # What customer texts and mails go to, where this process sends them: a real provider,
    # the local capture servers (the demo), or nowhere ("not_configured": counted in
    # notify_messages_not_configured_total, warned about at start).
    notify: (
        dict[
            Literal["sms", "email"],
            Literal["twilio", "smtp", "capture", "not_configured"],
        ]
        | None
    ) = None
