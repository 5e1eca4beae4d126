"""The delivery lifecycle, every pair of statuses."""

from __future__ import annotations

import itertools

import pytest

from gateway.dispatch.lifecycle import (
    FAILURE_REASONS,
    STATUSES,
    IllegalTransition,
    MissingReason,
    check_transition,
    event_type,
)

LEGAL = {
    ("scheduled", "out_for_delivery"),
    ("scheduled", "cancelled"),
    ("out_for_delivery", "arriving"),
    ("out_for_delivery", "delivered"),
    ("out_for_delivery", "failed"),
    ("out_for_delivery", "cancelled"),
    ("arriving", "delivered"),
    ("arriving", "failed"),
    ("arriving", "cancelled"),
    ("failed", "rescheduled"),
    ("failed", "returned"),
    ("rescheduled", "out_for_delivery"),
}


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL))
def test_legal_transitions_pass(current: str, new: str) -> None:
    check_transition(current, new, "nobody_home")


@pytest.mark.parametrize(
    ("current", "new"),
    sorted(p for p in itertools.product(STATUSES, STATUSES) if p not in LEGAL),
)
def test_every_other_transition_is_refused_naming_both_ends(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new, "nobody_home")
    assert (info.value.current, info.value.new) == (current, new)
    assert current in str(info.value) and new in str(info.value)


@pytest.mark.parametrize("reason", [None, "", "bored", "NOBODY_HOME"])
def test_failed_needs_a_known_reason(reason: str | None) -> None:
    with pytest.raises(MissingReason):
        check_transition("arriving", "failed", reason)


@pytest.mark.parametrize("reason", FAILURE_REASONS)
def test_each_reason_code_is_accepted(reason: str) -> None:
    check_transition("out_for_delivery", "failed", reason)


def test_unknown_status_and_terminal_states() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        check_transition("scheduled", "lost")
    for final in ("delivered", "returned", "cancelled"):
        assert not any((final, s) in LEGAL for s in STATUSES)
        with pytest.raises(IllegalTransition):
            check_transition(final, "scheduled")
    assert event_type("delivered") == "delivery.delivered"
