"""The shapes of the customer tracking endpoints' input and output, read by the handlers
and described in ``/openapi.json`` from these same Structs (``api_spec``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

EpochS = Annotated[float, msgspec.Meta(description="epoch seconds")]


class TimeWindow(msgspec.Struct, forbid_unknown_fields=True):
    """A time window, epoch seconds."""

    start: float
    end: float


class Destination(msgspec.Struct):
    lat: float
    lon: float


class ShownVehicle(msgspec.Struct):
    """The vehicle, shown only while it drives to this delivery's stop, clear of every stop."""

    lat: float
    lon: float
    heading: float | None
    speed: float | None
    ts: float


class ProofFile(msgspec.Struct):
    sha256: str
    kind: str  # photo | signature


class Proof(msgspec.Struct):
    """The proof of delivery (its files at ``/v1/track/{token}/pod/{sha256}``)."""

    recipient_name: str
    ts: float
    files: list[ProofFile]


class CustomerView(msgspec.Struct):
    """What the tracking link shows: this delivery only."""

    reference: str
    status: str
    kind: str
    window: TimeWindow
    address: str
    destination: Destination
    driver: str | None  # the driver's first name
    eta: float | None
    eta_window: TimeWindow | None
    vehicle: ShownVehicle | None
    reason: str | None  # why the attempt failed
    proof: Proof | None
    reschedule: list[TimeWindow] | None  # the windows on offer after a failed attempt


class RescheduleChoice(msgspec.Struct, forbid_unknown_fields=True):
    """The window chosen, one of the view's ``reschedule`` windows exactly."""

    window: TimeWindow


class LinkIssued(msgspec.Struct):
    """A customer tracking link for the delivery."""

    delivery: str
    token: str
    url: str
    expires: EpochS


class LinksRevoked(msgspec.Struct):
    """Every tracking link of the delivery issued so far stops working."""

    delivery: str
    revoked: bool
