"""The device wire format: positions in, acknowledgements out, JSON or MessagePack.

A frame is one position object or an array of them. Decoding and type validation are done
by msgspec in one pass; a batch with one badly typed position is decoded again item by item
so that every good position is kept and the bad one is named.
"""

from __future__ import annotations

import enum
import functools
from typing import Annotated, Any, Final

import msgspec

from gateway.fleet.position import SEQ_LIMIT, Position, PositionShape


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


# The most positions a frame may hold unless a caller says otherwise (MAX_BATCH_POSITIONS).
MAX_POSITIONS: Final = 10_000

json_encoder: Final = msgspec.json.Encoder()
msgpack_encoder: Final = msgspec.msgpack.Encoder()


class MalformedFrame(ValueError):
    """The frame as a whole could not be read (not JSON/MessagePack, wrong shape, nested too
    deeply, too many positions). ``reason`` is what the device is told and what is counted."""

    def __init__(self, detail: str, reason: str = "malformed") -> None:
        super().__init__(detail)
        self.reason = reason


class _SeqOnly(msgspec.Struct):
    """Just enough of a badly typed position to name it in its rejection."""

    seq: object = None


class _Decoders:
    """The decoders of one frame encoding for one batch limit."""

    __slots__ = ("frame", "loose", "one", "raw_list", "seq_only")

    def __init__(self, binary: bool, max_positions: int) -> None:
        mod: Any = msgspec.msgpack if binary else msgspec.json
        bounded = Annotated[list[Position], msgspec.Meta(max_length=max_positions)]
        self.frame = mod.Decoder(Position | bounded)
        raw = Annotated[list[msgspec.Raw], msgspec.Meta(max_length=max_positions)]
        self.raw_list = mod.Decoder(raw)
        self.one = mod.Decoder(Position)
        self.loose = mod.Decoder(PositionShape)
        self.seq_only = mod.Decoder(_SeqOnly)


@functools.lru_cache(maxsize=8)
def _decoders(binary: bool, max_positions: int) -> _Decoders:
    return _Decoders(binary, max_positions)


# A JSON item that is not an object, or a MessagePack one that is not a map, is malformed
# without decoding it (a frame of a million nils costs one rejection each, not three decodes).
_MP_MAP_FIRST: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


def _is_object(raw: msgspec.Raw, binary: bool) -> bool:
    view = memoryview(raw)
    if not view:
        return False
    if binary:
        return view[0] in _MP_MAP_FIRST
    return view[0] == 0x7B or bytes(view).lstrip()[:1] == b"{"  # 0x7B: "{"


def _in_seq_range(seq: object) -> int | None:
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < SEQ_LIMIT:
        return seq
    return None


def decode_frame(
    data: bytes | str, max_positions: int = MAX_POSITIONS
) -> tuple[list[Position], list[Rejection]]:
    """Decode one frame: ``str`` is JSON text, ``bytes`` is MessagePack.

    Returns the valid positions and a rejection for each one that is not: ``out_of_range``
    (well-typed but a value outside its range, NaN included, or a ``seq`` outside 0 to
    2^64 - 1) or ``malformed``. Raises MalformedFrame if the frame is neither a position nor
    an array of at most ``max_positions``, or is nested deeper than the decoder's recursion
    guard (about a thousand levels). The work is linear in the frame's size: every item of
    a frame is decoded at most three times, and only once when it is not an object.
    """
    binary = isinstance(data, bytes)
    dec = _decoders(binary, max_positions)
    try:
        frame = dec.frame.decode(data)
    except msgspec.DecodeError as exc:
        first_error = str(exc)
    except RecursionError:
        raise MalformedFrame("nested too deeply") from None
    else:
        return ([frame] if isinstance(frame, Position) else frame), []
    # Slow path, only for bad frames: look at each position on its own.
    if not isinstance(data, bytes):
        data = data.encode()
    try:
        items = dec.raw_list.decode(data)
    except msgspec.ValidationError as exc:
        if "length" in str(exc):
            raise MalformedFrame(
                f"more than {max_positions} positions", "batch_too_large"
            ) from None
        items = [msgspec.Raw(data)]  # a single object
    except msgspec.DecodeError:
        raise MalformedFrame(first_error) from None
    except RecursionError:
        raise MalformedFrame("nested too deeply") from None
    good: list[Position] = []
    bad: list[Rejection] = []
    single = len(items) == 1 and bytes(items[0]) == data
    for raw in items:
        if not _is_object(raw, binary):
            if single:
                raise MalformedFrame(first_error)
            bad.append(Rejection(None, Reason.MALFORMED, "a position is an object"))
            continue
        try:
            good.append(dec.one.decode(raw))
        except msgspec.DecodeError as exc:
            try:
                lp = dec.loose.decode(raw)
            except msgspec.DecodeError:
                if single:
                    raise MalformedFrame(str(exc)) from None
                bad.append(Rejection(_seq_of(dec, raw), Reason.MALFORMED, str(exc)))
            except RecursionError:
                if single:
                    raise MalformedFrame("nested too deeply") from None
                bad.append(Rejection(None, Reason.MALFORMED, "nested too deeply"))
            else:
                bad.append(
                    Rejection(_in_seq_range(lp.seq), Reason.OUT_OF_RANGE, _field_of(str(exc)))
                )
        except RecursionError:
            if single:
                raise MalformedFrame("nested too deeply") from None
            bad.append(Rejection(None, Reason.MALFORMED, "nested too deeply"))
    return good, bad


def _seq_of(dec: _Decoders, raw: msgspec.Raw) -> int | None:
    try:
        return _in_seq_range(dec.seq_only.decode(raw).seq)
    except (msgspec.DecodeError, RecursionError):
        return None


def _field_of(error: str) -> str:
    """``"Expected `float` <= 90.0 - at `$.lat`"`` -> ``"lat"``."""
    _, _, where = error.rpartition("$.")
    return where.rstrip("`") or error


def encode_reply(reply: Ack | ErrorReply, binary: bool) -> bytes | str:
    if binary:
        return msgpack_encoder.encode(reply)
    return json_encoder.encode(reply).decode()
