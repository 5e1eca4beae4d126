"""Positions from the device formats that are not the wire's: OsmAnd (the Traccar Client
app's query or form fields, or its JSON body) and OwnTracks. Pure: the HTTP and MQTT ingest
both read them through here.

Each gives a ``Position`` with the wire's range checks (``msgspec.ValidationError`` for a
field out of range), or raises ``Unreadable`` for fields of the right types that hold no
position (no lat and lon, a time that is not one).

The formats' shapes are the Structs below, read by the handlers and described in
/openapi.json. Device apps send more than these fields (``hdop``, ``charge``, ``tid``,
``extras``...): what is not listed is ignored, never refused. The ranges are the wire's."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec

from gateway.fleet.position import (
    ATTRIBUTE_KEY_PATTERN,
    KNOWN_ATTRIBUTES,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    Position,
)

KNOT_MPS: Final = 0.514444
KMH_MPS: Final = 1 / 3.6

# The formats' fields are read as plain numbers; their ranges are the position's (``Position``),
# checked once the position is built: a value out of range is a refused fix (filtered and
# answered like any other), not a request in the wrong format.
Number = Annotated[float, msgspec.Meta(description="a number")]
Latitude = Annotated[float, msgspec.Meta(description="degrees, -90 to 90")]
Longitude = Annotated[float, msgspec.Meta(description="degrees, -180 to 180")]
# A value the apps send as -1 (or any negative number) when they do not know it: speed,
# heading, accuracy, battery. It is absent from the position then.
_UNKNOWN: Final = " (negative: unknown)"
Knots = Annotated[float, msgspec.Meta(description="knots" + _UNKNOWN)]
Kmh = Annotated[float, msgspec.Meta(description="km/h" + _UNKNOWN)]
MetresPerS = Annotated[float, msgspec.Meta(description="m/s" + _UNKNOWN)]
Degrees = Annotated[float, msgspec.Meta(description="degrees" + _UNKNOWN)]
MetresOrUnknown = Annotated[float, msgspec.Meta(description="metres" + _UNKNOWN)]
Percent = Annotated[float, msgspec.Meta(description="percent" + _UNKNOWN)]
TimeText = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="unix seconds, unix milliseconds, or ISO 8601 ('yyyy-MM-dd HH:mm:ss' or "
        "with a T; UTC unless it has an offset)",
    ),
]
Token = Annotated[str, msgspec.Meta(max_length=512, description="the device token")]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class OsmAndFields(msgspec.Struct):
    """The OsmAnd protocol's fields (query arguments, or a form body). A position needs
    ``lat`` and ``lon``, or ``location`` as ``lat,lon``; without one it is refused (422)."""

    id: Token | Unset = UNSET
    deviceid: Token | Unset = UNSET
    device_id: Token | Unset = UNSET
    lat: Latitude | Unset = UNSET
    lon: Longitude | Unset = UNSET
    location: Annotated[str, msgspec.Meta(max_length=64, description="lat,lon")] | Unset = UNSET
    timestamp: TimeText | Unset = UNSET  # the time it arrives when absent
    speed: Knots | Unset = UNSET
    bearing: Degrees | Unset = UNSET
    heading: Degrees | Unset = UNSET
    altitude: Number | Unset = UNSET
    accuracy: MetresOrUnknown | Unset = UNSET
    batt: Percent | Unset = UNSET
    battery: Percent | Unset = UNSET
    temp: Number | Unset = UNSET
    temperature: Number | Unset = UNSET


class OsmAndCoords(msgspec.Struct):
    latitude: Latitude
    longitude: Longitude
    speed: MetresPerS | Unset = UNSET
    heading: Degrees | Unset = UNSET
    accuracy: MetresOrUnknown | Unset = UNSET
    altitude: Number | Unset = UNSET


class OsmAndBattery(msgspec.Struct):
    level: Annotated[float, msgspec.Meta(description="0 to 1" + _UNKNOWN)] | Unset = UNSET
    is_charging: bool | Unset = UNSET


class OsmAndActivity(msgspec.Struct):
    type: Annotated[str, msgspec.Meta(max_length=64)] | Unset = UNSET


Scalar = bool | float | Annotated[str, msgspec.Meta(max_length=4096)] | None


class OsmAndLocation(msgspec.Struct):
    timestamp: TimeText | Annotated[float, msgspec.Meta(description="unix s or ms")]
    coords: OsmAndCoords
    battery: OsmAndBattery | Unset = UNSET
    odometer: Number | Unset = UNSET
    is_moving: bool | Unset = UNSET
    event: Annotated[str, msgspec.Meta(max_length=64)] | Unset = UNSET
    activity: OsmAndActivity | Unset = UNSET
    mock: bool | Unset = UNSET
    extras: (
        Annotated[
            dict[Annotated[str, msgspec.Meta(max_length=256)], Scalar | list[Any] | dict[str, Any]],
            msgspec.Meta(max_length=256, description="free-form: scalars become attributes"),
        ]
        | Unset
    ) = UNSET


class OsmAndJson(msgspec.Struct):
    """The Traccar Client app's JSON body (speed in m/s)."""

    location: OsmAndLocation
    device_id: Token | Unset = UNSET


class OwnTracksMessage(msgspec.Struct, rename={"type": "_type"}):
    """An OwnTracks message. A ``location`` needs ``lat``, ``lon`` and ``tst`` (refused with
    422 without them); other types are accepted and ignored."""

    type: Annotated[str, msgspec.Meta(max_length=64)]
    lat: Latitude | Unset = UNSET
    lon: Longitude | Unset = UNSET
    tst: Annotated[float, msgspec.Meta(description="unix seconds")] | Unset = UNSET
    acc: MetresOrUnknown | Unset = UNSET
    vel: Kmh | Unset = UNSET
    cog: Degrees | Unset = UNSET
    alt: Number | Unset = UNSET
    batt: Percent | Unset = UNSET
    # kept as attributes: trigger, connection (w, m, o), battery status (0 unknown,
    # 1 unplugged, 2 charging, 3 full), tracker id, monitoring mode, vertical accuracy,
    # pressure, Wi-Fi
    t: Annotated[str, msgspec.Meta(max_length=16)] | Unset = UNSET
    conn: Annotated[str, msgspec.Meta(max_length=16)] | Unset = UNSET
    bs: Number | Unset = UNSET
    tid: Annotated[str, msgspec.Meta(max_length=16)] | Unset = UNSET
    m: Number | Unset = UNSET
    vac: Number | Unset = UNSET
    p: Number | Unset = UNSET
    SSID: Annotated[str, msgspec.Meta(max_length=64)] | Unset = UNSET
    BSSID: Annotated[str, msgspec.Meta(max_length=64)] | Unset = UNSET


def _epoch(value: Any) -> float:
    """Unix seconds, unix milliseconds, or ISO 8601 / 'yyyy-MM-dd HH:mm:ss' (UTC)."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        t = float(value)
        return t / 1000.0 if t > 1e11 else t
    if isinstance(value, str):
        text = value.strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise ValueError(f"not a time: {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Unreadable(ValueError):
    """Fields of the right types that hold no position (a time that is not one, a location
    that is not lat,lon)."""


class NoFix(Unreadable):
    """A request with no coordinates (a phone that has only cell towers or Wi-Fi): the
    device is alive, but there is no position to store."""


# ----- attributes

# OsmAnd fields that are the position's own, not attributes.
OSMAND_FIELDS: Final = frozenset(
    {"id", "deviceid", "device_id", "lat", "lon", "location", "timestamp", "speed", "bearing",
     "heading", "altitude", "accuracy", "batt", "battery", "temp", "temperature", "cell",
     "wifi", "valid"}
)  # fmt: skip
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_KEY: Final = re.compile(ATTRIBUTE_KEY_PATTERN)


def attribute(key: str, value: Any) -> bool | float | str | None:
    """``value`` as an attribute's value: the known attributes' type (``KNOWN_ATTRIBUTES``),
    else a boolean, a finite number or a short text as given; None if it is none of those
    (nested values, an unreadable known one)."""
    known = KNOWN_ATTRIBUTES.get(key)
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if known is bool or (known is None and low in ("true", "false")):
            return True if low in _TRUE else False if low in _FALSE else None
        try:
            number = float(text)
        except ValueError:
            return None if known is float else text[:MAX_ATTRIBUTE_TEXT]
        return number if math.isfinite(number) else None
    if isinstance(value, bool):
        return value if known in (None, bool) else float(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        return bool(value) if known is bool else float(value)
    return None


def attributes(pairs: Iterable[tuple[str, Any]]) -> dict[str, bool | float | str] | None:
    """The attributes among ``pairs``: keys the position's ``Attributes`` allow, at most
    ``MAX_ATTRIBUTES`` (the first ones), values read by ``attribute``."""
    out: dict[str, bool | float | str] = {}
    for key, value in pairs:
        if len(out) >= MAX_ATTRIBUTES:
            break
        if len(key) > MAX_ATTRIBUTE_KEY or not _KEY.match(key):
            continue
        v = attribute(key, value)
        if v is not None:
            out[key] = v
    return out or None


def _given(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


def _known(value: Any, scale: float = 1.0) -> float | None:
    """A value the format marks unknown with a negative number: None then."""
    if value is msgspec.UNSET or value < 0:
        return None
    return float(value * scale)


def _position(fields: dict[str, Any]) -> Position:
    """A Position from decoded fields, with the same range checks as the wire decoder."""
    fields = {k: v for k, v in fields.items() if v is not None}
    ts = fields["ts"]
    # A time out of range (infinite, NaN) is refused by Position's own check on ts.
    fields["seq"] = round(ts * 1000) if math.isfinite(ts) and 0 <= ts <= 1e12 else 0
    return msgspec.convert(fields, Position)


def _time(value: str | float) -> float:
    try:
        return _epoch(value)
    except (ValueError, OverflowError):
        raise Unreadable(f"timestamp {value!r} is not a time") from None


def osmand_fields_position(f: OsmAndFields, extra: Mapping[str, Any] | None = None) -> Position:
    """A position from the OsmAnd query or form fields (speed in knots); ``extra``: all the
    fields given, whose others (``ignition``, ``fuel``, ``hdop``...) become attributes."""
    lat, lon = f.lat, f.lon
    if (lat is msgspec.UNSET or lon is msgspec.UNSET) and f.location is not msgspec.UNSET:
        a, _, b = f.location.partition(",")
        try:
            lat, lon = float(a), float(b)
        except ValueError:
            raise Unreadable(f"location {f.location!r} is not lat,lon") from None
    if lat is msgspec.UNSET or lon is msgspec.UNSET:
        raise NoFix("a position needs lat and lon, or location")
    return _position(
        {
            "ts": time.time() if f.timestamp is msgspec.UNSET else _time(f.timestamp),
            "lat": lat,
            "lon": lon,
            "speed": _known(f.speed, KNOT_MPS),
            "heading": _known(f.bearing) if f.bearing is not msgspec.UNSET else _known(f.heading),
            "accuracy": _known(f.accuracy),
            "alt": _given(f.altitude),
            "battery": _known(f.batt) if f.batt is not msgspec.UNSET else _known(f.battery),
            "temp_c": _given(f.temp) if f.temp is not msgspec.UNSET else _given(f.temperature),
            "attributes": attributes(
                (k, v) for k, v in (extra or {}).items() if k not in OSMAND_FIELDS
            ),
        }
    )


def osmand_json_position(body: OsmAndJson) -> Position:
    """A position from the Traccar Client app's JSON body (speed in m/s)."""
    loc = body.location
    c = loc.coords
    level = msgspec.UNSET if loc.battery is msgspec.UNSET else loc.battery.level
    return _position(
        {
            "ts": _time(loc.timestamp),
            "lat": c.latitude,
            "lon": c.longitude,
            "speed": _known(c.speed),
            "heading": _known(c.heading),
            "accuracy": _known(c.accuracy),
            # The app's template sends -1 for an altitude it does not have (its stationary
            # fix); a real -1 m is within the noise of any phone's altitude.
            "alt": None if c.altitude == -1 else _given(c.altitude),
            "battery": _known(level, 100.0),
            "odometer": _given(loc.odometer),
            "attributes": attributes(_json_attributes(loc)),
        }
    )


def _json_attributes(loc: OsmAndLocation) -> Iterable[tuple[str, Any]]:
    """The app's own fields that are attributes, then its ``extras`` (scalars)."""
    if loc.is_moving is not msgspec.UNSET:
        yield "motion", loc.is_moving
    if loc.battery is not msgspec.UNSET and loc.battery.is_charging is not msgspec.UNSET:
        yield "charge", loc.battery.is_charging
    if loc.event:  # "motionchange", "heartbeat", ...; empty for a plain fix
        yield "event", loc.event
    if loc.activity is not msgspec.UNSET and loc.activity.type:
        yield "activity", loc.activity.type
    if loc.mock is not msgspec.UNSET:
        yield "mock", loc.mock
    if loc.extras is not msgspec.UNSET:
        yield from loc.extras.items()


def osmand_position(params: dict[str, Any]) -> Position:
    """The OsmAnd query form (text values, speed in knots) or the JSON body form (speed in
    m/s). Raises msgspec.ValidationError for a field of the wrong type or out of range,
    Unreadable for fields that hold no position."""
    if isinstance(params.get("location"), dict):
        return osmand_json_position(msgspec.convert(params, OsmAndJson))
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return osmand_fields_position(msgspec.convert(given, OsmAndFields, strict=False), given)


def owntracks_message_position(msg: OwnTracksMessage) -> Position | None:
    """An OwnTracks ``_type: location`` message (vel in km/h); None for other types."""
    if msg.type != "location":
        return None
    if msg.lat is msgspec.UNSET or msg.lon is msgspec.UNSET or msg.tst is msgspec.UNSET:
        raise NoFix("a location needs lat, lon and tst")
    return _position(
        {
            "ts": _time(msg.tst),
            "lat": msg.lat,
            "lon": msg.lon,
            "speed": _known(msg.vel, KMH_MPS),
            "heading": _known(msg.cog),
            "accuracy": _known(msg.acc),
            "alt": _given(msg.alt),
            "battery": _known(msg.batt),
            "attributes": attributes(_owntracks_attributes(msg)),
        }
    )


def _owntracks_attributes(msg: OwnTracksMessage) -> Iterable[tuple[str, Any]]:
    for key in ("t", "conn", "bs", "tid", "m", "vac", "p", "SSID", "BSSID"):
        value = getattr(msg, key)
        if value is not msgspec.UNSET:
            yield key, value
    if msg.bs is not msgspec.UNSET and msg.bs > 0:  # 1 unplugged, 2 charging, 3 full
        yield "charge", msg.bs == 2


def owntracks_position(msg: dict[str, Any]) -> Position | None:
    """``owntracks_message_position`` of decoded JSON."""
    return owntracks_message_position(msgspec.convert(msg, OwnTracksMessage, strict=False))
