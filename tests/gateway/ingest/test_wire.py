import json

import msgspec
import pytest

from gateway.ingest.wire import Ack, MalformedFrame, Rejection, decode_frame, encode_reply

ENC = msgspec.msgpack.Encoder()


def test_single_json_position() -> None:
    good, bad = decode_frame('{"seq": 1, "ts": 1.5, "lat": 1, "lon": 2, "speed": 3}')
    assert [(p.seq, p.lat, p.lon, p.speed) for p in good] == [(1, 1.0, 2.0, 3.0)]
    assert bad == []


def test_msgpack_batch() -> None:
    frame = ENC.encode([{"seq": i, "ts": 10.0 + i, "lat": 1.0, "lon": 2.0} for i in range(3)])
    good, bad = decode_frame(frame)
    assert [p.seq for p in good] == [0, 1, 2]
    assert bad == []


def test_badly_typed_item_is_named_and_the_rest_kept() -> None:
    good, bad = decode_frame(
        '[{"seq":1,"ts":1,"lat":1,"lon":1},{"seq":2,"ts":"noon","lat":1,"lon":1},'
        '{"seq":3,"ts":3,"lat":1,"lon":1},{"ts":4,"lat":1,"lon":1}]'
    )
    assert [p.seq for p in good] == [1, 3]
    assert [(r.seq, r.reason) for r in bad] == [(2, "malformed"), (None, "malformed")]
    assert "$.ts" in (bad[0].detail or "")
    assert "seq" in (bad[1].detail or "")


@pytest.mark.parametrize(
    "frame",
    ["{oops", "", "42", '"text"', '{"seq": 1}', b"\xc1", ENC.encode({"seq": "x"})],
)
def test_unreadable_frames(frame: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_frame(frame)


def test_reply_encodings() -> None:
    ack = Ack(7, [Rejection(3, "duplicate")])
    assert (
        encode_reply(ack, False)
        == '{"type":"ack","seq":7,"rejected":[{"seq":3,"reason":"duplicate"}]}'
    )
    binary = encode_reply(ack, True)
    assert isinstance(binary, bytes)
    assert msgspec.msgpack.decode(binary) == {
        "type": "ack",
        "seq": 7,
        "rejected": [{"seq": 3, "reason": "duplicate"}],
    }


def test_a_position_carries_bounded_attributes() -> None:
    ok = {"seq": 1, "ts": 1.7e9, "lat": 1.0, "lon": 2.0,
          "attributes": {"ignition": True, "fuel": 40, "driver": "D-1"}}  # fmt: skip
    too_many = {"seq": 2, "ts": 1.7e9, "lat": 1.0, "lon": 2.0,
                "attributes": {f"k{i}": i for i in range(33)}}  # fmt: skip
    bad_key = {"seq": 3, "ts": 1.7e9, "lat": 1.0, "lon": 2.0, "attributes": {"a b": 1}}
    nested = {"seq": 4, "ts": 1.7e9, "lat": 1.0, "lon": 2.0, "attributes": {"a": {"b": 1}}}
    positions, bad = decode_frame(json.dumps([ok, too_many, bad_key, nested]), 100)
    assert [p.seq for p in positions] == [1]
    assert positions[0].attributes == {"ignition": True, "fuel": 40.0, "driver": "D-1"}
    assert [r.seq for r in bad] == [2, 3, 4]
