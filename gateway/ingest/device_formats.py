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
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec

from gateway.fleet.position import Position

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


class OsmAndLocation(msgspec.Struct):
    timestamp: TimeText | Annotated[float, msgspec.Meta(description="unix s or ms")]
    coords: OsmAndCoords
    battery: OsmAndBattery | Unset = UNSET
    odometer: Number | Unset = UNSET


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


def _given(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


def _scaled(value: Any, scale: float) -> float | None:
    return None if value is msgspec.UNSET else value * scale


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


def osmand_fields_position(f: OsmAndFields) -> Position:
    """A position from the OsmAnd query or form fields (speed in knots)."""
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
        }
    )


def osmand_position(params: dict[str, Any]) -> Position:
    """The OsmAnd query form (text values, speed in knots) or the JSON body form (speed in
    m/s). Raises msgspec.ValidationError for a field of the wrong type or out of range,
    Unreadable for fields that hold no position."""
    if isinstance(params.get("location"), dict):
        return osmand_json_position(msgspec.convert(params, OsmAndJson))
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return osmand_fields_position(msgspec.convert(given, OsmAndFields, strict=False))


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
        }
    )


def owntracks_position(msg: dict[str, Any]) -> Position | None:
    """``owntracks_message_position`` of decoded JSON."""
    return owntracks_message_position(msgspec.convert(msg, OwnTracksMessage, strict=False))
