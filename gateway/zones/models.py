"""The shapes of the zone endpoints' input and output: GeoJSON Features with the circle
(``Point`` + ``properties.radius_m``) and corridor (``LineString`` + ``properties.width_m``)
extensions. The handlers read bodies with these Structs and ``/openapi.json`` describes them
from the same Structs (``api_spec``).

What a schema can say is said here: the types, the ranges of coordinates and sizes, the
vertex limits. What it cannot (a ring that is closed and simple, a circle's radius given
with its Point, a non-zero area, a known time zone) is checked by ``geofence.Zone``, and a
Feature refused there is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from geofence.zones import (
    MAX_ABS_LAT_DEG,
    MAX_CORRIDOR_WIDTH_M,
    MAX_DWELL_THRESHOLD_S,
    MAX_ID_LENGTH,
    MAX_RADIUS_M,
    MAX_VERTICES,
)

KIND_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,63}$"
DAY_PATTERN: Final = (
    r"^([Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|[Tt][Hh][Uu]|[Ff][Rr][Ii]|[Ss][Aa][Tt]|[Ss][Uu][Nn])"
)
HHMM_PATTERN: Final = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"

Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0, description="degrees")]
ZoneLat = Annotated[
    float,
    msgspec.Meta(
        ge=-MAX_ABS_LAT_DEG,
        le=MAX_ABS_LAT_DEG,
        description=f"degrees; zones keep within {MAX_ABS_LAT_DEG:g} of the equator",
    ),
]
LonLat = tuple[Lon, ZoneLat]
Ring = Annotated[
    list[LonLat],
    msgspec.Meta(
        min_length=4,
        max_length=MAX_VERTICES,
        description="closed (first position = last), not self-intersecting",
    ),
]
Rings = Annotated[
    list[Ring], msgspec.Meta(min_length=1, description="the exterior ring, then any holes")
]
BBox = Annotated[list[float], msgspec.Meta(min_length=4, max_length=6)]
ZoneId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Day = (
    Annotated[str, msgspec.Meta(pattern=DAY_PATTERN, description="a day name (mon, Tuesday...)")]
    | Annotated[int, msgspec.Meta(ge=0, le=6, description="0 = Monday")]
)
HHMM = Annotated[str, msgspec.Meta(pattern=HHMM_PATTERN)]


class ZonePoint(msgspec.Struct, tag_field="type", tag="Point", forbid_unknown_fields=True):
    """A circle's centre (the radius is ``properties.radius_m``)."""

    coordinates: LonLat
    bbox: BBox | msgspec.UnsetType = msgspec.UNSET


class ZoneLineString(
    msgspec.Struct, tag_field="type", tag="LineString", forbid_unknown_fields=True
):
    """A corridor's path (the width is ``properties.width_m``)."""

    coordinates: Annotated[list[LonLat], msgspec.Meta(min_length=2, max_length=MAX_VERTICES)]
    bbox: BBox | msgspec.UnsetType = msgspec.UNSET


class ZonePolygon(msgspec.Struct, tag_field="type", tag="Polygon", forbid_unknown_fields=True):
    """An area (RFC 7946): at most ``MAX_VERTICES`` positions in all."""

    coordinates: Rings
    bbox: BBox | msgspec.UnsetType = msgspec.UNSET


class ZoneMultiPolygon(
    msgspec.Struct, tag_field="type", tag="MultiPolygon", forbid_unknown_fields=True
):
    """An area in several parts (one across the antimeridian is split there)."""

    coordinates: Annotated[list[Rings], msgspec.Meta(min_length=1)]
    bbox: BBox | msgspec.UnsetType = msgspec.UNSET


ZoneGeometry = ZonePoint | ZoneLineString | ZonePolygon | ZoneMultiPolygon


class ZoneSchedule(msgspec.Struct, forbid_unknown_fields=True):
    """When the zone is active, weekly, in local time; a range whose start is after its end
    runs past midnight."""

    tz: Annotated[str, msgspec.Meta(description="an IANA time zone name")]
    days: Annotated[list[Day], msgspec.Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET
    hours: (
        Annotated[
            list[tuple[HHMM, HHMM]],
            msgspec.Meta(min_length=1, description="[start, end] pairs; start != end"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


Kind = Annotated[
    str,
    msgspec.Meta(
        pattern=KIND_PATTERN,
        description="depot, customer_stop, restricted, service_area or another lower-case word",
    ),
]
Dwell = Annotated[float, msgspec.Meta(gt=0.0, le=MAX_DWELL_THRESHOLD_S)]
Radius = Annotated[
    float, msgspec.Meta(gt=0.0, le=MAX_RADIUS_M, description="metres; required for a Point")
]
Width = Annotated[
    float,
    msgspec.Meta(gt=0.0, le=MAX_CORRIDOR_WIDTH_M, description="metres; required for a LineString"),
]


class ZonePropertiesInput(msgspec.Struct, kw_only=True):
    """The zone's properties. Other properties are kept and given back as they were."""

    name: str | msgspec.UnsetType | None = msgspec.UNSET
    kind: Kind | msgspec.UnsetType | None = msgspec.UNSET  # "other" if not given
    tags: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    dwell_threshold_s: Dwell | msgspec.UnsetType | None = msgspec.UNSET
    schedule: ZoneSchedule | msgspec.UnsetType | None = msgspec.UNSET
    radius_m: Radius | msgspec.UnsetType = msgspec.UNSET
    width_m: Width | msgspec.UnsetType = msgspec.UNSET


class ZoneFeatureInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A zone as a GeoJSON Feature: a Polygon or MultiPolygon, a Point with
    ``properties.radius_m`` (a circle) or a LineString with ``properties.width_m`` (a
    corridor)."""

    type: Literal["Feature"]
    id: ZoneId | msgspec.UnsetType | None = msgspec.UNSET  # POST: one is made up
    geometry: ZoneGeometry
    properties: ZonePropertiesInput | msgspec.UnsetType | None = msgspec.UNSET
    bbox: BBox | msgspec.UnsetType = msgspec.UNSET


class ZoneProperties(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The zone's properties, with any others it was given."""

    name: str
    kind: str
    tags: list[str]
    dwell_threshold_s: float | None
    schedule: ZoneSchedule | None
    radius_m: float | msgspec.UnsetType = msgspec.UNSET
    width_m: float | msgspec.UnsetType = msgspec.UNSET


class ZoneFeature(msgspec.Struct, kw_only=True):
    """A zone as a GeoJSON Feature."""

    type: Literal["Feature"]
    id: str
    geometry: ZoneGeometry
    properties: ZoneProperties


class ZoneCollection(msgspec.Struct):
    """The zones as a GeoJSON FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[ZoneFeature]


class ZonesQuery(msgspec.Struct):
    kind: (
        Annotated[str, msgspec.Meta(description="only zones of this kind")] | msgspec.UnsetType
    ) = msgspec.UNSET
