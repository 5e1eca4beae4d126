"""Service times at a route's stops, and arrival times from travel and service times.

:class:`ServiceModel` predicts the time at each stop from its planned service time, scaled by
what the route's earlier stops took (the median ratio of observed dwell to plan, shrunk
towards a prior ratio while there are few; dwells that were most likely long ones are left
out). A future stop counts its usual dwell; the stop being served counts the median of what is
left of it (:func:`remaining_dwell_s`).

:func:`estimate_arrivals` turns travel times and service times into arrival times at each
remaining stop in order. The route tracker supplies the travel times (remaining distance along
the planned path when there is one, otherwise great-circle times a detour factor, at the
planned pace times the observed ratio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .dwell import DwellShape, is_long_dwell, remaining_dwell_s
from .prior import EtaPrior


class ServiceModel:
    """Expected service times at a route's stops, learnt from the dwells seen so far.

    ``planned_s`` holds each stop's planned service time. :meth:`observe` records a finished
    dwell; :meth:`expected` gives each stop's usual dwell: its plan times the route's learnt
    ratio, which starts at the prior's ``service_ratio``, times the stop's own
    ``usual_factor`` (stops planned at 0 s get the learnt typical dwell of the route's other
    such stops). Dwells that were most likely long ones
    (:func:`is_long_dwell`) say nothing about the usual dwell and are left out of the learning.
    """

    __slots__ = (
        "_absolute",
        "_expected",
        "_factors",
        "_log_ratios",
        "planned_s",
        "prior",
        "shapes",
    )

    def __init__(
        self,
        planned_s: ArrayLike,
        prior: EtaPrior | None = None,
        shapes: Sequence[DwellShape] | None = None,
    ) -> None:
        self.planned_s = np.asarray(planned_s, dtype=np.float64)
        self.prior = prior if prior is not None else EtaPrior()
        # Each stop's own dwell shape: given (what its site showed, see :class:`SiteModel`),
        # else the prior's at the stop's planned service time.
        if shapes is None:
            shapes = [self.prior.dwell.at(s) for s in self.planned_s.tolist()]
        elif len(shapes) != self.planned_s.size:
            raise ValueError("one dwell shape per stop is needed")
        self.shapes = list(shapes)
        self._factors = np.array([s.usual_factor for s in self.shapes], dtype=np.float64)
        self._log_ratios: list[float] = []
        self._absolute: list[float] = []
        self._expected: NDArray[np.float64] | None = None

    def observe(self, planned_s: float, dwell_s: float, shape: DwellShape | None = None) -> None:
        """A stop planned at ``planned_s`` (whose dwell shape is ``shape``, else the prior's
        there) took ``dwell_s``."""
        if not math.isfinite(dwell_s) or dwell_s < 0:
            return
        shape = shape or self.prior.dwell.at(planned_s)
        planned_s *= shape.usual_factor
        usual = planned_s * self.ratio() if planned_s > 0 else self._shrunk(self._absolute, 0.0)
        if is_long_dwell(dwell_s, usual, shape):
            return
        self._expected = None
        if planned_s > 0:
            self._log_ratios.append(math.log(max(dwell_s, 1.0) / planned_s))
        else:
            self._absolute.append(dwell_s)

    def _shrunk(self, values: list[float], prior: float) -> float:
        """The median of ``values`` shrunk towards ``prior`` by the prior's stops."""
        n = len(values)
        if n == 0:
            return prior
        k = self.prior.service_prior_stops
        return prior + (float(np.median(values)) - prior) * n / (n + k)

    def ratio(self) -> float:
        """The learnt ratio of dwell to plan (the prior's until dwells are seen)."""
        return math.exp(self._shrunk(self._log_ratios, math.log(self.prior.service_ratio)))

    def expected(self) -> NDArray[np.float64]:
        """Each stop's usual dwell, in seconds (do not modify the array)."""
        if self._expected is None:
            unplanned = self._shrunk(self._absolute, 0.0)
            planned = self.planned_s * self._factors
            self._expected = np.where(planned > 0, planned * self.ratio(), unplanned)
        return self._expected

    def remaining(self, index: int, elapsed_s: float) -> float:
        """Median time still to come at stop ``index`` after ``elapsed_s`` there."""
        return remaining_dwell_s(elapsed_s, float(self.expected()[index]), self.shapes[index])

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
