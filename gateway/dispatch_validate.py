"""Validation of a route import (``PUT /v1/routes``) into records, naming the bad field.

The whole batch is checked before anything is written: the first problem raises
:class:`InvalidImport` whose ``field`` is a path such as ``routes[0].stops[2].window``.
Unknown keys are refused too, so a misspelt optional field is not silently ignored.
Whether each route's vehicle exists is the caller's check (it needs Redis).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable, Collection
from datetime import date, datetime
from typing import Any, Final, NamedTuple

import geofence

from .dispatch import (
    DELIVERY,
    PLANNED,
    STOP_KINDS,
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
from .dispatch_lifecycle import SCHEDULED

MAX_ROUTES_PER_IMPORT: Final = 1_000
MAX_STOPS_PER_ROUTE: Final = geofence.routes.MAX_STOPS
MAX_DELIVERIES_PER_STOP: Final = 200
MAX_PATH_POINTS: Final = geofence.routes.MAX_PATH_POINTS
MAX_EXTERNAL_ID_CHARS: Final = 200
MAX_NAME_CHARS: Final = 200
MAX_ADDRESS_CHARS: Final = 500
MAX_NOTES_CHARS: Final = 2_000
MAX_SERVICE_S: Final = 86_400.0
TEMP_RANGE_C: Final = (-100.0, 100.0)
CUSTOMER_CHANNELS: Final = ("sms", "email")

VEHICLE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # as device vehicle ids
BRAND_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LANGUAGE_RE: Final = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
E164_RE: Final = re.compile(r"^\+[1-9][0-9]{7,14}$")
PHONE_SEPARATORS_RE: Final = re.compile(r"[\s().-]")
EMAIL_LOCAL_RE: Final = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$"
)
EMAIL_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class InvalidImport(ValueError):
    """Bad input; ``field`` is the path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ImportedRoute(NamedTuple):
    """A validated route with its deliveries, as new records (status not yet merged)."""

    route: RouteRecord
    deliveries: list[DeliveryRecord]


# ----- primitive checks (shared with the status and assign endpoints)


def obj(value: Any, field: str, required: Collection[str], optional: Collection[str]) -> dict:
    """``value`` as a JSON object with every ``required`` key and no key outside both sets."""
    if not isinstance(value, dict):
        raise InvalidImport(field, "must be an object")
    for k in required:
        if value.get(k) is None:
            raise InvalidImport(_join(field, k), "is required")
    for k in value:
        if k not in required and k not in optional:
            raise InvalidImport(_join(field, str(k)), "unknown field")
    return value


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def text(value: Any, field: str, max_chars: int, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidImport(field, "must be a string")
    value = value.strip()
    if not value and not empty_ok:
        raise InvalidImport(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidImport(field, f"must be at most {max_chars} characters")
    return value


def external_id(value: Any, field: str) -> str:
    value = text(value, field, MAX_EXTERNAL_ID_CHARS)
    if CONTROL_RE.search(value):
        raise InvalidImport(field, "must not contain control characters")
    return value


def number(value: Any, field: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    # bool is an int in Python; true/false is never a sensible number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidImport(field, "must be a number")
    x = float(value)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise InvalidImport(field, f"must be a finite number between {lo} and {hi}")
    return x


def timestamp(value: Any, field: str) -> float:
    """Epoch seconds, or an ISO 8601 date-time with a UTC offset (``Z`` or ``+02:00``)."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidImport(field, "must be epoch seconds or an ISO 8601 date-time") from None
        if dt.tzinfo is None:
            raise InvalidImport(field, "an ISO 8601 time needs a UTC offset (Z or +hh:mm)")
        return dt.timestamp()
    return number(value, field, lo=0.0)


def window(value: Any, field: str) -> Window:
    w = obj(value, field, ("start", "end"), ())
    start = timestamp(w["start"], f"{field}.start")
    end = timestamp(w["end"], f"{field}.end")
    if end < start:
        raise InvalidImport(field, "the window ends before it starts")
    return Window(start, end)


def phone(value: Any, field: str) -> str:
    """An E.164 number; spaces, dots, dashes and brackets are dropped first."""
    if not isinstance(value, str):
        raise InvalidImport(field, "must be a string")
    compact = PHONE_SEPARATORS_RE.sub("", value)
    if not E164_RE.match(compact):
        raise InvalidImport(field, "must be an E.164 number: + then 8 to 15 digits")
    return compact


def email(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidImport(field, "must be a string")
    value = value.strip()
    local, at, domain = value.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or len(value) > 254
        or len(local) > 64
        or not EMAIL_LOCAL_RE.match(local)
        or len(labels) < 2
        or not all(EMAIL_LABEL_RE.match(label) for label in labels)
        or not labels[-1].isalpha()
    ):
        raise InvalidImport(field, "must be an email address such as name@example.com")
    return value


def driver(value: Any, field: str) -> Driver:
    d = obj(value, field, ("name",), ("phone",))
    return Driver(
        name=text(d["name"], f"{field}.name", MAX_NAME_CHARS),
        phone=None if d.get("phone") is None else phone(d["phone"], f"{field}.phone"),
    )


def vehicle(value: Any, field: str) -> str:
    if not isinstance(value, str) or not VEHICLE_RE.match(value):
        raise InvalidImport(field, "must be a vehicle id (letters, digits, '_', '.', ':', '-')")
    return value


def _location(value: Any, field: str) -> Location:
    if value is None:
        raise InvalidImport(field, "is required: stops without coordinates are refused")
    loc = obj(value, field, ("lat", "lon"), ())
    return Location(
        number(loc["lat"], f"{field}.lat", -90.0, 90.0),
        number(loc["lon"], f"{field}.lon", -180.0, 180.0),
    )


def _timezone(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidImport(field, "must be an IANA time zone such as Europe/Paris")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidImport(field, f"unknown time zone {value!r} (IANA names only)") from None
    return value


def _recipient(value: Any, field: str) -> Recipient:
    r = obj(value, field, ("name",), ("phone", "email", "language", "timezone", "channels"))
    tel = None if r.get("phone") is None else phone(r["phone"], f"{field}.phone")
    mail = None if r.get("email") is None else email(r["email"], f"{field}.email")
    language = r.get("language", "en")
    if not isinstance(language, str) or not LANGUAGE_RE.match(language):
        raise InvalidImport(f"{field}.language", "must be a language tag such as en or fr-CA")
    tz = _timezone(r.get("timezone", "UTC"), f"{field}.timezone")
    raw_channels = r.get("channels")
    if raw_channels is None:
        # Unsaid: every channel the shipper gave a contact for.
        channels = tuple(c for c, v in (("sms", tel), ("email", mail)) if v is not None)
    else:
        cf = f"{field}.channels"
        if not isinstance(raw_channels, list) or not all(
            c in CUSTOMER_CHANNELS for c in raw_channels
        ):
            raise InvalidImport(cf, f"must be a list of {', '.join(CUSTOMER_CHANNELS)}")
        if len(set(raw_channels)) != len(raw_channels):
            raise InvalidImport(cf, "lists a channel twice")
        if "sms" in raw_channels and tel is None:
            raise InvalidImport(f"{field}.phone", "is required for the sms channel")
        if "email" in raw_channels and mail is None:
            raise InvalidImport(f"{field}.email", "is required for the email channel")
        channels = tuple(raw_channels)
    return Recipient(
        name=text(r["name"], f"{field}.name", MAX_NAME_CHARS),
        phone=tel,
        email=mail,
        language=language,
        timezone=tz,
        channels=channels,
    )


def _path(value: Any, field: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_PATH_POINTS:
        raise InvalidImport(field, f"must be a list of 2 to {MAX_PATH_POINTS} [lat, lon] points")
    out = []
    for i, p in enumerate(value):
        pf = f"{field}[{i}]"
        if not isinstance(p, list) or len(p) != 2:
            raise InvalidImport(pf, "must be a [lat, lon] pair")
        out.append((number(p[0], pf, -90.0, 90.0), number(p[1], pf, -180.0, 180.0)))
    return tuple(out)


def _list(value: Any, field: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list) or not lo <= len(value) <= hi:
        raise InvalidImport(field, f"must be a list of {lo} to {hi} items")
    return value


def _unique(seen: dict[str, str], key: str, field: str) -> None:
    if key in seen:
        raise InvalidImport(field, f"duplicate external id {key!r} (also at {seen[key]})")
    seen[key] = field


# ----- the import


def parse_import(body: Any, now: float) -> list[ImportedRoute]:
    """Validate a whole ``{"routes": [...]}`` batch into new records, or raise
    :class:`InvalidImport` at the first problem."""
    b = obj(body, "", ("routes",), ())
    routes = _list(b["routes"], "routes", 1, MAX_ROUTES_PER_IMPORT)
    route_ids: dict[str, str] = {}
    delivery_ids: dict[str, str] = {}
    out = []
    for i, raw in enumerate(routes):
        out.append(_route(raw, f"routes[{i}]", now, route_ids, delivery_ids))
    return out


_ROUTE_KEYS: Final = ("external_id", "vehicle", "driver", "date", "stops")
_STOP_KEYS: Final = ("external_id", "address", "window", "deliveries")
_STOP_OPTIONAL: Final = ("location", "service_s", "planned_arrival", "kind")
_DELIVERY_OPTIONAL: Final = ("brand", "notes", "temp_min_c", "temp_max_c")


def _route(
    raw: Any, field: str, now: float, route_ids: dict[str, str], delivery_ids: dict[str, str]
) -> ImportedRoute:
    r = obj(raw, field, _ROUTE_KEYS, ("path",))
    ext = external_id(r["external_id"], f"{field}.external_id")
    _unique(route_ids, ext, f"{field}.external_id")
    rid = route_id(ext)
    day = r["date"]
    if not isinstance(day, str) or not DATE_RE.match(day):
        raise InvalidImport(f"{field}.date", "must be a date YYYY-MM-DD")
    try:
        date.fromisoformat(day)
    except ValueError:
        raise InvalidImport(f"{field}.date", "is not a calendar date") from None
    stops_raw = _list(r["stops"], f"{field}.stops", 1, MAX_STOPS_PER_ROUTE)
    stop_ext_ids: dict[str, str] = {}
    stops: list[StopRecord] = []
    deliveries: list[DeliveryRecord] = []
    for j, sraw in enumerate(stops_raw):
        sf = f"{field}.stops[{j}]"
        stop, dlvs = _stop(sraw, sf, ext, rid, now, stop_ext_ids, delivery_ids)
        stops.append(stop)
        deliveries.extend(dlvs)
    route = RouteRecord(
        id=rid,
        external_id=ext,
        vehicle=vehicle(r["vehicle"], f"{field}.vehicle"),
        driver=driver(r["driver"], f"{field}.driver"),
        date=day,
        status=PLANNED,
        stops=tuple(stops),
        path=None if r.get("path") is None else _path(r["path"], f"{field}.path"),
        created=now,
        updated=now,
    )
    return ImportedRoute(route, deliveries)


def _stop(
    raw: Any,
    field: str,
    route_ext: str,
    rid: str,
    now: float,
    stop_ext_ids: dict[str, str],
    delivery_ids: dict[str, str],
) -> tuple[StopRecord, list[DeliveryRecord]]:
    s = obj(raw, field, _STOP_KEYS, _STOP_OPTIONAL)
    ext = external_id(s["external_id"], f"{field}.external_id")
    _unique(stop_ext_ids, ext, f"{field}.external_id")
    sid = stop_id(route_ext, ext)
    kind = s.get("kind", DELIVERY)
    if kind not in STOP_KINDS:
        raise InvalidImport(f"{field}.kind", f"must be one of {', '.join(STOP_KINDS)}")
    location = _location(s.get("location"), f"{field}.location")
    address = text(s["address"], f"{field}.address", MAX_ADDRESS_CHARS)
    win = window(s["window"], f"{field}.window")
    service_s = number(s.get("service_s", 0), f"{field}.service_s", 0.0, MAX_SERVICE_S)
    planned = s.get("planned_arrival")
    planned_arrival = None if planned is None else timestamp(planned, f"{field}.planned_arrival")
    dlvs_raw = _list(s["deliveries"], f"{field}.deliveries", 1, MAX_DELIVERIES_PER_STOP)
    deliveries = [
        _delivery(d, f"{field}.deliveries[{k}]", rid, sid, kind, location, address, win, now,
                  delivery_ids)
        for k, d in enumerate(dlvs_raw)
    ]  # fmt: skip
    stop = StopRecord(
        id=sid,
        external_id=ext,
        kind=kind,
        location=location,
        address=address,
        window=win,
        service_s=service_s,
        planned_arrival=planned_arrival,
        deliveries=tuple(d.id for d in deliveries),
    )
    return stop, deliveries


def _delivery(
    raw: Any,
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
    d = obj(raw, field, ("external_id", "recipient"), _DELIVERY_OPTIONAL)
    ext = external_id(d["external_id"], f"{field}.external_id")
    _unique(delivery_ids, ext, f"{field}.external_id")
    brand = d.get("brand", "default")
    if not isinstance(brand, str) or not BRAND_RE.match(brand):
        raise InvalidImport(f"{field}.brand", "must be a brand id (letters, digits, '_', '.', '-')")
    tmin = _opt(
        d.get("temp_min_c"), f"{field}.temp_min_c", lambda v, f: number(v, f, *TEMP_RANGE_C)
    )
    tmax = _opt(
        d.get("temp_max_c"), f"{field}.temp_max_c", lambda v, f: number(v, f, *TEMP_RANGE_C)
    )
    if tmin is not None and tmax is not None and tmax < tmin:
        raise InvalidImport(f"{field}.temp_max_c", "must not be below temp_min_c")
    return DeliveryRecord(
        id=delivery_id(ext),
        external_id=ext,
        route=rid,
        stop=sid,
        status=SCHEDULED,
        address=address,
        window=win,
        brand=brand,
        kind=kind,
        recipient=_recipient(d["recipient"], f"{field}.recipient"),
        notes=text(d.get("notes", ""), f"{field}.notes", MAX_NOTES_CHARS, empty_ok=True),
        temp_min_c=tmin,
        temp_max_c=tmax,
        location=location,
        created=now,
        updated=now,
    )


def _opt(value: Any, field: str, check: Callable[[Any, str], float]) -> float | None:
    return None if value is None else check(value, field)
