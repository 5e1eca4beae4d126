"""Dwell times at stops: their shape, and how much of a dwell under way is left.

Dwell times are modelled as a mixture (:class:`DwellShape`): a usual dwell, log-normal around
the expected one, and by chance a long one (a customer who takes their time, a missing key)
that adds an extra: log-normal, or shaped by the quantiles of the extras the fleet showed.
:func:`is_long_dwell` tells which of the two a finished dwell more likely was.
:func:`remaining_dwell_s` gives, for the stop being served, the conditional median of what is
left given how long the vehicle has already been there, which shrinks while the dwell is usual
and grows once it has run past the usual spread (then it is probably a long one). The
mixture's densities over arrays of dwells serve the fits of the fleet and of its sites.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

_SQRT2: Final = math.sqrt(2.0)
_BISECT_STEPS = 40


def _require_non_negative(obj: object, names: Sequence[str], what: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{what}{name} must be a finite number >= 0, got {value!r}")


class DwellShape(msgspec.Struct, frozen=True, kw_only=True):
    """The shape of dwell times around the expected one: a usual dwell log-normal with
    ``sigma`` around it, and by chance a long one adding a log-normal extra of median
    ``long_extra_s`` and spread ``long_sigma``.

    The chance of a long dwell is ``long_probability`` at a stop planned at
    ``long_reference_s``; its odds grow as the planned service time to ``long_odds_power``
    (0, or no reference: the same chance everywhere). More to hand over, more to go wrong.

    ``long_extras_s``, when given, are quantiles of the extra (at evenly spaced chances, in
    increasing order) as the fleet showed it, and replace the log-normal extra where the
    remaining dwell is worked out: what is left of a long dwell depends on the shape of its
    extra, which a log-normal fitted to a few dozen long dwells gets wrong in the tails.

    ``usual_factor`` scales the usual dwell of one stop: what its location's earlier visits
    showed (see :class:`SiteModel`); 1 for the fleet.
    """

    sigma: float = 0.3
    usual_factor: float = 1.0
    long_probability: float = 0.1
    long_extra_s: float = 600.0
    long_sigma: float = 0.4
    long_reference_s: float = 0.0
    long_odds_power: float = 0.0
    long_extras_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        names = [n for n in self.__struct_fields__ if n not in ("long_odds_power", "long_extras_s")]
        _require_non_negative(self, names, "dwell ")
        extras = self.long_extras_s
        if not all(math.isfinite(x) and x >= 0 for x in extras) or list(extras) != sorted(extras):
            raise ValueError("dwell long_extras_s must be finite, >= 0 and in increasing order")
        if not math.isfinite(self.long_odds_power):
            raise ValueError("dwell long_odds_power must be finite")
        if self.long_probability > 1:
            raise ValueError("dwell long_probability must be at most 1")
        if self.usual_factor <= 0:
            raise ValueError("dwell usual_factor must be > 0")

    def long_chance(self, planned_s: float) -> float:
        """The chance of a long dwell at a stop planned at ``planned_s``."""
        return float(self.long_chances(np.array([planned_s]))[0])

    def long_chances(self, planned_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """:meth:`long_chance` at each of ``planned_s`` (a stop planned at 0 s or less: the
        chance at the reference)."""
        p = self.long_probability
        if self.long_odds_power == 0 or self.long_reference_s <= 0 or p <= 0.0 or p >= 1.0:
            return np.full(planned_s.size, p)
        planned = planned_s > 0
        scale = np.where(planned, planned_s / self.long_reference_s, 1.0)
        odds = p / (1.0 - p) * scale**self.long_odds_power
        result: NDArray[np.float64] = np.where(planned, odds / (1.0 + odds), p)
        return result

    def at(self, planned_s: float) -> DwellShape:
        """The shape at a stop planned at ``planned_s``: its own chance of a long dwell."""
        if self.long_odds_power == 0:
            return self
        return msgspec.structs.replace(
            self, long_probability=self.long_chance(planned_s), long_odds_power=0.0
        )


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
    return 0.5 * math.erfc(math.log(x / median) / (sigma * _SQRT2))


def _long_survival(expected_s: float, shape: DwellShape) -> Callable[[float], float]:
    """P(dwell > x) of a long dwell at a stop whose usual dwell is ``expected_s``.

    With the fleet's quantiles of the extra, a mixture of log-normals, one at each quantile
    on top of the usual dwell, each as wide as the usual dwell's spread and the gap between
    neighbouring quantiles together (so the mixture is smooth where the quantiles are few).
    """
    extras = shape.long_extras_s
    if not extras:
        median, sigma = expected_s + shape.long_extra_s, shape.long_sigma
        return lambda x: _lognormal_sf(x, median, sigma)
    spread = math.hypot(shape.sigma * expected_s, _quantile_gap(extras))
    if spread <= 0.0:
        return lambda x: sum(_lognormal_sf(x, expected_s + q, 0.0) for q in extras) / len(extras)
    # Each part as (log median, 1 / (sigma sqrt 2)): a fix at a stop asks for many survivals.
    logs = [(math.log(expected_s + q), (expected_s + q) / (spread * _SQRT2)) for q in extras]
    half = 0.5 / len(logs)

    def survival(x: float) -> float:
        if x <= 0.0:
            return 1.0
        lx = math.log(x)
        return half * sum(math.erfc((lx - m) * k) for m, k in logs)

    return survival


def _quantile_gap(extras: Sequence[float]) -> float:
    """The mean gap between neighbouring quantiles: how wide each one's part is spread."""
    return (extras[-1] - extras[0]) / (len(extras) - 1) if len(extras) > 1 else 0.0


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
    long_survival = _long_survival(expected_s, shape)
    longest = expected_s + max(shape.long_extras_s or (shape.long_extra_s,))

    def survival(x: float) -> float:
        return (1.0 - p) * _lognormal_sf(x, expected_s, shape.sigma) + p * long_survival(x)

    left = survival(elapsed)
    if left <= 1e-12:
        return 0.0
    # The median of the dwell given that it lasted ``elapsed``: survival falls to half.
    lo, hi = elapsed, max(elapsed, longest) * 2.0 + 1.0
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


def _lognormal_pdf_array(
    x: NDArray[np.float64], median: NDArray[np.float64], sigma: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    z = np.log(x / median) / sigma
    result: NDArray[np.float64] = np.exp(-0.5 * z * z) / (x * sigma * math.sqrt(2.0 * math.pi))
    return result


def _long_density_array(
    dwell: NDArray[np.float64],
    usual_s: NDArray[np.float64],
    sigma: float,
    extras: tuple[float, ...],
) -> NDArray[np.float64]:
    """Density of long dwells shaped by the quantiles of their extra (see
    :func:`_long_survival`), at each ``dwell`` whose usual dwell is ``usual_s``."""
    total = np.zeros_like(dwell)
    gap = _quantile_gap(extras)
    for q in extras:
        median = usual_s + q
        total += _lognormal_pdf_array(dwell, median, np.hypot(sigma * usual_s, gap) / median)
    result: NDArray[np.float64] = total / len(extras)
    return result
