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


# Free-form attributes a device reports with a fix (ignition, fuel, rpm, hdop...): at most
# MAX_ATTRIBUTES keys of letters, digits, '_', '.' or '-', each a boolean, a number or a short
# text. A few have a meaning here (``KNOWN_ATTRIBUTES``).
MAX_ATTRIBUTES: Final = 32
MAX_ATTRIBUTE_KEY: Final = 32
MAX_ATTRIBUTE_TEXT: Final = 128
ATTRIBUTE_KEY_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
AttributeKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_ATTRIBUTE_KEY, pattern=ATTRIBUTE_KEY_PATTERN)
]
AttributeValue = bool | Finite | Annotated[str, msgspec.Meta(max_length=MAX_ATTRIBUTE_TEXT)]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue],
    msgspec.Meta(
        max_length=MAX_ATTRIBUTES,
        description=f"at most {MAX_ATTRIBUTES} keys ({MAX_ATTRIBUTE_KEY} characters: letters, "
        f"digits, '_', '.', '-'), each a boolean, a number or a text of at most "
        f"{MAX_ATTRIBUTE_TEXT} characters; known: ignition (boolean), fuel (percent), rpm, "
        "hdop, motion (boolean), charge (boolean), mock (boolean)",
    ),
]
# The attributes whose type the gateway knows (a device's text "true" or "1" is read as the
# boolean), and what it does with them: ignition on while stopped is ``idling``.
KNOWN_ATTRIBUTES: Final[dict[str, type]] = {
    "ignition": bool,
    "motion": bool,
    "charge": bool,
    "mock": bool,
    "fuel": float,
    "rpm": float,
    "hdop": float,
    "vacc": float,
    "hacc": float,
    "sat": float,
}


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
    attributes: Attributes | None = None


def _loose(annotation: Any) -> Any:
    """``annotation`` without its range: ``Annotated[float, Meta(...)] | None`` -> ``float |
    None``; containers keep their shape (``dict[str, ...]``)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _loose(get_args(annotation)[0])
    args = get_args(annotation)
    if not args:
        return annotation
    if origin in (dict, list, tuple):
        return origin[tuple(_loose(a) for a in args)]
    return functools.reduce(operator.or_, (_loose(a) for a in args))


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
