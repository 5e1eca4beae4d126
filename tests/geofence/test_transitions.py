import pytest

from geofence import CROSS, INNER, OUTER, FixPoint, Membership, transition
from geofence.events import ZoneCross, ZoneDwell, ZoneEnter, ZoneExit
from geofence.transitions import UNSURE, check_dwell

PREV = FixPoint(100.0, 1.0, 2.0)
FIX = FixPoint(110.0, 1.5, 2.5)
BOTH = OUTER | INNER


def step(member: Membership | None, observed: int, **kw: object) -> tuple:
    return transition("v", "z", member, observed, FIX, PREV, kw.pop("dwell", None), **kw)  # type: ignore[arg-type]


def test_enter_needs_inner() -> None:
    m, ev = step(None, BOTH)
    assert m == Membership(110.0)
    assert ev == ZoneEnter("v", "z", 110.0, 1.5, 2.5)
    assert step(None, OUTER) == (None, None)  # in the band only: still outside
    assert step(None, 0) == (None, None)


def test_exit_needs_leaving_outer() -> None:
    inside = Membership(50.0)
    assert step(inside, OUTER) == (inside, None)  # in the band: still inside
    assert step(inside, BOTH) == (inside, None)
    m, ev = step(inside, 0)
    assert m is None
    assert ev == ZoneExit("v", "z", 110.0, 1.5, 2.5, entered_ts=50.0, last_inside_ts=100.0)


def test_initial_fix_sets_membership_silently() -> None:
    m, ev = step(None, BOTH, initial=True)
    assert m == Membership(110.0) and ev is None
    assert step(None, CROSS, initial=True) == (None, None)


def test_cross() -> None:
    m, ev = step(None, CROSS)
    assert m is None
    assert ev == ZoneCross("v", "z", 110.0, 1.5, 2.5, from_ts=100.0, from_lat=1.0, from_lon=2.0)
    assert transition("v", "z", None, CROSS, FIX, None, None) == (None, None)


def test_a_move_into_the_zone_ending_in_the_band_enters() -> None:
    # The path went through the inner shape and the fix is at the edge (outside the zone but
    # within the exit margin, or inside by less than the enter margin): it went in.
    m, ev = step(None, CROSS | OUTER)
    assert m == Membership(110.0)
    assert ev == ZoneEnter("v", "z", 110.0, 1.5, 2.5)
    # Once inside, a crossing move changes nothing but where it ends.
    assert step(Membership(50.0), CROSS | OUTER) == (Membership(50.0), None)
    assert step(Membership(50.0), CROSS)[0] is None


def test_evidence_within_the_accuracy_does_not_enter() -> None:
    for observed in (BOTH, CROSS, CROSS | OUTER):
        assert step(None, observed | UNSURE) == (None, None)
    # Membership is kept by OUTER alone (the engine sets it for a fix within its accuracy).
    assert step(Membership(50.0), OUTER) == (Membership(50.0), None)


def test_dwell_once_per_visit() -> None:
    inside = Membership(50.0)
    assert step(inside, BOTH, dwell=61.0) == (inside, None)  # 60 s inside
    m, ev = step(inside, BOTH, dwell=60.0)
    assert m == Membership(50.0, dwell_done=True)
    assert ev == ZoneDwell("v", "z", 110.0, 1.5, 2.5, entered_ts=50.0, dwell_s=60.0)
    assert step(m, BOTH, dwell=60.0) == (m, None)


def test_inactive_zone_tracks_membership_without_events() -> None:
    m, ev = step(None, BOTH, active=False)
    assert m == Membership(110.0) and ev is None
    assert step(Membership(1.0), 0, active=False) == (None, None)
    assert step(None, CROSS, active=False) == (None, None)
    # A dwell threshold passed while inactive is used up.
    m, ev = step(Membership(50.0), BOTH, dwell=10.0, active=False)
    assert m == Membership(50.0, dwell_done=True) and ev is None


@pytest.mark.parametrize("observed", [0, OUTER, BOTH, CROSS, OUTER | CROSS, BOTH | UNSURE])
@pytest.mark.parametrize("member", [None, Membership(50.0), Membership(50.0, True)])
def test_idempotent_in_the_observation(member: Membership | None, observed: int) -> None:
    once, _ = step(member, observed & ~CROSS, dwell=30.0)
    twice, ev = step(once, observed & ~CROSS, dwell=30.0)
    assert twice == once
    assert ev is None


def test_check_dwell_without_threshold() -> None:
    m = Membership(0.0)
    assert check_dwell("v", "z", m, FIX, None) == (m, None)
