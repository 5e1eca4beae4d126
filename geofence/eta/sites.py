"""ETA model: how fast the vehicle covers the rest of its route, and how long it stays at stops.

Pace. :class:`SpeedModel` measures the vehicle's pace against the plan: the ratio of driving time
to the planned time of the metres driven (a route's planned arrivals give each leg its own
planned pace, so an arterial leg is expected to go faster than a leg through side streets;
without a plan every metre is planned at a typical urban speed). Driving time is all time away
from stops, standstills at lights and in jams included, so the pace is the one the remaining
legs will really have; service stops are left out. Old driving is forgotten with a half-life,
and the ratio is blended with a prior one while little has been observed::

    w = 1 - exp(-driven_s / prior_s)
    ratio = w * observed + (1 - w) * prior_ratio

Service. :class:`ServiceModel` predicts the time at each stop from its planned service time,
scaled by what the route's earlier stops took (the median ratio of observed dwell to plan,
shrunk towards a prior ratio while there are few). Dwell times are modelled as a mixture: a
usual dwell, log-normal around the expected one, and by chance a long one (a customer who takes
their time, a missing key) that adds an extra: log-normal, or shaped by the quantiles of the
extras the fleet showed (see :class:`DwellShape`). A future stop counts its usual dwell;
the stop being served counts the conditional median of what is left given how long the vehicle
has already been there, which shrinks while the dwell is usual and grows once it has run past
the usual spread (then it is probably a long one).

Prior. :class:`EtaPrior` holds what a route is taken to be like before it shows its own: the
prior pace and service ratios, how much of its own driving and how many of its own stops it
takes to move away from them, and the shape of dwell times. :class:`FleetLearner` learns it
from what the fleet's routes showed (:class:`RouteObservations`: their dwells and their legs
from stop to stop). In a fleet whose routes are all alike, a route's few stops are mostly
chance, and the learnt prior holds a new route to the fleet; where routes differ, their own
observations take over soon.

Sites. Long dwells come mostly from the address (a reception desk, a goods-in queue). The
learner also remembers each stop location's dwells (:func:`site_key`), and
:class:`SiteModel` gives a stop at a location with history its own chance of a long dwell
and, once it has shown some, its own extra. :class:`AllowanceModel` adds to an ETA what the
long dwells of the stops before it are likeliest to add (each stop's own chance and extra).

Arrivals: :func:`estimate_arrivals` turns travel times and service times into arrival times at
each remaining stop in order. The route tracker supplies the travel times (remaining distance
along the planned path when there is one, otherwise great-circle times a detour factor, at the
planned pace times the observed ratio).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Final

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

_SQRT2: Final = math.sqrt(2.0)
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


class RouteObservations(msgspec.Struct, frozen=True, kw_only=True):
    """What one route has shown: each finished dwell as (planned service s, dwell s) and each
    leg driven from one stop straight to the next as (planned s, actual s); ``sites``, when
    given, holds each dwell's :func:`site_key` in the same order."""

    dwells: tuple[tuple[float, float], ...] = ()
    legs: tuple[tuple[float, float], ...] = ()
    sites: tuple[str, ...] = ()


def site_key(lat: float, lon: float) -> str:
    """The key under which the visits to a stop's location are remembered: its coordinates to
    five decimals (about a metre). A shipper's geocoder places an address at the same point on
    every route, so the visits to one address share a key, and neighbouring addresses do not."""
    return f"{lat:.5f},{lon:.5f}"


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
_MIN_LEG_S: Final = 10.0  # shorter planned legs are mostly noise of where the circle begins
# Sites: the latest visits kept per site; the sites (the most recently visited) the fit of how
# much a site's own visits count looks at; a strength as great as this many visits: no say.
_SITE_VISITS: Final = 10
_SITE_FIT_SAMPLE: Final = 5_000
_MAX_SITE_STRENGTH: Final = 1_000.0
_MIN_USUAL_VISITS: Final = 8  # usual visits (planned ones) before sites' usual dwells are fitted


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
