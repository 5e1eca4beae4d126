"""Fitting the fleet's ETA prior to its routes' dwells and legs.

``_fit_dwells`` fits the mixture of :class:`DwellShape` (by expectation-maximisation, the
chance of a long dwell logistic in the planned service time) and the service ratio to the
fleet's dwells; ``_fit_legs`` fits the pace ratio to its legs. How strongly a new route is held
to the fleet's ratios follows from how much routes differ beyond what their own few stops and
legs would show by chance (``_random_effects``: one-way random effects, also used for sites).
Called by :class:`FleetLearner`.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .dwell import DwellShape, _lognormal_pdf_array, _long_density_array
from .prior import EtaPrior

# Learning stops short of these: a prior as strong as this many stops (or legs) leaves a route
# almost no say, and spreads outside these are a fit gone wrong, not dwells.
_MAX_PRIOR_STOPS: Final = 100.0
_SIGMA_RANGE: Final = (0.02, 2.0)
_LONG_PROBABILITY_RANGE: Final = (1e-3, 0.5)
_EM_STEPS: Final = 200
_MAX_ODDS_POWER: Final = 8.0
# Only so that a fleet whose stops are all planned alike still gets a slope (0).
_ODDS_POWER_RIDGE: Final = 1e-3
_SHORT_DWELL_SIGMAS: Final = 4.0
_MAD_SIGMA: Final = 1.4826  # a normal sample's standard deviation per median absolute deviation
# The shape of long dwells' extra is taken from the fleet once it showed this many of them,
# as this many quantiles (each about a tenth of the long dwells).
_MIN_LONG_DWELLS: Final = 8.0
_LONG_EXTRA_QUANTILES: Final = 10


def _random_effects(
    values: list[NDArray[np.float64]], weights: list[NDArray[np.float64]]
) -> tuple[float, float, float]:
    """Weighted mean, within-group and between-group variance of grouped values (one-way
    random effects, method of moments; the between variance is 0 where it cannot be told)."""
    n = np.array([float(w.sum()) for w in weights])
    sums = np.array([float((w * v).sum()) for v, w in zip(values, weights, strict=True)])
    total = float(n.sum())
    groups = len(values)
    mean = float(sums.sum() / total)
    if total <= groups:
        return mean, 0.0, 0.0
    means = sums / np.maximum(n, 1e-12)
    ss_within = sum(
        float((w * (v - m) ** 2).sum())
        for v, w, m in zip(values, weights, means.tolist(), strict=True)
    )
    within = ss_within / (total - groups)
    ss_between = float((n * (means - mean) ** 2).sum())
    spread = total - float((n * n).sum()) / total
    between = max((ss_between - (groups - 1) * within) / spread, 0.0) if spread > 0 else 0.0
    return mean, within, between


def _prior_strength(within: float, between: float) -> float:
    """Observations a route needs before its own mean weighs as much as the fleet's."""
    if between <= within / _MAX_PRIOR_STOPS:
        return _MAX_PRIOR_STOPS
    return within / between


def _fit_dwells(routes: list[NDArray[np.float64]], prior: EtaPrior) -> EtaPrior:
    """Fit the dwell mixture and the service ratio to (planned, dwell) rows grouped by route."""
    y_all = [np.log(r[:, 1] / r[:, 0]) for r in routes]
    y = np.concatenate(y_all)
    # Dwells far shorter than any usual one (a stop only driven through, a device that lost
    # its fix) fit neither kind of dwell: they are left out.
    mu = float(np.median(y))
    cut = mu - _SHORT_DWELL_SIGMAS * _MAD_SIGMA * float(np.median(np.abs(y - mu)))
    keep_all = [v >= cut for v in y_all]
    keep = np.concatenate(keep_all)
    rows = np.concatenate(routes)[keep]
    planned, dwell, y = rows[:, 0], rows[:, 1], y[keep]
    shape = prior.dwell
    sigma = max(shape.sigma, _SIGMA_RANGE[0])
    extra, long_sigma = shape.long_extra_s, max(shape.long_sigma, _SIGMA_RANGE[0])
    # The chance of a long dwell: logistic in the log of the planned service time.
    reference = float(np.median(planned))
    x = np.log(planned / reference)
    odds = np.array([_logit(shape.long_probability), 0.0])
    long = np.zeros(y.size)
    # The long dwells' extra starts log-normal; once the fit has found enough long dwells,
    # their own quantiles shape it (a log-normal misjudges which dwells are long where the
    # extra is spread evenly, and so the chance of one).
    quantiles: tuple[float, ...] = ()
    for _ in range(_EM_STEPS):
        p = _sigmoid(odds[0] + odds[1] * x)
        usual_s = planned * math.exp(mu)
        f_usual = (1.0 - p) * _lognormal_pdf_array(dwell, usual_s, sigma)
        if quantiles:
            f_long = p * _long_density_array(dwell, usual_s, sigma, quantiles)
        else:
            f_long = p * _lognormal_pdf_array(dwell, usual_s + extra, long_sigma)
        total = f_usual + f_long
        long = np.divide(f_long, total, out=np.zeros_like(total), where=total > 0)
        usual = 1.0 - long
        new_mu = float((usual * y).sum() / usual.sum())
        spread = (usual * (y - new_mu) ** 2).sum() / usual.sum()
        sigma = float(np.clip(math.sqrt(spread), *_SIGMA_RANGE))
        odds = _logistic_fit(x, long, odds)
        if long.sum() >= 1.0:
            base_s = planned * math.exp(new_mu)
            over = np.log(np.maximum(dwell - base_s, 1.0))
            extra = math.exp(float((long * over).sum() / long.sum()))
            spread = (long * (np.log(dwell) - np.log(base_s + extra)) ** 2).sum() / long.sum()
            long_sigma = float(np.clip(math.sqrt(spread), *_SIGMA_RANGE))
            quantiles = _long_extra_quantiles(dwell - base_s, long)
        converged = abs(new_mu - mu) < 1e-6
        mu = new_mu
        if converged:
            break
    bounds = np.cumsum([int(k.sum()) for k in keep_all])[:-1]
    _, within, between = _random_effects(np.split(y, bounds), np.split(1.0 - long, bounds))
    extras = _long_extra_quantiles(dwell - planned * math.exp(mu), long)
    return msgspec.structs.replace(
        prior,
        service_ratio=math.exp(mu),
        service_prior_stops=_prior_strength(within, between),
        dwell=DwellShape(
            sigma=sigma,
            long_probability=float(_sigmoid(odds[0])),
            long_extra_s=extra,
            long_sigma=long_sigma,
            long_reference_s=reference,
            long_odds_power=float(odds[1]),
            long_extras_s=extras,
        ),
    )


def _long_extra_quantiles(
    extra: NDArray[np.float64], weight: NDArray[np.float64]
) -> tuple[float, ...]:
    """Quantiles of the extra of long dwells, each dwell weighed by how likely it was a long
    one; none until ``_MIN_LONG_DWELLS`` of them were seen."""
    keep = (extra > 0) & (weight > 0)
    extra, weight = extra[keep], weight[keep]
    if weight.sum() < _MIN_LONG_DWELLS:
        return ()
    order = np.argsort(extra)
    extra, weight = extra[order], weight[order]
    middle = (np.cumsum(weight) - weight / 2.0) / weight.sum()
    chances = (np.arange(_LONG_EXTRA_QUANTILES) + 0.5) / _LONG_EXTRA_QUANTILES
    return tuple(float(x) for x in np.interp(chances, middle, extra))


def _sigmoid(z: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64))))


def _logit(p: float) -> float:
    p = min(max(p, _LONG_PROBABILITY_RANGE[0]), _LONG_PROBABILITY_RANGE[1])
    return math.log(p / (1.0 - p))


def _logistic_fit(
    x: NDArray[np.float64], target: NDArray[np.float64], start: NDArray[np.float64], steps: int = 3
) -> NDArray[np.float64]:
    """Intercept and slope of ``logit P = a + b x`` for soft 0-1 targets: Newton steps from
    ``start`` (the slope held near 0 where ``x`` barely varies), kept to sensible chances."""
    theta = start.astype(np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    ridge = np.diag([0.0, _ODDS_POWER_RIDGE])
    for _ in range(steps):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (target - p) - ridge @ theta
        hessian = (design.T * (p * (1.0 - p))) @ design + ridge + 1e-9 * np.eye(2)
        theta = theta + np.linalg.solve(hessian, gradient)
    theta[0] = np.clip(theta[0], _logit(0.0), _logit(1.0))
    theta[1] = np.clip(theta[1], -_MAX_ODDS_POWER, _MAX_ODDS_POWER)
    return theta


def _fit_legs(routes: list[NDArray[np.float64]], prior: EtaPrior) -> EtaPrior:
    """Fit the pace ratio and how strongly to hold a route to it from (planned, actual) legs.

    The ratio is the fleet's driving time over its planned time, all legs together: what a
    route's own pace measures (:class:`SpeedModel`), and what the legs still to drive add up
    to. Jams make single legs' ratios skewed, so the typical (median) leg is quicker than that
    by about a tenth; an ETA several legs out that counts each at the median comes early."""
    ratios = [np.log(r[:, 1] / r[:, 0]) for r in routes]
    _, within, between = _random_effects(ratios, [np.ones(r.size) for r in ratios])
    legs = np.concatenate(routes)
    return msgspec.structs.replace(
        prior,
        pace_ratio=float(legs[:, 1].sum() / legs[:, 0].sum()),
        pace_prior_s=_prior_strength(within, between) * float(legs[:, 0].mean()),
    )
