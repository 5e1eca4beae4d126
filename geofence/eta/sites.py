"""What each stop location showed: its own dwell shape.

Long dwells come mostly from the address (a reception desk, a goods-in queue), and usual
dwells differ by address too. The visits to a location are remembered under its
:func:`site_key`; :class:`SiteModel` gives a stop at a location with history its own usual
dwell, its own chance of a long dwell and, once it has shown some, its own extra, each held to
the fleet's as far as sites differ less than chance would make them (``_fit_sites``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from .dwell import DwellShape, _lognormal_pdf_array, _long_density_array
from .fit import _MIN_LONG_DWELLS, _SIGMA_RANGE, _random_effects
from .prior import EtaPrior

# Sites: the latest visits kept per site; the sites (the most recently visited) the fit of how
# much a site's own visits count looks at; a strength as great as this many visits: no say.
_SITE_VISITS: Final = 10
_SITE_FIT_SAMPLE: Final = 5_000
_MAX_SITE_STRENGTH: Final = 1_000.0
_MIN_USUAL_VISITS: Final = 8  # usual visits (planned ones) before sites' usual dwells are fitted


def site_key(lat: float, lon: float) -> str:
    """The key under which the visits to a stop's location are remembered: its coordinates to
    five decimals (about a metre). A shipper's geocoder places an address at the same point on
    every route, so the visits to one address share a key, and neighbouring addresses do not."""
    return f"{lat:.5f},{lon:.5f}"


class SiteModel:
    """What the fleet's earlier visits to a stop's location say about its dwell.

    Long dwells are not spread evenly over addresses: at some (a reception desk, a goods-in
    queue, a tower block without a lift) most visits run long, by about the same extra each
    time. Each visit remembered at a site is weighed by how likely it was a long dwell (under
    the fleet's :class:`DwellShape`); the site's chance of a long dwell is then the fleet's
    chance at the stop's planned service time updated by them as a beta-binomial::

        chance = (long visits + strength * fleet chance) / (visits + strength)

    where ``strength`` is how many visits it takes before a site's own record weighs as much as
    the fleet's (fitted from how much more sites differ in their share of long dwells than
    chance would make them: the fewer, the more sites differ). A site that has shown long
    dwells also gets its own extra: the mean of their log extras, shrunk towards the fleet's
    by ``extra_strength`` (how much sites differ in their extra, against how much one site's
    extras vary; a one-way random-effects fit), spread by ``extra_sigma`` plus what is not yet
    known of the site's own mean. A site never seen keeps the fleet's shape.

    Usual dwells differ by address too (a walk from the only place to park, stairs, a
    concierge). A site's usual factor is the mean log ratio of its usual visits (weighed by how
    likely each was not a long one) to the fleet's usual dwell, shrunk by ``usual_strength``
    (how much sites differ, against how much one site's visits vary; one-way random effects),
    and its usual dwells then spread by what is left: ``usual_sigma`` plus what is not yet
    known of the site's own factor.

    Built by :meth:`FleetLearner.sites`; reads the learner's visits as they are when asked.
    """

    __slots__ = (
        "_visits",
        "extra_center",
        "extra_sigma",
        "extra_strength",
        "prior",
        "strength",
        "usual_center",
        "usual_sigma",
        "usual_strength",
    )

    def __init__(
        self,
        visits: dict[str, dict[str, tuple[float, float]]],
        prior: EtaPrior,
        *,
        strength: float = _MAX_SITE_STRENGTH,
        extra_center: float = 0.0,
        extra_strength: float = math.inf,
        extra_sigma: float = 0.0,
        usual_center: float = 0.0,
        usual_strength: float = math.inf,
        usual_sigma: float = 0.0,
    ) -> None:
        self._visits = visits
        self.usual_center = usual_center  # the fleet's mean log ratio of usual dwells
        self.usual_strength = usual_strength
        self.usual_sigma = usual_sigma
        self.prior = prior
        self.strength = strength
        self.extra_center = extra_center  # the fleet's mean log extra of long dwells
        self.extra_strength = extra_strength
        self.extra_sigma = extra_sigma

    def shapes(self, stops: Sequence[tuple[float, float, float]]) -> list[DwellShape]:
        """The dwell shape of each stop given as (lat, lon, planned service s)."""
        return [self.shape(site_key(lat, lon), planned) for lat, lon, planned in stops]

    def shape(self, key: str, planned_s: float) -> DwellShape:
        """The dwell shape of a stop at site ``key`` planned at ``planned_s``."""
        base = self.prior.dwell.at(planned_s)
        visits = self._visits.get(key)
        if not visits or planned_s <= 0:
            return base
        rows = np.array(list(visits.values()), dtype=np.float64)
        planned, dwell = rows[:, 0], rows[:, 1]
        weight = _long_weights(planned, dwell, self.prior)
        if math.isfinite(self.usual_strength):
            mean, seen = _shrunk_mean(
                _log_usual(planned, dwell, self.prior),
                1.0 - weight,
                self.usual_center,
                self.usual_strength,
            )
            base = msgspec.structs.replace(
                base,
                usual_factor=math.exp(mean - self.usual_center),
                sigma=float(
                    np.clip(math.sqrt(self.usual_sigma**2 * (1.0 + 1.0 / seen)), *_SIGMA_RANGE)
                ),
            )
        if self.strength >= _MAX_SITE_STRENGTH:
            return base
        long = float(weight.sum())
        m = self.strength
        chance = (long + m * base.long_probability) / (planned.size + m)
        if long < 0.5 or not math.isfinite(self.extra_strength):
            return msgspec.structs.replace(base, long_probability=chance)
        mean, seen = _shrunk_mean(
            _log_extras(planned, dwell, self.prior), weight, self.extra_center, self.extra_strength
        )
        # The spread of one visit's extra, and of what is not yet known of the site's mean.
        unknown = self.extra_sigma**2 / seen
        extra = math.exp(mean)
        extra_sd = extra * math.sqrt(self.extra_sigma**2 + unknown)
        here = planned_s * self.prior.service_ratio * base.usual_factor
        spread = math.hypot(extra_sd, base.sigma * here) / (here + extra)
        return DwellShape(
            sigma=base.sigma,
            usual_factor=base.usual_factor,
            long_probability=chance,
            long_extra_s=extra,
            long_sigma=float(np.clip(spread, *_SIGMA_RANGE)),
        )


def _shrunk_mean(
    logs: NDArray[np.float64], weights: NDArray[np.float64], center: float, strength: float
) -> tuple[float, float]:
    """A site's mean of ``logs`` (its visits, weighed by ``weights``) shrunk towards the fleet's
    ``center`` as a one-way random-effects posterior, and the visits that posterior is worth
    (weights summed, plus ``strength``): what is not yet known of the site's mean is one
    visit's variance over that."""
    seen = float(weights.sum()) + strength
    return (float((weights * logs).sum()) + strength * center) / seen, seen


def _long_weights(
    planned: NDArray[np.float64], dwell: NDArray[np.float64], prior: EtaPrior
) -> NDArray[np.float64]:
    """How likely each dwell was a long one, under the prior's dwell shape."""
    shape = prior.dwell
    p = shape.long_chances(planned)
    usual = planned * prior.service_ratio
    sigma = max(shape.sigma, _SIGMA_RANGE[0])
    f_usual = (1.0 - p) * _lognormal_pdf_array(dwell, usual, sigma)
    if shape.long_extras_s:
        f_long = p * _long_density_array(dwell, usual, sigma, shape.long_extras_s)
    else:
        f_long = p * _lognormal_pdf_array(
            dwell, usual + shape.long_extra_s, max(shape.long_sigma, _SIGMA_RANGE[0])
        )
    total = f_usual + f_long
    return np.divide(f_long, total, out=np.zeros_like(total), where=total > 0)


def _log_extras(
    planned: NDArray[np.float64], dwell: NDArray[np.float64], prior: EtaPrior
) -> NDArray[np.float64]:
    """The log of what each dwell took beyond the usual one (at least a second)."""
    result: NDArray[np.float64] = np.log(np.maximum(dwell - planned * prior.service_ratio, 1.0))
    return result


def _log_usual(
    planned: NDArray[np.float64], dwell: NDArray[np.float64], prior: EtaPrior
) -> NDArray[np.float64]:
    """The log of each dwell against the fleet's usual dwell at its planned service time."""
    usual = np.maximum(planned * prior.service_ratio, 1.0)
    result: NDArray[np.float64] = np.log(np.maximum(dwell, 1.0) / usual)
    return result


def _grouped(
    site: NDArray[np.intp], values: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """``values`` and ``weights`` split by ``site`` (sites in increasing order)."""
    order = np.argsort(site, kind="stable")
    bounds = np.flatnonzero(np.diff(site[order])) + 1
    return np.split(values[order], bounds), np.split(weights[order], bounds)


def _fit_usual(
    site: NDArray[np.intp],
    planned: NDArray[np.float64],
    dwell: NDArray[np.float64],
    long_weight: NDArray[np.float64],
    prior: EtaPrior,
) -> dict[str, float]:
    """The :class:`SiteModel` arguments for usual dwells (none where sites cannot be told
    apart): how much sites differ against how much one site's usual visits vary, each visit
    weighed by how likely it was not a long one."""
    fair = planned > 0
    if fair.sum() < _MIN_USUAL_VISITS:
        return {}
    values, weights = _grouped(
        site[fair], _log_usual(planned, dwell, prior)[fair], 1.0 - long_weight[fair]
    )
    center, within, between = _random_effects(values, weights)
    if between <= 0 or within <= 0:
        return {}
    return {
        "usual_center": center,
        "usual_strength": within / between,
        "usual_sigma": math.sqrt(within),
    }


def _fit_sites(visits: dict[str, dict[str, tuple[float, float]]], prior: EtaPrior) -> SiteModel:
    """How strongly a site's own visits count (see :class:`SiteModel`), from the most recently
    visited sites."""
    groups: list[NDArray[np.float64]] = []
    for record in reversed(visits.values()):
        if len(groups) >= _SITE_FIT_SAMPLE:
            break
        groups.append(np.array(list(record.values()), dtype=np.float64))
    if not groups:
        return SiteModel(visits, prior)
    rows = np.concatenate(groups)
    sizes = np.array([g.shape[0] for g in groups])
    site = np.repeat(np.arange(len(groups)), sizes)
    planned, dwell = rows[:, 0], rows[:, 1]
    weight = _long_weights(planned, dwell, prior)
    usual = _fit_usual(site, planned, dwell, weight, prior)
    if prior.dwell.long_probability <= 0:
        return SiteModel(visits, prior, **usual)
    chance = prior.dwell.long_chances(planned)
    # Over-dispersion of each site's count of long dwells (method of moments): with a beta
    # spread of chances, Var(count) = sum p(1-p) * (1 + (visits - 1) rho), rho = 1/(m + 1).
    count = np.bincount(site, weight)
    expected = np.bincount(site, chance)
    var = np.bincount(site, chance * (1.0 - chance))
    several = sizes >= 2
    den = float(((sizes - 1) * var)[several].sum())
    num = float(((count - expected) ** 2 - var)[several].sum())
    rho = num / den if den > 0 else 0.0
    if rho <= 1.0 / (_MAX_SITE_STRENGTH + 1.0):
        return SiteModel(visits, prior, **usual)
    strength = 1.0 / min(rho, 0.999) - 1.0
    # Each site's long dwells' log extras: how much sites differ against one site's spread.
    long = weight > 0.5
    extra_strength, center, sigma = math.inf, 0.0, 0.0
    if long.sum() >= _MIN_LONG_DWELLS:
        logs = _log_extras(planned, dwell, prior)
        values, weights = _grouped(site[long], logs[long], weight[long])
        center, within, between = _random_effects(values, weights)
        if between > 0 and within > 0:
            extra_strength = within / between
            sigma = math.sqrt(within)
    return SiteModel(
        visits,
        prior,
        strength=strength,
        extra_center=center,
        extra_strength=extra_strength,
        extra_sigma=sigma,
        **usual,
    )
