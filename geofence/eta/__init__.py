"""ETA model: how fast the vehicle covers the rest of its route, and how long it stays at stops.

:mod:`~geofence.eta.speed`: :class:`SpeedModel` (its state a :class:`SpeedState`), the
vehicle's pace against the plan: driving time per planned second, old driving forgotten with a
half-life, blended with a prior ratio while little has been observed.

:mod:`~geofence.eta.dwell`: :class:`DwellShape`, dwell times as a usual dwell and, by chance, a
long one that adds an extra; :func:`remaining_dwell_s`, the median of what is left of a dwell
under way; :func:`is_long_dwell`, which of the two a finished dwell more likely was.

:mod:`~geofence.eta.prior`: :class:`EtaPrior`, what a route is taken to be like before it has
shown its own (pace and service ratios, how soon its own observations take over, the shape of
dwell times); configured, or learnt from the fleet.

:mod:`~geofence.eta.service`: :class:`ServiceModel`, each stop's expected service time, learnt
from the route's own dwells; :func:`estimate_arrivals`, arrival times at the remaining stops
from travel and service times.

:mod:`~geofence.eta.allowance`: :class:`AllowanceModel`, what to add to an ETA for the long
dwells that may come at the stops before it.

:mod:`~geofence.eta.learning`: :class:`FleetLearner`, which learns the prior from what the
fleet's routes showed (:class:`RouteObservations`) and remembers each stop location's dwells.

:mod:`~geofence.eta.sites`: :class:`SiteModel`, a stop location's own dwell shape from its
earlier visits, the locations keyed by :func:`site_key`.

:mod:`~geofence.eta.fit`: the fits behind the learner: the dwell mixture by
expectation-maximisation, the pace ratio, and how strongly a route is held to the fleet.

:class:`~geofence.RouteTracker` puts these together into a route's ETAs.
"""

from .allowance import AllowanceModel
from .dwell import DwellShape, remaining_dwell_s
from .learning import FleetLearner, RouteObservations
from .prior import EtaPrior
from .service import ServiceModel, estimate_arrivals
from .sites import SiteModel, site_key
from .speed import SpeedModel, SpeedState

__all__ = [
    "AllowanceModel",
    "DwellShape",
    "EtaPrior",
    "FleetLearner",
    "RouteObservations",
    "ServiceModel",
    "SiteModel",
    "SpeedModel",
    "SpeedState",
    "estimate_arrivals",
    "remaining_dwell_s",
    "site_key",
]
