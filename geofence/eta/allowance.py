"""The allowance an ETA makes for the long dwells that may come at the stops before it.

Nobody can tell which stop will run long before it does. :class:`AllowanceModel` sums what the
long dwells of the stops before each remaining stop may add, as a distribution on a grid
(:func:`extra_distribution` at each stop, from its own chance and extra), and adds to that
stop's ETA the allowance that makes the arrival likeliest to fall within a tolerance of the
time still to go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .dwell import DwellShape
from .fit import _LONG_EXTRA_QUANTILES

_SQRT2: Final = math.sqrt(2.0)

# Everything but long dwells still to begin (traffic, usual dwells) spreads an arrival by
# about this share of the time still to go, for :class:`AllowanceModel`.
_ETA_SPREAD_SHARE: Final = 0.15
_LEAD_STEP_S: Final = 60.0  # allowances are worked out for leads rounded to this


_EXTRA_BIN_S: Final = 20.0  # long dwells' extras are added up on a grid this fine ...
_EXTRA_BINS: Final = 540  # ... up to 3 hours (more is counted as 3 hours)
_EXTRA_NORMAL_QUANTILES: Final = tuple(
    NormalDist().inv_cdf((i + 0.5) / _LONG_EXTRA_QUANTILES) for i in range(_LONG_EXTRA_QUANTILES)
)


def extra_distribution(shape: DwellShape, usual_s: float) -> NDArray[np.float64]:
    """What a long dwell may add at a stop whose usual dwell is ``usual_s``, as chances on a
    grid of ``_EXTRA_BIN_S``: nothing (no long dwell) at 0, else at the quantiles of the extra
    (the fleet's, or those of the log-normal long dwell)."""
    p = min(max(shape.long_probability, 0.0), 1.0)
    out = np.zeros(_EXTRA_BINS)
    out[0] = 1.0 - p
    if shape.long_extras_s:
        extras = np.asarray(shape.long_extras_s, dtype=np.float64)
    else:
        total = (usual_s + shape.long_extra_s) * np.exp(
            shape.long_sigma * np.asarray(_EXTRA_NORMAL_QUANTILES)
        )
        extras = np.maximum(total - usual_s, 0.0)
    bins = np.minimum(np.round(extras / _EXTRA_BIN_S).astype(np.intp), _EXTRA_BINS - 1)
    np.add.at(out, bins, p / extras.size)
    return out


class AllowanceModel:
    """How much to add to the ETAs of a route's remaining stops for the long dwells that may
    come at the stops before each, given each stop's dwell shape.

    Nobody can tell for sure which stop will run long before it does, so a usual-dwell ETA is
    early by a long dwell's extra whenever one comes. For each remaining stop, the extras the
    stops before it may add are summed as a distribution (:func:`extra_distribution`, added
    up stop by stop), and the allowance is the one that gives the arrival the best chance of
    falling within ``tolerance_share`` of the ETA's lead, everything else (traffic, usual
    dwells) spreading the arrival by ``_ETA_SPREAD_SHARE`` of the lead. Near the arrival the
    tolerance is narrower than an extra, and an unlikely long dwell gets no allowance (an
    ETA in between would be wrong either way); a stop that nearly always runs long (a site
    known for it, :class:`SiteModel`) gets its extra counted in full. Leads are rounded to a
    minute; what was worked out is kept while the same stops are pending.
    """

    __slots__ = ("_cache", "_dists", "_kernels", "_last", "_pending", "tolerance_share")

    def __init__(
        self, shapes: Sequence[DwellShape], usual_s: ArrayLike, tolerance_share: float
    ) -> None:
        usual = np.asarray(usual_s, dtype=np.float64).tolist()
        self._kernels = [extra_distribution(s, u) for s, u in zip(shapes, usual, strict=True)]
        self.tolerance_share = tolerance_share
        self._pending = b""
        self._dists: list[NDArray[np.float64]] = []
        self._cache: dict[tuple[int, int], float] = {}
        self._last: tuple[bytes, NDArray[np.float64]] = (b"", np.zeros(0))

    def allowance(self, pending: NDArray[np.intp], leads_s: ArrayLike) -> NDArray[np.float64]:
        """Seconds to add to the ETA of each stop of ``pending`` (in the order they will be
        reached), ``leads_s`` ahead of now."""
        leads = np.asarray(leads_s, dtype=np.float64)
        if self.tolerance_share <= 0 or leads.size < 2:
            return np.zeros(leads.size)
        steps = np.maximum(np.round(leads / _LEAD_STEP_S), 1).astype(np.int64)
        key = pending.astype(np.intp).tobytes()
        if key != self._pending:
            self._pending, self._dists, self._cache = key, [], {}
        whole = key + steps.tobytes()
        if whole == self._last[0]:
            return self._last[1].copy()
        out = np.zeros(leads.size)
        for j, step in enumerate(steps.tolist()):
            if j == 0:
                continue
            value = self._cache.get((j, step))
            if value is None:
                value = self._cache[j, step] = _best_allowance(
                    self._before(pending, j), step * _LEAD_STEP_S, self.tolerance_share
                )
            out[j] = value
        self._last = (whole, out)
        return out.copy()

    def _before(self, pending: NDArray[np.intp], j: int) -> NDArray[np.float64]:
        """The distribution of what long dwells add at the first ``j`` pending stops."""
        dists = self._dists
        while len(dists) < j:
            kernel = self._kernels[int(pending[len(dists)])]
            if not dists:
                dists.append(kernel)
                continue
            total = np.convolve(dists[-1], kernel)
            total[_EXTRA_BINS - 1] += total[_EXTRA_BINS:].sum()
            dists.append(total[:_EXTRA_BINS])
        return dists[j - 1]


def _best_allowance(dist: NDArray[np.float64], lead_s: float, tolerance_share: float) -> float:
    if 1.0 - dist[0] < 1e-3:
        return 0.0
    last = int(np.flatnonzero(dist > 1e-6)[-1])
    weights = dist[: last + 1]
    # Allowances beyond what 99.9 % of outcomes add are never the likeliest to be right.
    top = min(int(np.searchsorted(np.cumsum(weights), 0.999)), last)
    half = tolerance_share * lead_s
    spread = _ETA_SPREAD_SHARE * lead_s * _SQRT2
    # The chance that an arrival an allowance ``a`` off lands within ``half`` of it, for every
    # difference between an allowance and an outcome on the grid (-last .. top bins), then
    # summed over the outcomes for each allowance 0 .. top bins: one convolution.
    offsets = np.arange(-last, top + 1, dtype=np.float64) * _EXTRA_BIN_S
    within = _erf((offsets + half) / spread) - _erf((offsets - half) / spread)
    inside = np.convolve(weights, within)[last : last + top + 1]
    return float(int(np.argmax(inside)) * _EXTRA_BIN_S)


def _erf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The error function, to 1.5e-7 (Abramowitz and Stegun 7.1.26)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: NDArray[np.float64] = np.sign(x) * (1.0 - poly * np.exp(-a * a))
    return result
