"""ETA model: how fast the vehicle covers the rest of its route, and how long it stays at stops.

Pace. :class:`SpeedModel` measures the vehicle's pace against the plan: the ratio of driving time
to the planned time of the metres driven (a route's planned arrivals give each leg its own
planned pace, so an arterial leg is expected to go faster than a leg through side streets;
without a plan every metre is planned at a typical urban speed). Driving time is all time away
from stops, standstills at lights and in jams included, so the pace is the one the remaining
legs will really have; service stops are left out. Old driving is forgotten with a half-life,
and the ratio is blended with 1 (on plan) while little has been observed::

    w = 1 - exp(-driven_s / prior_s)
    ratio = w * observed + (1 - w) * 1

Service. :class:`ServiceModel` predicts the time at each stop from its planned service time,
scaled by what the route's earlier stops took (the median ratio of observed dwell to plan,
shrunk towards 1 while there are few). Dwell times are modelled as a mixture: a usual dwell,
log-normal around the expected one, and by chance a long one (a customer who takes their time,
a missing key) that adds a log-normal extra. A future stop counts its usual dwell; the stop
being served counts the conditional median of what is left given how long the vehicle has
already been there, which shrinks while the dwell is usual and grows once it has run past the
usual spread (then it is probably a long one).

Arrivals: :func:`estimate_arrivals` turns travel times and service times into arrival times at
each remaining stop in order. The route tracker supplies the travel times (remaining distance
along the planned path when there is one, otherwise great-circle times a detour factor, at the
planned pace times the observed ratio).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from statistics import NormalDist

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

_NORMAL = NormalDist()
_BISECT_STEPS = 40


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

    __slots__ = ("half_life_s", "max_ratio", "max_step_s", "prior_s", "state", "typical_mps")

    def __init__(
        self,
        typical_mps: float,
        half_life_s: float,
        prior_s: float,
        *,
        max_step_s: float = 30.0,
        max_ratio: float = 4.0,
        state: SpeedState | None = None,
    ) -> None:
        self.typical_mps = typical_mps
        self.half_life_s = half_life_s
        self.prior_s = prior_s
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
        """Driving time per planned second (1: on plan; 2: twice as slow), within
        ``[1 / max_ratio, max_ratio]``."""
        st = self.state
        if st.moving_s <= 0.0:
            return 1.0
        observed = st.driving_s / max(st.planned_s, st.driving_s / self.max_ratio)
        observed = max(observed, 1.0 / self.max_ratio)
        w = 1.0 - math.exp(-st.moving_s / self.prior_s) if self.prior_s > 0 else 1.0
        return w * observed + (1.0 - w)

    def speed_mps(self) -> float:
        """The expected driving speed where the plan has the typical pace (always > 0)."""
        return self.typical_mps / self.ratio()


class DwellShape(msgspec.Struct, frozen=True, kw_only=True):
    """The shape of dwell times around the expected one: a usual dwell log-normal with
    ``sigma`` around it, and with ``long_probability`` a long one adding a log-normal extra of
    median ``long_extra_s`` and spread ``long_sigma``."""

    sigma: float = 0.3
    long_probability: float = 0.1
    long_extra_s: float = 600.0
    long_sigma: float = 0.4

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"dwell {name} must be a finite number >= 0, got {value!r}")
        if self.long_probability > 1:
            raise ValueError("dwell long_probability must be at most 1")


def _lognormal_pdf(x: float, median: float, sigma: float) -> float:
    """Density of a log-normal X at ``x > 0`` (``sigma`` > 0)."""
    z = math.log(x / median) / sigma
    return math.exp(-0.5 * z * z) / (x * sigma * math.sqrt(2.0 * math.pi))


def is_long_dwell(dwell_s: float, expected_s: float, shape: DwellShape) -> bool:
    """Whether a dwell of ``dwell_s`` is more likely a long one than a usual one around
    ``expected_s``."""
    if dwell_s <= expected_s or expected_s <= 0 or shape.long_probability <= 0:
        return False
    if shape.sigma <= 0 or shape.long_sigma <= 0:
        return dwell_s >= expected_s + shape.long_extra_s / 2
    p = min(shape.long_probability, 1.0)
    usual = (1.0 - p) * _lognormal_pdf(dwell_s, expected_s, shape.sigma)
    long = p * _lognormal_pdf(dwell_s, expected_s + shape.long_extra_s, shape.long_sigma)
    return long > usual


def _lognormal_sf(x: float, median: float, sigma: float) -> float:
    """P(X > x) for a log-normal X (``sigma`` 0: a point mass at ``median``)."""
    if x <= 0.0:
        return 1.0
    if median <= 0.0:
        return 0.0
    if sigma <= 0.0:
        return 1.0 if median > x else 0.0
    return 1.0 - _NORMAL.cdf(math.log(x / median) / sigma)


def remaining_dwell_s(elapsed_s: float, expected_s: float, shape: DwellShape) -> float:
    """Median of the time still to be spent at a stop after ``elapsed_s`` there, for a dwell
    whose usual length is ``expected_s`` (see :class:`DwellShape`), to about a second; 0 where
    no service is expected."""
    # Whole seconds: a tracker asks once per fix while the vehicle is at a stop.
    elapsed = float(round(max(elapsed_s, 0.0)))
    return _remaining(elapsed, round(expected_s, 1), shape) - (max(elapsed_s, 0.0) - elapsed)


@functools.lru_cache(maxsize=8192)
def _remaining(elapsed: float, expected_s: float, shape: DwellShape) -> float:
    if expected_s <= 0.0:
        return 0.0  # a stop with no service expected: no usual dwell to run long either
    p = min(max(shape.long_probability, 0.0), 1.0)
    long_median = expected_s + shape.long_extra_s

    def survival(x: float) -> float:
        return (1.0 - p) * _lognormal_sf(x, expected_s, shape.sigma) + p * _lognormal_sf(
            x, long_median, shape.long_sigma
        )

    left = survival(elapsed)
    if left <= 1e-12:
        return 0.0
    # The median of the dwell given that it lasted ``elapsed``: survival falls to half.
    lo, hi = elapsed, max(elapsed, long_median) * 2.0 + 1.0
    while survival(hi) > left / 2.0:
        hi *= 2.0
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2.0
        if survival(mid) > left / 2.0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 0.5:
            break
    return (lo + hi) / 2.0 - elapsed


class ServiceModel:
    """Expected service times at a route's stops, learnt from the dwells seen so far.

    ``planned_s`` holds each stop's planned service time. :meth:`observe` records a finished
    dwell; :meth:`expected` gives each stop's usual dwell: its plan times the route's learnt
    ratio (stops planned at 0 s get the learnt typical dwell of the route's other such stops).
    Dwells that were most likely long ones (:func:`is_long_dwell`) say nothing about the usual
    dwell and are left out of the learning.
    """

    __slots__ = ("_absolute", "_expected", "_log_ratios", "planned_s", "prior_stops", "shape")

    def __init__(
        self, planned_s: ArrayLike, shape: DwellShape | None = None, *, prior_stops: float = 2.0
    ) -> None:
        self.planned_s = np.asarray(planned_s, dtype=np.float64)
        self.shape = shape if shape is not None else DwellShape()
        self.prior_stops = prior_stops
        self._log_ratios: list[float] = []
        self._absolute: list[float] = []
        self._expected: NDArray[np.float64] | None = None

    def observe(self, planned_s: float, dwell_s: float) -> None:
        """A stop planned at ``planned_s`` took ``dwell_s``."""
        if not math.isfinite(dwell_s) or dwell_s < 0:
            return
        usual = planned_s * self.ratio() if planned_s > 0 else self._shrunk(self._absolute)
        if is_long_dwell(dwell_s, usual, self.shape):
            return
        self._expected = None
        if planned_s > 0:
            self._log_ratios.append(math.log(max(dwell_s, 1.0) / planned_s))
        else:
            self._absolute.append(dwell_s)

    def _shrunk(self, values: list[float]) -> float:
        n = len(values)
        return 0.0 if n == 0 else float(np.median(values)) * n / (n + self.prior_stops)

    def ratio(self) -> float:
        """The learnt ratio of dwell to plan (1 until dwells are seen)."""
        return math.exp(self._shrunk(self._log_ratios))

    def expected(self) -> NDArray[np.float64]:
        """Each stop's usual dwell, in seconds (do not modify the array)."""
        if self._expected is None:
            unplanned = self._shrunk(self._absolute)
            self._expected = np.where(self.planned_s > 0, self.planned_s * self.ratio(), unplanned)
        return self._expected

    def remaining(self, index: int, elapsed_s: float) -> float:
        """Median time still to come at stop ``index`` after ``elapsed_s`` there."""
        return remaining_dwell_s(elapsed_s, float(self.expected()[index]), self.shape)

    def export(self) -> dict[str, list[float]]:
        return {"log_ratios": list(self._log_ratios), "absolute": list(self._absolute)}

    def restore(self, data: dict[str, list[float]]) -> None:
        self._log_ratios = [float(x) for x in data.get("log_ratios", [])]
        self._absolute = [float(x) for x in data.get("absolute", [])]
        self._expected = None


def estimate_arrivals(
    now: float,
    travel_s: ArrayLike,
    service_s: Sequence[float] | NDArray[np.float64],
    *,
    busy_s: float = 0.0,
) -> NDArray[np.float64]:
    """Arrival times at the remaining stops, in order.

    ``travel_s[0]`` is the driving time from the vehicle to the first remaining stop and
    ``travel_s[i]`` from stop ``i - 1`` to stop ``i``; ``service_s[i]`` is the service time at
    stop ``i``; ``busy_s`` is what is left of the service under way at the current stop.
    """
    travel = np.maximum(np.asarray(travel_s, dtype=np.float64), 0.0)
    if travel.size == 0:
        return np.zeros(0)
    service = np.asarray(service_s, dtype=np.float64)
    legs = travel.copy()
    legs[1:] += service[:-1]
    return now + max(busy_s, 0.0) + np.cumsum(legs)
