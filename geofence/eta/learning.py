"""Learning the ETA prior from the fleet's routes.

:class:`FleetLearner` learns an :class:`EtaPrior` from what the fleet's routes showed
(:class:`RouteObservations`: their dwells and their legs from stop to stop). In a fleet whose
routes are all alike, a route's few stops are mostly chance, and the learnt prior holds a new
route to the fleet; where routes differ, their own observations take over soon. The learner
also remembers each stop location's dwells, from which it builds a :class:`SiteModel`. The
fits themselves are in :mod:`geofence.eta.fit` and :mod:`geofence.eta.sites`.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
import numpy as np

from .fit import _fit_dwells, _fit_legs
from .prior import EtaPrior
from .sites import _SITE_VISITS, SiteModel, _fit_sites

_MIN_LEG_S: Final = 10.0  # shorter planned legs are mostly noise of where the circle begins


class RouteObservations(msgspec.Struct, frozen=True, kw_only=True):
    """What one route has shown: each finished dwell as (planned service s, dwell s) and each
    leg driven from one stop straight to the next as (planned s, actual s); ``sites``, when
    given, holds each dwell's :func:`site_key` in the same order."""

    dwells: tuple[tuple[float, float], ...] = ()
    legs: tuple[tuple[float, float], ...] = ()
    sites: tuple[str, ...] = ()


# A route's dwells and its legs, each by the index of its stop (of the stop the leg led to).
_Shown = tuple[dict[int, tuple[float, float]], dict[int, tuple[float, float]]]


class FleetLearner:
    """Learns an :class:`EtaPrior` from the fleet's routes (their :class:`RouteObservations`).

    Dwells are fitted as the mixture of :class:`DwellShape` (by expectation-maximisation): the
    usual dwell log-normal around the planned service times the fleet's service ratio, and by
    chance a long one, whose extra is shaped by the quantiles of the extras found so far once
    there are enough of them. Legs give the fleet's pace ratio: their driving time over their
    planned time, all together, jams and detours included. How strongly a new route is held
    to the fleet's ratios follows from how much routes differ from each other beyond what
    their own few stops and legs would show by chance (a one-way random-effects fit): where
    routes differ, a route's own observations take over soon; where they are all alike, a
    route is held to the fleet. Until
    ``min_routes`` routes have shown dwells (or legs), ``base`` holds. Keeps the latest
    ``max_routes`` routes.

    Each dwell reported with its stop's location is also remembered per location (the latest
    ``_SITE_VISITS`` there, for the ``max_sites`` locations visited last), for
    :meth:`sites`. The prior and how much a location's visits count are fitted again once
    ``refit_after`` observations came since the last fit (a fit over hundreds of routes takes
    tens of milliseconds); a location's own visits count as soon as they come. Not
    thread-safe.
    """

    __slots__ = (
        "_changes",
        "_prior",
        "_routes",
        "_site_model",
        "_sites",
        "base",
        "max_routes",
        "max_sites",
        "min_routes",
        "refit_after",
    )

    def __init__(
        self,
        base: EtaPrior | None = None,
        *,
        max_routes: int = 2_000,
        min_routes: int = 5,
        max_sites: int = 100_000,
        refit_after: int = 1,
    ) -> None:
        self.base = base if base is not None else EtaPrior()
        self.refit_after = max(refit_after, 1)
        self._changes = 0
        self.max_routes = max_routes
        self.min_routes = min_routes
        self.max_sites = max_sites
        # Each route's dwells and legs, by the index of the stop (of the stop led to), in the
        # order the routes were last observed.
        self._routes: dict[str, _Shown] = {}
        # Each site's latest visits by route, the sites in the order they were last visited.
        self._sites: dict[str, dict[str, tuple[float, float]]] = {}
        self._prior: EtaPrior | None = None
        self._site_model: SiteModel | None = None

    def __len__(self) -> int:
        return len(self._routes)

    @property
    def site_count(self) -> int:
        """How many stop locations have visits remembered."""
        return len(self._sites)

    def observe(self, route_id: str, observations: RouteObservations) -> None:
        """What route ``route_id`` has shown so far (replaces what it showed before)."""
        self._keep(
            route_id, (dict(enumerate(observations.dwells)), dict(enumerate(observations.legs)))
        )
        sites, dwells = observations.sites, observations.dwells
        if sites and len(sites) == len(dwells):
            for key, (planned, dwell) in zip(sites, dwells, strict=True):
                self._remember_visit(key, route_id, planned, dwell)

    def observe_dwell(
        self,
        route_id: str,
        stop: int,
        planned_s: float,
        dwell_s: float,
        site: str | None = None,
    ) -> None:
        """Route ``route_id`` stayed ``dwell_s`` at its stop number ``stop``, planned at
        ``planned_s``, at location ``site`` when known: one dwell at a time, as the vehicle
        leaves each stop (the same stop again replaces it). Not to be mixed with
        :meth:`observe` for one route."""
        dwells, legs = self._routes.get(route_id) or ({}, {})
        dwells[stop] = (planned_s, dwell_s)
        if site:
            self._remember_visit(site, route_id, planned_s, dwell_s)
        self._keep(route_id, (dwells, legs))

    def observe_leg(self, route_id: str, stop: int, planned_s: float, actual_s: float) -> None:
        """Route ``route_id`` drove to its stop number ``stop`` straight from the stop before
        in ``actual_s``, planned at ``planned_s``: one leg at a time (see
        :meth:`observe_dwell`)."""
        dwells, legs = self._routes.get(route_id) or ({}, {})
        legs[stop] = (planned_s, actual_s)
        self._keep(route_id, (dwells, legs))

    def _keep(self, route_id: str, shown: _Shown) -> None:
        """Keep what ``route_id`` showed as the latest route's, within ``max_routes``."""
        self._routes.pop(route_id, None)
        self._routes[route_id] = shown
        while len(self._routes) > self.max_routes:
            del self._routes[next(iter(self._routes))]
        self._changes += 1

    def _remember_visit(self, site: str, route_id: str, planned_s: float, dwell_s: float) -> None:
        """Keep the visit among each site's latest ``_SITE_VISITS``, and the ``max_sites``
        sites visited last."""
        if not (planned_s > 0 and dwell_s > 0 and math.isfinite(planned_s + dwell_s)):
            return
        visits = self._sites.pop(site, None) or {}
        visits.pop(route_id, None)
        visits[route_id] = (planned_s, dwell_s)
        while len(visits) > _SITE_VISITS:
            del visits[next(iter(visits))]
        self._sites[site] = visits
        while len(self._sites) > self.max_sites:
            del self._sites[next(iter(self._sites))]

    def prior(self) -> EtaPrior:
        """The prior learnt from the routes observed so far."""
        if self._prior is None or self._changes >= self.refit_after:
            self._prior = self._fit()
            self._site_model = None
            self._changes = 0
        return self._prior

    def sites(self) -> SiteModel:
        """Each stop location's own dwell shape, from the visits remembered there and the
        prior (see :class:`SiteModel`)."""
        prior = self.prior()
        if self._site_model is None:
            self._site_model = _fit_sites(self._sites, prior)
        return self._site_model

    def _fit(self) -> EtaPrior:
        prior = self.base
        dwells = [
            np.array([d for d in shown.values() if d[0] > 0 and d[1] > 0], dtype=np.float64)
            for shown, _ in self._routes.values()
        ]
        dwells = [d for d in dwells if d.size]
        if len(dwells) >= self.min_routes:
            prior = _fit_dwells(dwells, prior)
        legs = [
            np.array([g for g in shown.values() if g[0] >= _MIN_LEG_S and g[1] > 0], np.float64)
            for _, shown in self._routes.values()
        ]
        legs = [g for g in legs if g.size]
        if len(legs) >= self.min_routes:
            prior = _fit_legs(legs, prior)
        return prior
