"""What a customer's tracking link shows: this delivery only.

The vehicle's position is included only while the vehicle drives to this delivery's stop,
and only where it is clear of every stop of the route. All of these must hold:

* the route is started and tracked, and the delivery is out for delivery or arriving (so
  never once it is delivered, failed or cancelled);
* this stop is the one the vehicle drives to, as the route's :class:`~geofence.Approach`
  judges from its fixes: the nearest stop not yet reached, once the vehicle has closed in
  on it, and none while it stands at any stop. Not the first pending stop in planned order:
  drivers serve stops out of order, and the planned next stop's customer would see the van
  standing at the previous customer's door, or driving to another customer. Nothing
  declares the driver's next stop, so it is judged from movement, and when in doubt (just
  after a stop, driving away from every pending stop) nobody sees the vehicle;
* the position shown is clear of every stop of the route (outside each one's arrival circle
  widened by the departure margin), checked on the very position shown. The judgement is
  made by the live stage after the position is published (so it may be a batch behind the
  newest position) and, on a process that does not track the vehicle, read from Redis: a
  vehicle that has just reached another customer's stop, or stands again at one already
  served, is hidden by this check, not by the judgement.

Nothing about other stops, other deliveries or other customers is ever included.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from gateway.customer.pod import Proofs
from gateway.dispatch.lifecycle import ARRIVING, OUT_FOR_DELIVERY
from gateway.dispatch.records import STARTED, Window
from gateway.dispatch.store import DispatchStore
from gateway.fleet.state import Fleet
from gateway.live.tracking import LiveTracking

ETA_BEFORE_S: Final = 5 * 60.0  # the ETA window shown: this much before the ETA
ETA_AFTER_S: Final = 10 * 60.0  # ... and this much after
ETA_ROUND_S: Final = 5 * 60.0


def eta_window(eta: float) -> dict[str, float]:
    start = math.floor((eta - ETA_BEFORE_S) / ETA_ROUND_S) * ETA_ROUND_S
    end = math.ceil((eta + ETA_AFTER_S) / ETA_ROUND_S) * ETA_ROUND_S
    return {"start": start, "end": end}


RESCHEDULE_DAYS: Final = 3
RESCHEDULE_SLOTS: Final = ((9, 12), (13, 17), (17, 20))  # local hours


class CustomerViews:
    """Builds what a tracking link shows."""

    def __init__(
        self, dispatch: DispatchStore, fleet: Fleet, live: LiveTracking, proofs: Proofs
    ) -> None:
        self.dispatch = dispatch
        self.fleet = fleet
        self.live = live
        self.proofs = proofs

    async def reschedule_options(self, delivery_id: str) -> list[Window]:
        """Windows a customer may choose after a failed attempt: the next days' slots, in the
        recipient's time zone. Empty unless the delivery's last attempt failed."""
        d = await self.dispatch.get_delivery(delivery_id)
        if d is None or d.status != "failed":
            return []
        tz = ZoneInfo(d.recipient.timezone)
        today = datetime.now(tz).date()
        out = []
        for n in range(1, RESCHEDULE_DAYS + 1):
            day = today + timedelta(days=n)
            for start_h, end_h in RESCHEDULE_SLOTS:
                start = datetime(day.year, day.month, day.day, start_h, tzinfo=tz).timestamp()
                end = datetime(day.year, day.month, day.day, end_h, tzinfo=tz).timestamp()
                out.append(Window(start=start, end=end))
        return out

    async def view(self, delivery_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The customer's view of a delivery (None if it no longer exists), and the vehicle it
        shows (None: none)."""
        basis = await self.basis(delivery_id)
        if basis is None:
            return None, None
        return await self.compose(basis)

    async def basis(self, delivery_id: str) -> Basis | None:
        """What the view takes from Redis (the delivery, its route and stop, its proof):
        a stream reads it again when the delivery changes, not on every position."""
        store = self.dispatch
        d = await store.get_delivery(delivery_id)
        if d is None:
            return None
        route = None if d.route is None else await store.get_route(d.route)
        stop = None if route is None else next((s for s in route.stops if s.id == d.stop), None)
        view: dict[str, Any] = {
            "reference": d.external_id,
            "status": d.status,
            "kind": d.kind,
            "window": {"start": d.window.start, "end": d.window.end},
            "address": d.address,
            "destination": {"lat": d.location.lat, "lon": d.location.lon},
            "driver": route.driver.first_name if route is not None else None,
            "eta": None,
            "eta_window": None,
            "vehicle": None,
            "reason": d.reason if d.status == "failed" else None,
            "proof": None,
            "reschedule": None,
        }
        if d.status == "failed":
            options = await self.reschedule_options(delivery_id)
            view["reschedule"] = [{"start": w.start, "end": w.end} for w in options]
        if d.status == "delivered":
            pod = await self.proofs.load(delivery_id)
            if pod is not None:
                view["proof"] = {
                    "recipient_name": pod.recipient_name,
                    "ts": pod.ts,
                    "files": [{"sha256": f.sha256, "kind": f.kind} for f in pod.files],
                }
        live = (
            route is not None
            and stop is not None
            and route.status == STARTED
            and d.status in (OUT_FOR_DELIVERY, ARRIVING)
        )
        return Basis(
            view,
            route.id if live and route is not None else None,
            route.vehicle if live and route is not None else None,
            stop.id if live and stop is not None else None,
        )

    async def compose(self, basis: Basis) -> tuple[dict[str, Any], str | None]:
        """The view from ``basis`` and what this process knows now of the vehicle: its ETA
        and, while it drives to this stop clear of every other, its position."""
        view = dict(basis.view)
        vehicle, route_id, stop_id = basis.vehicle, basis.route, basis.stop
        if vehicle is None or route_id is None or stop_id is None:
            return view, None
        tracked = self.live.routes.get(vehicle)
        if tracked is None or tracked.route.id != route_id:
            return view, None
        eta = tracked.tracker.etas().get(stop_id)
        if eta is not None:
            view["eta"] = eta
            view["eta_window"] = eta_window(eta)
        if await self.live.heading_to(vehicle, route_id) != stop_id:
            return view, None
        state = self.fleet.vehicles.get(vehicle)
        if (
            state is None
            or math.isnan(state.lat)
            or not tracked.approach.clear(state.lat, state.lon)
        ):
            return view, None
        view["vehicle"] = {
            "lat": state.lat,
            "lon": state.lon,
            "heading": state.heading,
            "speed": state.speed,
            "ts": state.ts,
        }
        return view, vehicle


class Basis(NamedTuple):
    """The part of a customer's view read from Redis, and the route's vehicle and stop while
    the delivery is on its way (None otherwise)."""

    view: dict[str, Any]
    route: str | None
    vehicle: str | None
    stop: str | None
