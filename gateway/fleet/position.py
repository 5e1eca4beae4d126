"""A GPS fix: its fields, their ranges and units, defined once for the gateway.

Ranges are checked by msgspec while decoding, so a ``Position`` that reaches Python code is
well-typed and in range. ``PositionShape`` is the same fields without their ranges, which tells
a value out of range (a rejection of that position) from something that is no position.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Final, get_args, get_origin

import msgspec

# Ranges are checked by msgspec while decoding (in C, and NaN fails every bound), so a
# position that reaches Python code is already well-typed and in range.
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
EpochS = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
Speed = Annotated[float, msgspec.Meta(ge=0.0, lt=1000.0)]
Heading = Annotated[float, msgspec.Meta(ge=0.0, le=360.0)]
Metres = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Finite = Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]
# msgspec cannot bound an int above int64's range: the upper bound (``SEQ_LIMIT``, exclusive)
# is checked by ``validation.validate``, the one place every position passes. MessagePack
# cannot carry a larger one; JSON can.
Seq = Annotated[int, msgspec.Meta(ge=0)]


class Position(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One GPS fix as a device sends it. The device identity comes from its token."""

    seq: Seq
    ts: EpochS  # fix time, epoch seconds UTC
    lat: Lat
    lon: Lon
    speed: Speed | None = None  # m/s
    heading: Heading | None = None  # degrees
    accuracy: Metres | None = None  # metres
    alt: Finite | None = None  # metres
    battery: Finite | None = None  # percent
    temp_c: Finite | None = None
    odometer: Finite | None = None  # metres


def _loose(annotation: Any) -> Any:
    """``annotation`` without its range: ``Annotated[float, Meta(...)] | None`` -> ``float |
    None``."""
    if get_origin(annotation) is Annotated:
        return get_args(annotation)[0]
    args = get_args(annotation)
    if args:
        return functools.reduce(operator.or_, (_loose(a) for a in args))
    return annotation


# A position's shape without its ranges, made from Position's own fields: tells "out of
# range" (a rejection of that position) from "malformed" (not a position at all).
PositionShape: Final[type[msgspec.Struct]] = msgspec.defstruct(
    "PositionShape",
    [
        (f.name, _loose(f.type)) if f.required else (f.name, _loose(f.type), f.default)
        for f in msgspec.structs.fields(Position)
    ],
)
PositionShape.__doc__ = """A position's shape without its ranges."""


SEQ_LIMIT: Final = 2**64  # seq is an unsigned 64-bit integer
