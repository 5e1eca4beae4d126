"""What a route is taken to be like before it has shown its own pace and dwells.

:class:`EtaPrior` holds the prior pace and service ratios, how much of its own driving and how
many of its own stops a route takes to move away from them, and the shape of dwell times
(:class:`DwellShape`). It is set in the configuration, or learnt from the fleet's routes
(:class:`FleetLearner`).
"""

from __future__ import annotations

import msgspec

from .dwell import DwellShape, _require_non_negative


class EtaPrior(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a route is taken to be like before it has shown its own pace and dwells.

    ``pace_ratio`` is driving time per planned second (see :class:`SpeedModel`; the route's
    own pace counts ``1 - exp(-driven / pace_prior_s)``), ``service_ratio`` the usual dwell
    per planned second of service (see :class:`ServiceModel`; the route's own median is
    weighed against ``service_prior_stops`` stops at the prior), ``dwell`` the shape of dwell
    times. Set in the configuration, or learnt from the fleet's routes (:class:`FleetLearner`).
    """

    dwell: DwellShape = msgspec.field(default_factory=DwellShape)
    pace_ratio: float = 1.0
    pace_prior_s: float = 1_800.0
    service_ratio: float = 1.0
    service_prior_stops: float = 2.0

    def __post_init__(self) -> None:
        names = ("pace_ratio", "pace_prior_s", "service_ratio", "service_prior_stops")
        _require_non_negative(self, names, "")
        if self.pace_ratio <= 0 or self.service_ratio <= 0:
            raise ValueError("pace_ratio and service_ratio must be > 0")
