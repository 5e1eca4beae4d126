import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.fleet.position import Position
from gateway.ingest.validation import (
    JUMP_CONFIRMATIONS,
    DeviceCursor,
    Limits,
    haversine_m,
    validate,
)
from gateway.ingest.wire import decode_frame

NOW = 1_800_000_000.0
LIMITS = Limits(future_tolerance_s=60, max_age_s=3600, max_speed_mps=70, max_accuracy_m=100)


def pos(seq: int, dt: float = 0.0, lat: float = 52.0, lon: float = 4.0, **kw: Any) -> Position:
    return Position(seq=seq, ts=NOW - 100 + dt, lat=lat, lon=lon, **kw)


def reasons(cursor: DeviceCursor, positions: list[Position]) -> list[str | None]:
    _, rejected = validate(cursor, positions, NOW, LIMITS)
    by_seq = {r.seq: str(r.reason) for r in rejected}
    return [by_seq.get(p.seq) for p in positions]


def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(60, 10, 60, 11) == pytest.approx(55_660, rel=2e-3)


@pytest.mark.parametrize(
    ("p", "reason"),
    [
        (pos(1, dt=100 + 61), "future"),
        (pos(1, dt=-3600), "too_old"),
        (pos(1, accuracy=150), "poor_accuracy"),
    ],
)
def test_single_position_rejections(p: Position, reason: str) -> None:
    assert reasons(DeviceCursor(), [p]) == [reason]


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"lat": 91.0}, "lat"),
        ({"lat": math.nan}, "lat"),
        ({"lon": -180.5}, "lon"),
        ({"lon": math.inf}, "lon"),
        ({"speed": -1.0}, "speed"),
        ({"heading": 400.0}, "heading"),
        ({"accuracy": math.nan}, "accuracy"),
        ({"temp_c": math.inf}, "temp_c"),
        ({"ts": math.nan}, "ts"),
    ],
)
def test_out_of_range_values_are_named_while_decoding(
    fields: dict[str, float], bad_field: str
) -> None:
    good = {"seq": 1, "ts": NOW, "lat": 52.0, "lon": 4.0}
    frame = msgspec.msgpack.encode([good | {"seq": 2, **fields}, good])
    ok, bad = decode_frame(frame)
    assert [p.seq for p in ok] == [1]
    assert [(r.seq, r.reason, r.detail) for r in bad] == [(2, "out_of_range", bad_field)]


def test_good_positions_advance_the_cursor() -> None:
    c = DeviceCursor()
    assert reasons(c, [pos(1, 0), pos(2, 1, lat=52.0001), pos(5, 2, lat=52.0002)]) == [None] * 3
    assert (c.seq, c.lat) == (5, 52.0002)


def test_duplicate_and_out_of_order() -> None:
    c = DeviceCursor()
    validate(c, [pos(1, 0), pos(2, 10)], NOW, LIMITS)
    assert reasons(c, [pos(2, 10), pos(1, 0), pos(3, 5), pos(4, 11)]) == [
        "duplicate",
        "duplicate",
        "out_of_order",
        None,
    ]


def test_a_resent_batch_is_all_duplicate() -> None:
    c = DeviceCursor()
    batch = [pos(i, i, lat=52 + i * 1e-5) for i in range(1, 50)]
    assert reasons(c, batch) == [None] * 49
    assert reasons(c, batch) == ["duplicate"] * 49


def test_implausible_jump_rejected_then_confirmed() -> None:
    c = DeviceCursor()
    validate(c, [pos(1, 0)], NOW, LIMITS)
    # 1 degree of latitude in 10 s is ~11 km/s.
    far = [pos(2 + i, 10 + i, lat=53.0 + i * 1e-5) for i in range(JUMP_CONFIRMATIONS)]
    got = reasons(c, far)
    assert got == ["implausible_jump"] * (JUMP_CONFIRMATIONS - 1) + [None]
    assert c.lat == pytest.approx(53.0 + (JUMP_CONFIRMATIONS - 1) * 1e-5)


@given(
    resends=st.integers(min_value=JUMP_CONFIRMATIONS, max_value=12),
    km=st.floats(min_value=2.0, max_value=500.0),
    seq_step=st.sampled_from([0, 1]),
    batched=st.booleans(),
)
def test_a_glitch_resent_any_number_of_times_is_never_stored(
    resends: int, km: float, seq_step: int, batched: bool
) -> None:
    """A client that resends its oldest fix until it gets an answer repeats one glitch: the
    same fix time each time (the same seq, or a new one), so it confirms nothing."""
    c = DeviceCursor()
    validate(c, [pos(1, 0)], NOW, LIMITS)
    glitch = [pos(2 + i * seq_step, 10, lat=52.0 + km / 111.195) for i in range(resends)]
    got = reasons(c, glitch) if batched else [reasons(c, [g])[0] for g in glitch]
    assert got == ["implausible_jump"] * resends
    assert (c.lat, c.seq) == (52.0, 1)
    # Fixes that go on from the first place are still accepted.
    assert reasons(c, [pos(100, 20, lat=52.0001)]) == [None]


def test_a_new_place_confirmed_by_later_fixes_among_resends_is_accepted() -> None:
    c = DeviceCursor()
    validate(c, [pos(1, 0)], NOW, LIMITS)
    far = [pos(2, 10, lat=53.0), pos(2, 10, lat=53.0), pos(3, 11, lat=53.00001)]
    far += [pos(3, 11, lat=53.00001), pos(4, 12, lat=53.00002)]
    assert reasons(c, far) == ["implausible_jump"] * 4 + [None]


def test_lone_outliers_do_not_move_the_cursor() -> None:
    c = DeviceCursor()
    validate(c, [pos(1, 0)], NOW, LIMITS)
    got = reasons(c, [pos(2, 1, lat=53), pos(3, 2, lat=51), pos(4, 3, lat=52.00001)])
    assert got == ["implausible_jump", "implausible_jump", None]


def test_fast_but_plausible_movement_is_accepted() -> None:
    c = DeviceCursor()
    # 60 m/s for 10 s = 600 m (limit is 70 m/s).
    d_lat = 600 / 111_195
    assert reasons(c, [pos(1, 0), pos(2, 10, lat=52 + d_lat)]) == [None, None]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60))
def test_accepted_seqs_strictly_increase(seqs: list[int]) -> None:
    c = DeviceCursor()
    batch = [pos(s, float(s), lat=52 + s * 1e-6) for s in seqs]
    kept, rejected = validate(c, batch, NOW, LIMITS)
    accepted = [p.seq for p in kept]
    assert accepted == sorted(set(accepted))
    assert len(kept) + len(rejected) == len(seqs)
    assert c.seq == (max(accepted) if accepted else 0)
