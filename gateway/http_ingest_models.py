"""The device protocols over HTTP as the handlers read them, and as /openapi.json describes
them: OsmAnd (the Traccar Client app: query or form fields, or its JSON body) and OwnTracks.

Device apps send more than these fields (``hdop``, ``charge``, ``tid``, ``extras``...): what
is not listed is ignored, never refused. The ranges are the wire's (``gateway.wire``).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from .wire import Heading, Lat, Lon, Metres

KNOT_MPS: Final = 0.514444
KMH_MPS: Final = 1 / 3.6

Finite = Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]
Knots = Annotated[float, msgspec.Meta(ge=0, lt=1000 / KNOT_MPS, description="knots")]
Kmh = Annotated[float, msgspec.Meta(ge=0, lt=1000 / KMH_MPS, description="km/h")]
MetresPerS = Annotated[float, msgspec.Meta(ge=0, lt=1000, description="m/s")]
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
    lat: Lat | Unset = UNSET
    lon: Lon | Unset = UNSET
    location: Annotated[str, msgspec.Meta(max_length=64, description="lat,lon")] | Unset = UNSET
    timestamp: TimeText | Unset = UNSET  # the time it arrives when absent
    speed: Knots | Unset = UNSET
    bearing: Heading | Unset = UNSET
    heading: Heading | Unset = UNSET
    altitude: Finite | Unset = UNSET
    accuracy: Metres | Unset = UNSET
    batt: Finite | Unset = UNSET
    battery: Finite | Unset = UNSET
    temp: Finite | Unset = UNSET
    temperature: Finite | Unset = UNSET


class OsmAndCoords(msgspec.Struct):
    latitude: Lat
    longitude: Lon
    speed: MetresPerS | Unset = UNSET
    heading: Heading | Unset = UNSET
    accuracy: Metres | Unset = UNSET
    altitude: Finite | Unset = UNSET


class OsmAndBattery(msgspec.Struct):
    level: Annotated[float, msgspec.Meta(ge=0, le=1, description="0 to 1")] | Unset = UNSET


class OsmAndLocation(msgspec.Struct):
    timestamp: TimeText | Annotated[float, msgspec.Meta(ge=0, le=1e14)]
    coords: OsmAndCoords
    battery: OsmAndBattery | Unset = UNSET
    odometer: Finite | Unset = UNSET


class OsmAndJson(msgspec.Struct):
    """The Traccar Client app's JSON body (speed in m/s)."""

    location: OsmAndLocation
    device_id: Token | Unset = UNSET


class OwnTracksMessage(msgspec.Struct, rename={"type": "_type"}):
    """An OwnTracks message. A ``location`` needs ``lat``, ``lon`` and ``tst`` (refused with
    422 without them); other types are accepted and ignored."""

    type: Annotated[str, msgspec.Meta(max_length=64)]
    lat: Lat | Unset = UNSET
    lon: Lon | Unset = UNSET
    tst: Annotated[float, msgspec.Meta(ge=0, le=1e14, description="unix seconds")] | Unset = UNSET
    acc: Metres | Unset = UNSET
    vel: Kmh | Unset = UNSET
    cog: Heading | Unset = UNSET
    alt: Finite | Unset = UNSET
    batt: Finite | Unset = UNSET
