"""The vehicle's pace against the plan.

:class:`SpeedModel` measures the ratio of driving time to the planned time of the metres driven
(a route's planned arrivals give each leg its own planned pace, so an arterial leg is expected
to go faster than a leg through side streets; without a plan every metre is planned at a
typical urban speed). Driving time is all time away from stops, standstills at lights and in
jams included, so the pace is the one the remaining legs will really have; service stops are
left out. Old driving is forgotten with a half-life, and the ratio is blended with a prior one
while little has been observed::

    w = 1 - exp(-driven_s / prior_s)
    ratio = w * observed + (1 - w) * prior_ratio

Its state is a :class:`SpeedState`, plain data that can be exported and restored.
"""

from __future__ import annotations

import math

import msgspec


class SpeedState(msgspec.Struct, kw_only=True):
    """The mutable state of a :class:`SpeedModel` (exportable as plain data).

    ``driving_s`` and ``planned_s`` are the forgotten (half-life weighted) sums of driving time
    and of the planned time of the metres driven; ``moving_s`` is all driving time observed.
    """

    driving_s: float = 0.0
    planned_s: float = 0.0
    moving_s: float = 0.0
    last_ts: float | None = None


class SpeedModel:
    """The vehicle's pace relative to the plan; see the module docstring."""

    __slots__ = (
        "half_life_s",
        "max_ratio",
        "max_step_s",
        "prior_ratio",
        "prior_s",
        "state",
        "typical_mps",
    )

    def __init__(
        self,
        typical_mps: float,
        half_life_s: float,
        prior_s: float,
        *,
        prior_ratio: float = 1.0,
        max_step_s: float = 30.0,
        max_ratio: float = 4.0,
        state: SpeedState | None = None,
    ) -> None:
        self.typical_mps = typical_mps
        self.half_life_s = half_life_s
        self.prior_s = prior_s
        self.prior_ratio = prior_ratio
        # A long gap between fixes says nothing about how the vehicle drove meanwhile.
        self.max_step_s = max_step_s
        self.max_ratio = max_ratio
        self.state = state if state is not None else SpeedState()

    def update(
        self,
        ts: float,
        speed_mps: float,
        *,
        driving: bool = True,
        pace_s_per_m: float | None = None,
    ) -> None:
        """Account for a fix at ``ts`` moving at ``speed_mps``. ``driving`` is False while the
        vehicle serves a stop or rests (only the clock advances). ``pace_s_per_m`` is the
        planned pace where the vehicle is (default: the typical speed's)."""
        st = self.state
        dt = 0.0 if st.last_ts is None else min(max(ts - st.last_ts, 0.0), self.max_step_s)
        st.last_ts = ts if st.last_ts is None else max(st.last_ts, ts)
        if not driving or dt <= 0.0:
            return
        speed = speed_mps if math.isfinite(speed_mps) and speed_mps > 0 else 0.0
        pace = pace_s_per_m if pace_s_per_m is not None else 1.0 / self.typical_mps
        keep = 0.5 ** (dt / self.half_life_s)
        st.driving_s = st.driving_s * keep + dt
        st.planned_s = st.planned_s * keep + speed * dt * pace
        st.moving_s += dt

    def ratio(self) -> float:
        """Driving time per planned second (1: on plan; 2: twice as slow): the observed one,
        within ``[1 / max_ratio, max_ratio]``, blended with ``prior_ratio``."""
        st = self.state
        if st.moving_s <= 0.0:
            return self.prior_ratio
        observed = st.driving_s / max(st.planned_s, st.driving_s / self.max_ratio)
        observed = max(observed, 1.0 / self.max_ratio)
        w = 1.0 - math.exp(-st.moving_s / self.prior_s) if self.prior_s > 0 else 1.0
        return w * observed + (1.0 - w) * self.prior_ratio

    def speed_mps(self) -> float:
        """The expected driving speed where the plan has the typical pace (always > 0)."""
        return self.typical_mps / self.ratio()
