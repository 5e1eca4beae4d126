"""The device wire format: positions in, acknowledgements out, JSON or MessagePack.

A frame is one position object or an array of them. Decoding and type validation are done
by msgspec in one pass; a batch with one badly typed position is decoded again item by item
so that every good position is kept and the bad one is named.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec


class Position(msgspec.Struct, frozen=True, omit_defaults=True):
    """One GPS fix as a device sends it. The device identity comes from its token."""

    seq: int
    ts: float  # fix time, epoch seconds UTC
    lat: float
    lon: float
    speed: float | None = None  # m/s
    heading: float | None = None  # degrees
    accuracy: float | None = None  # metres
    alt: float | None = None  # metres
    battery: float | None = None  # percent
    temp_c: float | None = None
    odometer: float | None = None  # metres


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

    Returns the well-typed positions and a rejection (reason ``malformed``) for each
    position of a batch that is not. Raises MalformedFrame if nothing can be read.
    """
    binary = isinstance(data, bytes)
    try:
        frame = (_mp_frame if binary else _json_frame).decode(data)
    except msgspec.DecodeError as exc:
        first_error = str(exc)
    else:
        return ([frame] if isinstance(frame, Position) else frame), []
    # Slow path, only for bad frames: a batch whose items are not all valid.
    try:
        items = (_mp_raw_list if binary else _json_raw_list).decode(data)
    except msgspec.DecodeError:
        raise MalformedFrame(first_error) from None
    dec = _mp_pos if binary else _json_pos
    good: list[Position] = []
    bad: list[Rejection] = []
    for raw in items:
        try:
            good.append(dec.decode(raw))
        except msgspec.DecodeError as exc:
            bad.append(Rejection(_seq_of(raw, binary), Reason.MALFORMED, str(exc)))
    return good, bad


def encode_reply(reply: Ack | ErrorReply, binary: bool) -> bytes | str:
    if binary:
        return msgpack_encoder.encode(reply)
    return json_encoder.encode(reply).decode()
