"""The device side of the ingest wire format: positions out, acks and errors in.

Frames are JSON text or MessagePack binary; a frame holds one position or a list of them.
Replies come back in the frame's encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

import msgspec

from .vehicle import Fix


class Encoding(enum.StrEnum):
    """How frames are encoded on the WebSocket."""

    JSON = "json"  # text frames
    MSGPACK = "msgpack"  # binary frames


class Position(msgspec.Struct, frozen=True, omit_defaults=True):
    """One numbered fix as sent to the gateway."""

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

    @classmethod
    def from_fix(cls, seq: int, fix: Fix) -> Position:
        return cls(
            seq=seq,
            ts=fix.ts,
            lat=fix.lat,
            lon=fix.lon,
            speed=fix.speed,
            heading=fix.heading,
            accuracy=fix.accuracy,
            alt=fix.alt,
            battery=fix.battery,
            temp_c=fix.temp_c,
            odometer=fix.odometer,
        )


class Rejection(msgspec.Struct, frozen=True):
    """A position the gateway refused, with the reason."""

    reason: str
    seq: int | None = None  # None when the position was too broken to read its seq
    detail: str | None = None


class Ack(msgspec.Struct, frozen=True, tag_field="type", tag="ack"):
    """The highest seq durably accepted so far, and the positions rejected since the last ack."""

    seq: int
    rejected: list[Rejection] = msgspec.field(default_factory=list)


class ErrorReply(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """The gateway could not read a whole frame."""

    reason: str
    detail: str | None = None


Reply = Ack | ErrorReply

_json_encoder: Final = msgspec.json.Encoder()
_msgpack_encoder: Final = msgspec.msgpack.Encoder()
_json_reply: Final = msgspec.json.Decoder(Reply)
_msgpack_reply: Final = msgspec.msgpack.Decoder(Reply)


class BadReply(ValueError):
    """A message from the gateway that is neither an ack nor an error reply."""


def encode_frame(positions: Sequence[Position], encoding: Encoding) -> str | bytes:
    """One frame: a bare position when there is one, a list (batch) otherwise."""
    if not positions:
        raise ValueError("a frame needs at least one position")
    body: Position | Sequence[Position] = positions[0] if len(positions) == 1 else positions
    if encoding is Encoding.JSON:
        return _json_encoder.encode(body).decode()
    return _msgpack_encoder.encode(body)


def decode_reply(message: str | bytes) -> Reply:
    """Decode a reply: text is JSON, binary is MessagePack."""
    try:
        if isinstance(message, str):
            return _json_reply.decode(message)
        return _msgpack_reply.decode(message)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadReply(str(exc)) from None
