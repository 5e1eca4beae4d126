"""ETA model: a speed estimate and arrival times for the remaining stops.

Speed: :class:`SpeedModel` keeps an exponentially weighted moving average (EWMA, time-based
half-life) of the vehicle's speed over *moving* fixes only, so service stops and red lights do
not drag it down, and blends it with a typical urban speed::

    w = 1 - exp(-moving_s / prior_s)
    speed = w * ewma + (1 - w) * typical

where ``moving_s`` is the time observed moving so far. A vehicle that has just started gets the
typical speed; after a few ``prior_s`` of driving its own speed dominates.

Arrivals: :func:`estimate_arrivals` turns travel distances and service times into arrival times
at each remaining stop in order: travel at the model speed, then the service time at each
earlier stop. The route tracker supplies the distances: along the planned path when there is
one, otherwise the great-circle distance times a detour factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray


class SpeedState(msgspec.Struct, kw_only=True):
    """The mutable state of a :class:`SpeedModel` (exportable as plain data)."""

    ewma_mps: float | None = None
    moving_s: float = 0.0
    last_ts: float | None = None


class SpeedModel:
    """Moving-speed EWMA blended with a typical speed; see the module docstring."""

    __slots__ = ("half_life_s", "max_step_s", "moving_mps", "prior_s", "state", "typical_mps")

    def __init__(
        self,
        typical_mps: float,
        half_life_s: float,
        prior_s: float,
        moving_mps: float,
        *,
        max_step_s: float = 30.0,
        state: SpeedState | None = None,
    ) -> None:
        self.typical_mps = typical_mps
        self.half_life_s = half_life_s
        self.prior_s = prior_s
        self.moving_mps = moving_mps
        # A long gap between fixes says nothing about how long the vehicle moved.
        self.max_step_s = max_step_s
        self.state = state if state is not None else SpeedState()

    def update(self, ts: float, speed_mps: float) -> None:
        """Account for a fix at ``ts`` with ``speed_mps``; fixes slower than ``moving_mps``
        only advance the clock."""
        st = self.state
        dt = 0.0 if st.last_ts is None else min(max(ts - st.last_ts, 0.0), self.max_step_s)
        st.last_ts = ts if st.last_ts is None else max(st.last_ts, ts)
        if not (math.isfinite(speed_mps) and speed_mps >= self.moving_mps):
            return
        if st.ewma_mps is None:
            st.ewma_mps = speed_mps
        else:
            alpha = 1.0 - 0.5 ** (dt / self.half_life_s)
            st.ewma_mps += alpha * (speed_mps - st.ewma_mps)
        st.moving_s += dt

    def speed_mps(self) -> float:
        """Current speed estimate in m/s (always > 0)."""
        st = self.state
        if st.ewma_mps is None:
            return self.typical_mps
        w = 1.0 - math.exp(-st.moving_s / self.prior_s) if self.prior_s > 0 else 1.0
        return w * st.ewma_mps + (1.0 - w) * self.typical_mps


def estimate_arrivals(
    now: float,
    travel_m: ArrayLike,
    service_s: Sequence[float] | NDArray[np.float64],
    speed_mps: float,
    *,
    busy_s: float = 0.0,
) -> NDArray[np.float64]:
    """Arrival times at the remaining stops, in order.

    ``travel_m[0]`` is the distance from the vehicle to the first remaining stop and
    ``travel_m[i]`` from stop ``i - 1`` to stop ``i``; ``service_s[i]`` is the service time at
    stop ``i``; ``busy_s`` is what is left of the service under way at the current stop.
    """
    travel = np.maximum(np.asarray(travel_m, dtype=np.float64), 0.0)
    if travel.size == 0:
        return np.zeros(0)
    service = np.asarray(service_s, dtype=np.float64)
    legs = travel / max(speed_mps, 1e-3)
    legs[1:] += service[:-1]
    return now + max(busy_s, 0.0) + np.cumsum(legs)
