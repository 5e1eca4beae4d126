"""Property-based fuzzing of every device decoder: whatever the bytes, the answer is
positions and rejections or the decoder's own refusal, never another exception, and
nothing in the answer is out of its range (so every ack encodes)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fleet.position import SEQ_LIMIT, Position
from gateway.http.errors import ApiError, decode_json
from gateway.ingest.device_formats import osmand_position, owntracks_position
from gateway.ingest.mqtt_messages import decode_payload
from gateway.ingest.wire import Ack, MalformedFrame, decode_frame, encode_reply

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 50  # a small batch limit, so the fuzzer reaches it

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=2**64 - 3, max_value=2**64 + 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)
keys = st.sampled_from(["seq", "ts", "lat", "lon", "speed", "heading", "accuracy", "alt",
                        "battery", "temp_c", "odometer", "x"])  # fmt: skip
position_like = st.dictionaries(keys, values, max_size=8)
frames = st.one_of(position_like, st.lists(position_like, max_size=LIMIT + 5), values)


def nested(depth: int, binary: bool) -> bytes | str:
    return b"\x91" * depth + b"\xc0" if binary else "[" * depth + "]" * depth


def check(positions: list[Position], rejected: list[Any]) -> None:
    assert len(positions) + len(rejected) <= LIMIT
    for p in positions:
        assert p.seq >= 0 and -90 <= p.lat <= 90 and -180 <= p.lon <= 180
        assert math.isfinite(p.ts)
    for r in rejected:
        assert r.seq is None or 0 <= r.seq < SEQ_LIMIT
    # Every reply encodes both ways (a rejection's seq is never too large for MessagePack).
    ack = Ack(0, rejected)
    encode_reply(ack, True)
    encode_reply(ack, False)


def decode_or_refuse(data: bytes | str) -> None:
    try:
        positions, rejected = decode_frame(data, LIMIT)
    except MalformedFrame as exc:
        assert exc.reason in ("malformed", "batch_too_large")
        return
    # decode_frame leaves a seq past 2^64 - 1 to validation; it rejects it there.
    check([p for p in positions if p.seq < SEQ_LIMIT], rejected)


def json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(frames)
def test_json_frames(frame: Any) -> None:
    decode_or_refuse(json_text(frame))


@FUZZ
@given(frames)
def test_msgpack_frames(frame: Any) -> None:
    try:
        data = msgspec.msgpack.encode(frame)
    except OverflowError:  # an integer MessagePack cannot carry
        return
    decode_or_refuse(data)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes(data: bytes, as_text: bool) -> None:
    decode_or_refuse(data.decode("utf-8", "replace") if as_text else data)


@FUZZ
@given(frames, st.integers(min_value=0, max_value=400), st.booleans())
def test_truncated_frames(frame: Any, cut: int, binary: bool) -> None:
    if binary:
        try:
            data: bytes | str = msgspec.msgpack.encode(frame)
        except OverflowError:
            return
    else:
        data = json_text(frame)
    decode_or_refuse(data[: min(cut, len(data))])


@FUZZ
@given(st.integers(min_value=1, max_value=200_000), st.booleans())
def test_nesting_at_any_depth(depth: int, binary: bool) -> None:
    decode_or_refuse(nested(depth, binary))


@FUZZ
@given(st.sampled_from(["native", "owntracks"]), st.one_of(st.binary(max_size=200), frames))
def test_mqtt_payloads(protocol: str, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else json_text(payload).encode()
    try:
        positions, rejected = decode_payload(protocol, data, LIMIT)
    except MalformedFrame:
        return
    check([p for p in positions if p.seq < SEQ_LIMIT], rejected)


text_values = st.one_of(st.text(max_size=12), st.sampled_from(["1e400", "nan", "-inf",
                        "1" + "0" * 400, "2024-13-45", "1700000000", "52.1"]))  # fmt: skip


@FUZZ
@given(st.dictionaries(st.sampled_from(["lat", "lon", "timestamp", "speed", "bearing",
                                        "altitude", "accuracy", "batt", "location", "temp"]),
                       text_values, max_size=10))  # fmt: skip
def test_osmand_query(params: dict[str, str]) -> None:
    """What the HTTP handler catches (``read_one``) is all that may come out."""
    try:
        p = osmand_position(params)
    except (msgspec.ValidationError, KeyError, ValueError, TypeError, AttributeError,
            OverflowError):  # fmt: skip
        return
    assert -90 <= p.lat <= 90 and math.isfinite(p.ts)


@FUZZ
@given(values)
def test_osmand_and_owntracks_json(body: Any) -> None:
    for parse in (osmand_position, owntracks_position):
        if not isinstance(body, dict):
            continue
        try:
            parse({"location": body} if parse is osmand_position else body | {"_type": "location"})
        except (msgspec.ValidationError, KeyError, ValueError, TypeError, AttributeError,
                OverflowError):  # fmt: skip
            pass


@FUZZ
@given(st.one_of(st.binary(max_size=200), values.map(json_text).map(str.encode)))
def test_api_json_bodies(data: bytes) -> None:
    try:
        decode_json(data)
    except ApiError as exc:
        assert exc.status == 400
