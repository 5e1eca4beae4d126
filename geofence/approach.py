"""Which stop a vehicle on its route is driving to, judged from how it moves.

A :class:`~geofence.tracker.RouteTracker` knows which stops the vehicle reached and left, not
which one it drives to next: drivers serve stops out of planned order and tell nobody
beforehand. :class:`Approach` infers it from the fixes, and names no stop when in doubt:

* while the vehicle is at a stop (arrived at and not yet departed from), it drives to none;
* otherwise the candidate is the nearest pending stop. The vehicle drives to it once its
  distance to it has fallen ``closing_m`` below the farthest it was since the stop became
  the candidate (or since the vehicle last drew away from it), and until that distance
  rises ``retreat_m`` above the nearest it came since; it must then close in again;
* a fix that moves the candidate to another stop starts the judgement afresh, so right
  after leaving a stop, or while heading away from every pending stop, it names none.

The guess can be wrong in one way: a vehicle passing close to a pending stop on its way to
another is taken to drive to the first until it draws away from it. Whoever is shown the
vehicle because of it sees it on the road near their own stop. :meth:`Approach.clear` is the
guard against the worse mistake: it says whether a position is clear of every stop of the
route (farther from each than its arrival radius plus the departure margin, the tracker's
own bounds for being at a stop), so a vehicle shown only there is never shown at anyone's
door, whatever the guess and however late it is.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from .geo import haversine_m_array
from .routes import Route
from .tracker import ARRIVED, PENDING, RouteTracker, TrackerConfig

CLOSING_M: Final = 100.0  # closer by this much: driving to the stop
RETREAT_M: Final = 100.0  # farther again by this much: not any more


class Approach:
    """Follows one route's vehicle; :attr:`target` is the stop it drives to, if any. Fed
    through :meth:`update` after each fix the route's tracker took."""

    def __init__(
        self,
        route: Route,
        config: TrackerConfig,
        *,
        closing_m: float = CLOSING_M,
        retreat_m: float = RETREAT_M,
    ) -> None:
        self.route_id = route.id
        self.closing_m = closing_m
        self.retreat_m = retreat_m
        self._ids = [s.id for s in route.stops]
        self._lat = np.array([s.lat for s in route.stops])
        self._lon = np.array([s.lon for s in route.stops])
        self._guard = np.array(
            [(s.arrival_radius_m or config.arrival_radius_m) for s in route.stops]
        ) + float(config.departure_margin_m)
        self._poor_m = config.poor_accuracy_m
        self._candidate: int | None = None
        self._closing = False
        self._far_m = 0.0  # farthest from the candidate since it became one or was drawn away from
        self._near_m = 0.0  # nearest to it since the vehicle began closing in

    @property
    def target(self) -> str | None:
        """The stop the vehicle drives to, or None."""
        if self._candidate is None or not self._closing:
            return None
        return self._ids[self._candidate]

    def update(self, tracker: RouteTracker, accuracy_m: float | None = None) -> None:
        """Take the tracker's latest fix (of accuracy ``accuracy_m``) and stop statuses."""
        status = tracker.status
        last = tracker.last
        if last is None or bool((status == ARRIVED).any()):
            self._forget()
            return
        if accuracy_m is not None and accuracy_m > self._poor_m:
            return  # as for the tracker, a stray fix is not movement
        pending = np.flatnonzero(status == PENDING)
        if pending.size == 0:
            self._forget()
            return
        dist = haversine_m_array(last[1], last[2], self._lat[pending], self._lon[pending])
        j = int(np.argmin(dist))
        i, d = int(pending[j]), float(dist[j])
        if i != self._candidate:
            self._candidate, self._closing = i, False
            self._far_m = self._near_m = d
        elif self._closing:
            self._near_m = min(self._near_m, d)
            if d - self._near_m >= self.retreat_m:
                self._closing, self._far_m = False, d
        else:
            self._far_m = max(self._far_m, d)
            if self._far_m - d >= self.closing_m:
                self._closing, self._near_m = True, d

    def clear(self, lat: float, lon: float) -> bool:
        """Whether (``lat``, ``lon``) is clear of every stop of the route: outside each one's
        arrival circle widened by the departure margin."""
        dist = haversine_m_array(lat, lon, self._lat, self._lon)
        return bool((dist > self._guard).all())

    def _forget(self) -> None:
        self._candidate, self._closing = None, False

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """The judgement so far as JSON-ready data; ``target`` is :attr:`target`."""
        c = self._candidate
        return {
            "route_id": self.route_id,
            "candidate": None if c is None else self._ids[c],
            "closing": self._closing,
            "far_m": self._far_m,
            "near_m": self._near_m,
            "target": self.target,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """Carry on from :meth:`export_state` output; state of another route, or naming a
        stop this route does not have, is ignored (the judgement starts afresh)."""
        if not state or state.get("route_id") != self.route_id:
            return
        candidate = state.get("candidate")
        if candidate is None or candidate not in self._ids:
            return
        self._candidate = self._ids.index(candidate)
        self._closing = bool(state.get("closing"))
        self._far_m = float(state.get("far_m") or 0.0)
        self._near_m = float(state.get("near_m") or 0.0)

    @staticmethod
    def target_in(state: dict[str, Any] | None, route_id: str) -> str | None:
        """The stop an exported state says the vehicle of route ``route_id`` drives to."""
        if not state or state.get("route_id") != route_id:
            return None
        target = state.get("target")
        return target if isinstance(target, str) else None
