"""A position's fields are defined once (``Position``); the loose shape and the vehicle's
state follow them."""

from __future__ import annotations

import msgspec
import pytest

from gateway.fleet.position import Position, PositionShape
from gateway.fleet.state import VehicleState


def test_the_loose_shape_has_positions_fields_without_their_ranges() -> None:
    strict = msgspec.structs.fields(Position)
    loose = msgspec.structs.fields(PositionShape)
    assert [(f.name, f.required, f.default) for f in loose] == [
        (f.name, f.required, f.default) for f in strict
    ]
    raw = b'{"seq": 1, "ts": 1.7e9, "lat": 91.0, "lon": 2.0, "speed": -3}'
    shape = msgspec.json.decode(raw, type=PositionShape)
    assert msgspec.structs.asdict(shape)["lat"] == 91.0
    with pytest.raises(msgspec.ValidationError, match="lat"):
        msgspec.json.decode(raw, type=Position)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"seq": "one", "ts": 1, "lat": 1, "lon": 1}', type=PositionShape)


def test_a_vehicles_state_carries_every_field_of_a_position() -> None:
    state_fields = set(VehicleState.__struct_fields__)
    missing = [f.name for f in msgspec.structs.fields(Position) if f.name not in state_fields]
    assert missing == []
