"""The shapes of the operations endpoints' input and output, read by the handlers and
described in ``/openapi.json`` from these same Structs (``api_spec``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.core.fields import EpochS
from gateway.dispatch.lifecycle import STATUSES

DeliveryStatus = Literal[STATUSES]  # type: ignore[valid-type]


class KpisQuery(msgspec.Struct):
    since: (
        Annotated[EpochS, msgspec.Meta(description="events from this time; default a day ago")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class Kpis(msgspec.Struct, omit_defaults=True):
    """KPIs from the event log since ``since`` (rates are null when nothing was counted);
    the exceptions only where notifications run."""

    delivered: int
    failed: int
    on_time_rate: float | None
    avg_delivery_time_s: float | None
    failure_rate: float | None
    eta_error_median_s: float | None
    eta_error_p90_s: float | None
    eta_samples: int
    since: float
    events: int  # events read
    open_exceptions: int | msgspec.UnsetType = msgspec.UNSET
    avg_resolution_s: float | msgspec.UnsetType | None = msgspec.UNSET


class LiveRoute(msgspec.Struct):
    route: str
    etas: dict[str, float]  # each pending stop's ETA, epoch seconds
    stops: dict[str, Literal["pending", "arrived", "departed"]]


class Live(msgspec.Struct):
    """The routes this process tracks (by vehicle) and the number of zones it applies."""

    routes: dict[str, LiveRoute]
    zones: int


class CapturedSms(msgspec.Struct):
    to: str
    from_: str = msgspec.field(name="from")
    body: str
    ts: float


class CapturedEmail(msgspec.Struct):
    to: list[str]
    subject: str
    text: str | None
    ts: float


class Captured(msgspec.Struct):
    """What the local capture servers received, newest first."""

    sms: list[CapturedSms]
    email: list[CapturedEmail]


class DeliveriesCsvQuery(msgspec.Struct):
    status: DeliveryStatus | msgspec.UnsetType = msgspec.UNSET
    route: (
        Annotated[str, msgspec.Meta(description="one route's (id or external id)")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
