"""The shapes of the routes and deliveries API's input and output: read by the handlers
(``dispatch_api``, ``dispatch_validate``) and described in ``/openapi.json`` from these same
Structs (``api_spec``).

The input types say everything a JSON schema can: lengths, ranges, patterns, the calendar
date, the IANA time zones this machine knows. What a schema cannot say is checked by
``dispatch_validate`` and refused with 422 naming the field: a window ending before it starts,
a reefer range upside down, a channel without its contact, an external id used twice in a
batch, an email's part before ``@`` longer than 64 characters, a vehicle not registered.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Final, Literal, get_args

import msgspec

import geofence
from gateway.core.fields import EpochS, Ident
from gateway.dispatch.lifecycle import FAILURE_REASONS, STATUSES
from gateway.dispatch.records import ROUTE_STATUSES, STOP_KINDS, DeliveryRecord, Driver, RouteRecord

MAX_ROUTES_PER_IMPORT: Final = 1_000
MAX_STOPS_PER_ROUTE: Final = geofence.routes.MAX_STOPS
MAX_DELIVERIES_PER_STOP: Final = 200
MAX_PATH_POINTS: Final = geofence.routes.MAX_PATH_POINTS
MAX_EXTERNAL_ID_CHARS: Final = 200
MAX_NAME_CHARS: Final = 200
MAX_ADDRESS_CHARS: Final = 500
MAX_NOTES_CHARS: Final = 2_000
MAX_SERVICE_S: Final = 86_400.0
MAX_PHONE_CHARS: Final = 64  # separators included
MAX_EMAIL_CHARS: Final = 254  # RFC 5321 path limit minus the angle brackets
MAX_EMAIL_LOCAL_CHARS: Final = 64
TEMP_RANGE_C: Final = (-100.0, 100.0)
MAX_LIST: Final = 1_000
DEFAULT_LIST: Final = 100

# Separators a phone number may be written with; dropped before the E.164 check.
PHONE_SEPARATORS: Final = r"[\s().-]"
E164_PATTERN: Final = r"^\+[1-9][0-9]{7,14}$"
PHONE_PATTERN: Final = rf"^{PHONE_SEPARATORS}*\+{PHONE_SEPARATORS}*[1-9]({PHONE_SEPARATORS}*[0-9]){{7,14}}{PHONE_SEPARATORS}*$"  # noqa: E501
_EMAIL_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LABEL: Final = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN: Final = (
    rf"^\s*{_EMAIL_ATOM}(\.{_EMAIL_ATOM})*@({_EMAIL_LABEL}\.)+[A-Za-z]{{1,63}}\s*$"
)
# No control characters, and something other than white space (which is trimmed).
EXTERNAL_ID_PATTERN: Final = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"

# ----- field types

ExternalId = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_EXTERNAL_ID_CHARS,
        pattern=EXTERNAL_ID_PATTERN,
        description="the shipper's id: no control characters; surrounding white space is trimmed",
    ),
]
Name = Annotated[
    str,
    msgspec.Meta(max_length=MAX_NAME_CHARS, pattern=r"\S", description="trimmed; not blank"),
]
Address = Annotated[
    str,
    msgspec.Meta(max_length=MAX_ADDRESS_CHARS, pattern=r"\S", description="trimmed; not blank"),
]
Notes = Annotated[str, msgspec.Meta(max_length=MAX_NOTES_CHARS, description="trimmed")]
Phone = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_PHONE_CHARS,
        pattern=PHONE_PATTERN,
        description="an E.164 number (+ then 8 to 15 digits), which may be written with "
        "spaces, dots, dashes and brackets; stored without them",
    ),
]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_EMAIL_CHARS,
        pattern=EMAIL_PATTERN,
        description="name@example.com; trimmed; the part before @ at most "
        f"{MAX_EMAIL_LOCAL_CHARS} characters (else 422)",
    ),
]
Language = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="a language tag such as en or fr-CA",
    ),
]
Brand = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="a brand id: letters, digits, '_', '.', '-'",
    ),
]
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Temperature = Annotated[
    float, msgspec.Meta(ge=TEMP_RANGE_C[0], le=TEMP_RANGE_C[1], description="°C")
]
ServiceS = Annotated[
    float, msgspec.Meta(ge=0.0, le=MAX_SERVICE_S, description="time spent at the stop, s")
]
TimeValue = EpochS | Annotated[dt.datetime, msgspec.Meta(tz=True)]
"""Epoch seconds, or an RFC 3339 date-time with its UTC offset (``Z`` or ``+02:00``)."""

Channel = Literal["sms", "email"]
StopKind = Literal["delivery", "pickup"]
RouteStatus = Literal["planned", "started", "finished"]
DeliveryStatus = Literal[
    "scheduled", "out_for_delivery", "arriving", "delivered", "failed", "rescheduled",
    "returned", "cancelled",
]  # fmt: skip
FailureReason = Literal[
    "nobody_home", "no_access", "refused", "damaged", "address_not_found", "other"
]
assert get_args(StopKind) == STOP_KINDS
assert get_args(RouteStatus) == ROUTE_STATUSES
assert get_args(DeliveryStatus) == STATUSES
assert get_args(FailureReason) == FAILURE_REASONS

TIME_ZONES: Final = tuple(sorted(zoneinfo.available_timezones()))
if TYPE_CHECKING:
    TimeZone = str
else:
    # The zones this machine's tz database has: what zoneinfo can load.
    TimeZone = Annotated[Literal[TIME_ZONES], msgspec.Meta(description="an IANA time zone")]

# ----- the route import (PUT /v1/routes)


class LatLon(msgspec.Struct, forbid_unknown_fields=True):
    lat: Lat
    lon: Lon


class WindowInput(msgspec.Struct, forbid_unknown_fields=True):
    """A promised time window; one that ends before it starts is refused (422)."""

    start: TimeValue
    end: TimeValue


class DriverInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Customers are shown the first name."""

    name: Name
    phone: Phone | msgspec.UnsetType = msgspec.UNSET


class RecipientInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who is told about the delivery. ``channels`` defaults to each one with a contact
    given; a channel listed without its contact is refused (422)."""

    name: Name
    phone: Phone | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET
    language: Language = "en"
    timezone: TimeZone = "UTC"
    channels: (
        Annotated[list[Channel], msgspec.Meta(extra_json_schema={"uniqueItems": True})]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class DeliveryInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An order to hand over (or pick up); external ids are unique in a batch (else 422).
    ``temp_max_c`` below ``temp_min_c`` is refused (422)."""

    external_id: ExternalId
    recipient: RecipientInput
    brand: Brand = "default"
    notes: Notes = ""
    temp_min_c: Temperature | msgspec.UnsetType = msgspec.UNSET
    temp_max_c: Temperature | msgspec.UnsetType = msgspec.UNSET


class StopInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A stop; its external id is unique within its route (else 422)."""

    external_id: ExternalId
    location: LatLon
    address: Address
    window: WindowInput
    deliveries: Annotated[
        list[DeliveryInput], msgspec.Meta(min_length=1, max_length=MAX_DELIVERIES_PER_STOP)
    ]
    service_s: ServiceS = 0.0
    planned_arrival: TimeValue | msgspec.UnsetType = msgspec.UNSET
    kind: StopKind = "delivery"


class RouteInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A vehicle's day; external ids are unique in a batch (else 422), and the vehicle
    must be registered (else 422)."""

    external_id: ExternalId
    vehicle: Ident
    driver: DriverInput
    date: dt.date
    stops: Annotated[list[StopInput], msgspec.Meta(min_length=1, max_length=MAX_STOPS_PER_ROUTE)]
    path: (
        Annotated[
            list[tuple[Lat, Lon]],
            msgspec.Meta(
                min_length=2, max_length=MAX_PATH_POINTS,
                description="the planned polyline, [lat, lon] points",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET  # fmt: skip


class RouteImport(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of routes to create or update (by external id), all or nothing."""

    routes: Annotated[
        list[RouteInput], msgspec.Meta(min_length=1, max_length=MAX_ROUTES_PER_IMPORT)
    ]


class ImportedId(msgspec.Struct):
    external_id: str
    id: str


class ImportResult(msgspec.Struct):
    """The batch is stored; what changed, in counts of the events it logged."""

    routes: list[ImportedId]
    imported: int
    updated: int
    deliveries_created: int
    deliveries_updated: int
    events: int


# ----- the other operations

Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)]


class RoutesQuery(msgspec.Struct):
    date: dt.date | msgspec.UnsetType = msgspec.UNSET
    vehicle: Ident | msgspec.UnsetType = msgspec.UNSET
    status: RouteStatus | msgspec.UnsetType = msgspec.UNSET
    limit: Limit = DEFAULT_LIST


class RouteSummary(msgspec.Struct):
    """A route without its stops and path."""

    id: str
    external_id: str
    vehicle: str
    driver: Driver
    date: str
    status: str
    stops: int
    deliveries: int
    created: float
    updated: float
    started: float | None

    @classmethod
    def of(cls, r: RouteRecord) -> RouteSummary:
        return cls(
            id=r.id,
            external_id=r.external_id,
            vehicle=r.vehicle,
            driver=r.driver,
            date=r.date,
            status=r.status,
            stops=len(r.stops),
            deliveries=len(r.delivery_ids()),
            created=r.created,
            updated=r.updated,
            started=r.started,
        )


class RouteList(msgspec.Struct):
    """Routes by date and external id."""

    routes: list[RouteSummary]


class Assign(msgspec.Struct, forbid_unknown_fields=True):
    """A new vehicle, a new driver, or both (at least one)."""

    vehicle: Ident | msgspec.UnsetType = msgspec.UNSET
    driver: DriverInput | msgspec.UnsetType = msgspec.UNSET


# What the description says of Assign that its Struct cannot: one of the two is given.
ASSIGN_BODY: Final = Annotated[Assign, msgspec.Meta(extra_json_schema={"minProperties": 1})]


class RouteChange(msgspec.Struct):
    """The route as changed, and how many events the change logged."""

    route: RouteRecord
    events: int


class DeliveriesQuery(msgspec.Struct):
    route: (
        Annotated[str, msgspec.Meta(description="route id or external id (404 if unknown)")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    status: DeliveryStatus | msgspec.UnsetType = msgspec.UNSET
    q: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_NAME_CHARS,
                description="part of the external id, recipient name, address or phone",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    limit: Limit = DEFAULT_LIST


class DeliveryList(msgspec.Struct):
    """Deliveries by window start and external id; ``total`` counts every match."""

    deliveries: list[DeliveryRecord]
    total: int


class StatusChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new status. ``failed`` needs a ``reason`` (else 422), ``rescheduled`` a
    ``window`` (else 409)."""

    status: DeliveryStatus
    reason: FailureReason | msgspec.UnsetType = msgspec.UNSET
    note: Notes | msgspec.UnsetType = msgspec.UNSET
    window: WindowInput | msgspec.UnsetType = msgspec.UNSET


class DeliveryChange(msgspec.Struct):
    """The delivery as changed, and how many events the change logged."""

    delivery: DeliveryRecord
    events: int


class TransitionError(msgspec.Struct, omit_defaults=True):
    """The change contradicts the current state; an illegal status change also says
    ``from`` and ``to``."""

    error: str
    field: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
