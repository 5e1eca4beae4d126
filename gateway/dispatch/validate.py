"""A route import (``PUT /v1/routes``) into records, naming the bad field.

The batch is first read as a :class:`~gateway.dispatch.models.RouteImport`, whose types say
all a JSON schema can (400 otherwise); then the rules a schema cannot say are checked (422):
a window ending before it starts, a reefer range upside down, a channel listed without its
contact, an external id used twice, an email's part before ``@`` over 64 characters. The
whole batch is checked before anything is written: the first problem raises
:class:`InvalidImport` whose ``field`` is a path such as ``routes[0].stops[2].window``.
Whether each route's vehicle exists is the caller's check (it needs Redis).
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from gateway.core.structs import field_of
from gateway.dispatch.lifecycle import SCHEDULED
from gateway.dispatch.models import (
    MAX_EMAIL_LOCAL_CHARS,
    PHONE_SEPARATORS,
    DeliveryInput,
    DriverInput,
    RecipientInput,
    RouteImport,
    RouteInput,
    StopInput,
    TimeValue,
    WindowInput,
)
from gateway.dispatch.records import (
    PLANNED,
    DeliveryRecord,
    Driver,
    Location,
    Recipient,
    RouteRecord,
    StopRecord,
    Window,
    delivery_id,
    route_id,
    stop_id,
)

T = TypeVar("T")

_separators: Final = re.compile(PHONE_SEPARATORS)


class InvalidImport(ValueError):
    """Bad input; ``field`` is the path of the offending value. ``status`` is 400: the
    input is not of the described type."""

    status: int = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Unprocessable(InvalidImport):
    """Input of the described type that breaks a rule the type cannot state (HTTP 422)."""

    status = 422


class ImportedRoute(NamedTuple):
    """A validated route with its deliveries, as new records (status not yet merged)."""

    route: RouteRecord
    deliveries: list[DeliveryRecord]


def typed(kind: type[T], value: Any) -> T:
    """``value`` (decoded JSON) as ``kind``, or :class:`InvalidImport` naming the field."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        message, where = field_of(exc)
        raise InvalidImport(where or "", message) from None


# ----- values the schema describes, in their stored form


def phone(value: str) -> str:
    """The E.164 number, without the separators it may be written with."""
    return _separators.sub("", value)


def timestamp(value: TimeValue) -> float:
    return value if isinstance(value, float) else value.timestamp()


def window(w: WindowInput, field: str) -> Window:
    start, end = timestamp(w.start), timestamp(w.end)
    if end < start:
        raise Unprocessable(field, "the window ends before it starts")
    return Window(start, end)


def driver(d: DriverInput) -> Driver:
    return Driver(
        name=d.name.strip(),
        phone=None if isinstance(d.phone, msgspec.UnsetType) else phone(d.phone),
    )


def _unset(value: T | msgspec.UnsetType) -> T | None:
    return None if isinstance(value, msgspec.UnsetType) else value


def _recipient(r: RecipientInput, field: str) -> Recipient:
    tel = None if isinstance(r.phone, msgspec.UnsetType) else phone(r.phone)
    mail = None if isinstance(r.email, msgspec.UnsetType) else r.email.strip()
    if mail is not None and len(mail.rpartition("@")[0]) > MAX_EMAIL_LOCAL_CHARS:
        raise Unprocessable(
            f"{field}.email", f"the part before @ is over {MAX_EMAIL_LOCAL_CHARS} characters"
        )
    if isinstance(r.channels, msgspec.UnsetType):
        # Unsaid: every channel the shipper gave a contact for.
        channels = tuple(c for c, v in (("sms", tel), ("email", mail)) if v is not None)
    else:
        if len(set(r.channels)) != len(r.channels):
            raise InvalidImport(f"{field}.channels", "lists a channel twice")
        if "sms" in r.channels and tel is None:
            raise Unprocessable(f"{field}.phone", "is required for the sms channel")
        if "email" in r.channels and mail is None:
            raise Unprocessable(f"{field}.email", "is required for the email channel")
        channels = tuple(r.channels)
    return Recipient(
        name=r.name.strip(),
        phone=tel,
        email=mail,
        language=r.language,
        timezone=r.timezone,
        channels=channels,
    )


def _unique(seen: dict[str, str], key: str, field: str) -> None:
    if key in seen:
        raise Unprocessable(field, f"duplicate external id {key!r} (also at {seen[key]})")
    seen[key] = field


# ----- the import


def parse_import(body: RouteImport | Any, now: float) -> list[ImportedRoute]:
    """Validate a whole ``{"routes": [...]}`` batch (a :class:`RouteImport`, or decoded
    JSON) into new records, or raise :class:`InvalidImport` at the first problem."""
    batch = body if isinstance(body, RouteImport) else typed(RouteImport, body)
    route_ids: dict[str, str] = {}
    delivery_ids: dict[str, str] = {}
    return [
        _route(r, f"routes[{i}]", now, route_ids, delivery_ids) for i, r in enumerate(batch.routes)
    ]


def _route(
    r: RouteInput, field: str, now: float, route_ids: dict[str, str], delivery_ids: dict[str, str]
) -> ImportedRoute:
    ext = r.external_id.strip()
    _unique(route_ids, ext, f"{field}.external_id")
    rid = route_id(ext)
    stop_ext_ids: dict[str, str] = {}
    stops: list[StopRecord] = []
    deliveries: list[DeliveryRecord] = []
    for j, s in enumerate(r.stops):
        stop, dlvs = _stop(s, f"{field}.stops[{j}]", ext, rid, now, stop_ext_ids, delivery_ids)
        stops.append(stop)
        deliveries.extend(dlvs)
    route = RouteRecord(
        id=rid,
        external_id=ext,
        vehicle=r.vehicle,
        driver=driver(r.driver),
        date=r.date.isoformat(),
        status=PLANNED,
        stops=tuple(stops),
        path=None if isinstance(r.path, msgspec.UnsetType) else tuple(r.path),
        created=now,
        updated=now,
    )
    return ImportedRoute(route, deliveries)


def _stop(
    s: StopInput,
    field: str,
    route_ext: str,
    rid: str,
    now: float,
    stop_ext_ids: dict[str, str],
    delivery_ids: dict[str, str],
) -> tuple[StopRecord, list[DeliveryRecord]]:
    ext = s.external_id.strip()
    _unique(stop_ext_ids, ext, f"{field}.external_id")
    sid = stop_id(route_ext, ext)
    location = Location(s.location.lat, s.location.lon)
    address = s.address.strip()
    win = window(s.window, f"{field}.window")
    deliveries = [
        _delivery(d, f"{field}.deliveries[{k}]", rid, sid, s.kind, location, address, win, now,
                  delivery_ids)
        for k, d in enumerate(s.deliveries)
    ]  # fmt: skip
    stop = StopRecord(
        id=sid,
        external_id=ext,
        kind=s.kind,
        location=location,
        address=address,
        window=win,
        service_s=s.service_s,
        planned_arrival=(
            None
            if isinstance(s.planned_arrival, msgspec.UnsetType)
            else timestamp(s.planned_arrival)
        ),
        deliveries=tuple(d.id for d in deliveries),
    )
    return stop, deliveries


def _delivery(
    d: DeliveryInput,
    field: str,
    rid: str,
    sid: str,
    kind: str,
    location: Location,
    address: str,
    win: Window,
    now: float,
    delivery_ids: dict[str, str],
) -> DeliveryRecord:
    ext = d.external_id.strip()
    _unique(delivery_ids, ext, f"{field}.external_id")
    tmin, tmax = _unset(d.temp_min_c), _unset(d.temp_max_c)
    if tmin is not None and tmax is not None and tmax < tmin:
        raise Unprocessable(f"{field}.temp_max_c", "must not be below temp_min_c")
    return DeliveryRecord(
        id=delivery_id(ext),
        external_id=ext,
        route=rid,
        stop=sid,
        status=SCHEDULED,
        address=address,
        window=win,
        brand=d.brand,
        kind=kind,
        recipient=_recipient(d.recipient, f"{field}.recipient"),
        notes=d.notes.strip(),
        temp_min_c=tmin,
        temp_max_c=tmax,
        location=location,
        created=now,
        updated=now,
    )
