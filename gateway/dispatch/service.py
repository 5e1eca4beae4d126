"""Routes and deliveries as a service: validate, store, log the events, tell the listeners.

The gateway builds one :class:`Dispatch`; the live side uses:

- ``await dispatch.active_route(vehicle)`` and ``await dispatch.load_active_routes()``;
- :func:`~gateway.dispatch.records.to_geofence_route` to turn a record into a ``geofence.Route``;
- ``dispatch.on_route_changed.append(callback)``: ``callback(route_record)`` runs after an
  import, assignment, start or finish changed that route (synchronously, so keep it short:
  hand the record to a channel with ``send_nowait``);
- ``await dispatch.set_status(delivery_id, "arriving")`` and the like, which follow the
  delivery lifecycle exactly as the REST API does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.core.metrics import Metrics
from gateway.dispatch.plan import Changes
from gateway.dispatch.records import Driver, RouteRecord, Window, to_geofence_route
from gateway.dispatch.store import DispatchStore
from gateway.dispatch.validate import ImportedRoute, InvalidImport, parse_import
from notify.events import Event

log = logging.getLogger(__name__)

RouteListener = Callable[[RouteRecord], None]


class UnknownVehicle(InvalidImport):
    """A route names a vehicle the gateway does not know (HTTP 422)."""


class Dispatch:
    """Routes, stops and deliveries: every change stored atomically, then logged as events."""

    geofence_route = staticmethod(to_geofence_route)

    def __init__(
        self,
        store: DispatchStore,
        broadcast: Callable[[list[Event]], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.broadcast = broadcast
        self.metrics = metrics
        self.on_route_changed: list[RouteListener] = []

    # ----- for the live side

    async def active_route(self, vehicle: str) -> RouteRecord | None:
        return await self.store.active_route(vehicle)

    async def load_active_routes(self) -> list[RouteRecord]:
        return await self.store.load_active_routes()

    # ----- operations

    async def import_routes(self, body: Any, now: float | None = None) -> Changes:
        """Validate a whole ``{"routes": [...]}`` batch, check its vehicles, then store it."""
        now = time.time() if now is None else now
        batch = parse_import(body, now)
        await self._check_vehicles(batch)
        return await self._publish(await self.store.import_batch(batch, now))

    async def assign(
        self, route_id: str, vehicle: str | None, driver: Driver | None, now: float | None = None
    ) -> Changes:
        if vehicle is not None and not await self.store.known_vehicles([vehicle]):
            raise UnknownVehicle("vehicle", f"unknown vehicle {vehicle!r}")
        now = time.time() if now is None else now
        return await self._publish(await self.store.assign(route_id, vehicle, driver, now))

    async def start(self, route_id: str, now: float | None = None) -> Changes:
        now = time.time() if now is None else now
        return await self._publish(await self.store.start(route_id, now))

    async def set_status(
        self,
        delivery_id: str,
        status: str,
        *,
        reason: str | None = None,
        note: str | None = None,
        window: Window | None = None,
        now: float | None = None,
        records: Mapping[str, bytes] | None = None,
        events: Sequence[Event] = (),
    ) -> Changes:
        """Move a delivery along its lifecycle; ``records`` and ``events`` are stored in the
        same transaction (a proof of delivery with the delivery it completes)."""
        now = time.time() if now is None else now
        changes = await self.store.set_status(
            delivery_id,
            status,
            now,
            reason=reason,
            note=note,
            window=window,
            records=records,
            events=events,
        )
        return await self._publish(changes)

    async def _check_vehicles(self, batch: list[ImportedRoute]) -> None:
        known = await self.store.known_vehicles(imp.route.vehicle for imp in batch)
        for i, imp in enumerate(batch):
            if imp.route.vehicle not in known:
                raise UnknownVehicle(
                    f"routes[{i}].vehicle", f"unknown vehicle {imp.route.vehicle!r}"
                )

    async def _publish(self, changes: Changes) -> Changes:
        # The records and their events are written (one transaction); the listeners follow.
        if self.metrics is not None:
            for ev in changes.events:
                self.metrics.inc("gateway_events_total", type=ev.type)
        if self.broadcast is not None:
            self.broadcast(changes.events)
        for route in changes.routes.values():
            for listener in list(self.on_route_changed):
                try:
                    listener(route)
                except Exception:
                    # A broken listener must not turn a stored change into an API error.
                    log.exception("route listener failed for %s", route.id)
        return changes
