"""The delivery lifecycle: which status may follow which, and what a failure must say.

::

    scheduled        -> out_for_delivery | cancelled
    out_for_delivery -> arriving | delivered | failed | cancelled
    arriving         -> delivered | failed | cancelled
    failed           -> rescheduled | returned
    rescheduled      -> out_for_delivery
    delivered, returned, cancelled: no further status

``out_for_delivery`` may go straight to ``delivered`` or ``failed``: a driver can report at
the door before the tracker has seen the van arrive. Pure logic; the store applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

SCHEDULED: Final = "scheduled"
OUT_FOR_DELIVERY: Final = "out_for_delivery"
ARRIVING: Final = "arriving"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
RESCHEDULED: Final = "rescheduled"
RETURNED: Final = "returned"
CANCELLED: Final = "cancelled"

STATUSES: Final = (
    SCHEDULED,
    OUT_FOR_DELIVERY,
    ARRIVING,
    DELIVERED,
    FAILED,
    RESCHEDULED,
    RETURNED,
    CANCELLED,
)

TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    SCHEDULED: frozenset({OUT_FOR_DELIVERY, CANCELLED}),
    OUT_FOR_DELIVERY: frozenset({ARRIVING, DELIVERED, FAILED, CANCELLED}),
    ARRIVING: frozenset({DELIVERED, FAILED, CANCELLED}),
    FAILED: frozenset({RESCHEDULED, RETURNED}),
    RESCHEDULED: frozenset({OUT_FOR_DELIVERY}),
    DELIVERED: frozenset(),
    RETURNED: frozenset(),
    CANCELLED: frozenset(),
}

# A started route is done once none of its deliveries is still waiting for the van.
ON_THE_ROAD: Final = frozenset({SCHEDULED, OUT_FOR_DELIVERY, ARRIVING})

# A re-import never reopens these (a cancelled delivery it does reopen: the shipper re-plans).
CLOSED: Final = frozenset({DELIVERED, RETURNED})

FAILURE_REASONS: Final = (
    "nobody_home",
    "no_access",
    "refused",
    "damaged",
    "address_not_found",
    "other",
)


class IllegalTransition(Exception):
    """``current`` cannot be followed by ``new``."""

    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"a delivery cannot go from {current} to {new}")
        self.current = current
        self.new = new


class MissingReason(ValueError):
    """A status that needs a reason code was given none, or an unknown one."""


def check_transition(current: str, new: str, reason: str | None = None) -> None:
    """Raise unless a delivery in ``current`` may move to ``new`` (with ``reason``).

    ``failed`` needs one of :data:`FAILURE_REASONS`; other statuses ignore ``reason``.
    An unknown ``new`` raises ``ValueError``.
    """
    if new not in TRANSITIONS:
        raise ValueError(f"unknown status {new!r}")
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, new)
    if new == FAILED and reason not in FAILURE_REASONS:
        raise MissingReason(f"failed needs a reason, one of {', '.join(FAILURE_REASONS)}")


def event_type(status: str) -> str:
    """The event type announcing that a delivery reached ``status``."""
    return f"delivery.{status}"
