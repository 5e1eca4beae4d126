"""The device wire format: positions in, acknowledgements out, JSON or MessagePack.

A frame is one position object or an array of them. Decoding and type validation are done
by msgspec in one pass; a batch with one badly typed position is decoded again item by item
so that every good position is kept and the bad one is named.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final

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


class _LoosePosition(msgspec.Struct):
    """The same shape without ranges: tells "out of range" from "malformed"."""

    seq: int
    ts: float
    lat: float
    lon: float
    speed: float | None = None
    heading: float | None = None
    accuracy: float | None = None
    alt: float | None = None
    battery: float | None = None
    temp_c: float | None = None
    odometer: float | None = None


class Reason(enum.StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_DEVICE = "unknown_device"
    OUT_OF_RANGE = "out_of_range"
    FUTURE = "future"
    TOO_OLD = "too_old"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    IMPLAUSIBLE_JUMP = "implausible_jump"
    POOR_ACCURACY = "poor_accuracy"


class Rejection(msgspec.Struct, frozen=True, omit_defaults=True):
    seq: int | None
    reason: str
    detail: str | None = None


class Ack(msgspec.Struct, frozen=True, tag_field="type", tag="ack"):
    seq: int  # highest seq durably accepted for this device (0: none yet)
    rejected: list[Rejection]


class ErrorReply(msgspec.Struct, frozen=True, tag_field="type", tag="error", omit_defaults=True):
    reason: str
    detail: str | None = None


_Frame = Position | list[Position]
_json_frame: Final = msgspec.json.Decoder(_Frame)
_mp_frame: Final = msgspec.msgpack.Decoder(_Frame)
_json_raw_list: Final = msgspec.json.Decoder(list[msgspec.Raw])
_mp_raw_list: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])
_json_pos: Final = msgspec.json.Decoder(Position)
_mp_pos: Final = msgspec.msgpack.Decoder(Position)
_json_loose: Final = msgspec.json.Decoder(_LoosePosition)
_mp_loose: Final = msgspec.msgpack.Decoder(_LoosePosition)
_json_any: Final = msgspec.json.Decoder(Any)
_mp_any: Final = msgspec.msgpack.Decoder(Any)
json_encoder: Final = msgspec.json.Encoder()
msgpack_encoder: Final = msgspec.msgpack.Encoder()


class MalformedFrame(ValueError):
    """The frame as a whole could not be read (not JSON/MessagePack, wrong shape)."""


def _seq_of(raw: bytes | msgspec.Raw, binary: bool) -> int | None:
    try:
        obj = (_mp_any if binary else _json_any).decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, dict):
        seq = obj.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None


def decode_frame(data: bytes | str) -> tuple[list[Position], list[Rejection]]:
    """Decode one frame: ``str`` is JSON text, ``bytes`` is MessagePack.

    Returns the valid positions and a rejection for each one that is not: ``out_of_range``
    (well-typed but a value outside its range, NaN included) or ``malformed``. Raises
    MalformedFrame if the frame is neither a position nor an array.
    """
    binary = isinstance(data, bytes)
    try:
        frame = _mp_frame.decode(data) if isinstance(data, bytes) else _json_frame.decode(data)
    except msgspec.DecodeError as exc:
        first_error = str(exc)
    else:
        return ([frame] if isinstance(frame, Position) else frame), []
    # Slow path, only for bad frames: look at each position on its own.
    if not isinstance(data, bytes):
        data = data.encode()
    try:
        items = (_mp_raw_list if binary else _json_raw_list).decode(data)
    except msgspec.ValidationError:
        items = [msgspec.Raw(data)]  # a single object
    except msgspec.DecodeError:
        raise MalformedFrame(first_error) from None
    dec = _mp_pos if binary else _json_pos
    loose = _mp_loose if binary else _json_loose
    good: list[Position] = []
    bad: list[Rejection] = []
    for raw in items:
        try:
            good.append(dec.decode(raw))
        except msgspec.DecodeError as exc:
            try:
                lp = loose.decode(raw)
            except msgspec.DecodeError:
                if len(items) == 1 and bytes(raw) == data:
                    raise MalformedFrame(str(exc)) from None
                bad.append(Rejection(_seq_of(raw, binary), Reason.MALFORMED, str(exc)))
            else:
                bad.append(Rejection(lp.seq, Reason.OUT_OF_RANGE, _field_of(str(exc))))
    return good, bad


def _field_of(error: str) -> str:
    """``"Expected `float` <= 90.0 - at `$.lat`"`` -> ``"lat"``."""
    _, _, where = error.rpartition("$.")
    return where.rstrip("`") or error


def encode_reply(reply: Ack | ErrorReply, binary: bool) -> bytes | str:
    if binary:
        return msgpack_encoder.encode(reply)
    return json_encoder.encode(reply).decode()
