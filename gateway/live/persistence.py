"""The live stage's state in Redis, so a restart or another process carries on from it.

Each vehicle's hash (through :class:`~gateway.fleet.store.Store`) holds, as JSON, its zone
memberships (field ``geo``), its route tracker's state (``trk``) and its route's
:class:`~geofence.Approach` state (``next``: the stop it drives to, which the other processes'
customer pages read). :class:`SavedState` saves the vehicles that changed every few seconds
(``save_changed``) and a tracker that emitted events at once (``save_emitted``), so a process
taking the vehicle over, or this one after a crash, does not announce them again; it loads the
memberships at start, a route's states when it is installed, and, before a process tracks
fixes of a vehicle another process was tracking, that process's saved states (``take_over``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from gateway.core.metrics import Metrics
from gateway.fleet.store import Store
from gateway.live.stage import Groups, TrackedRoute, TrackingStage
from geofence.engine import STATE_VERSION as ENGINE_STATE_VERSION

log = logging.getLogger(__name__)

GEO_FIELD: Final = "geo"  # in a vehicle's hash: its zone memberships, JSON
TRACKER_FIELD: Final = "trk"  # its route tracker's state, JSON
APPROACH_FIELD: Final = "next"  # its route's Approach state, JSON
SAVE_SLICE: Final = 200  # vehicles saved in one round trip

_json: Final = msgspec.json.Encoder()


def _route_fields(tracked: TrackedRoute) -> dict[str, bytes]:
    """A tracked route's state as saved in its vehicle's hash."""
    return {
        TRACKER_FIELD: _json.encode(tracked.tracker.export_state()),
        APPROACH_FIELD: _json.encode(tracked.approach.export_state()),
    }


def _decoded(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else msgspec.json.decode(raw)


class SavedState:
    """Saves and loads ``stage``'s per-vehicle state in ``store``."""

    def __init__(self, store: Store, stage: TrackingStage, metrics: Metrics) -> None:
        self.store = store
        self.stage = stage
        self.metrics = metrics

    async def save_emitted(self) -> None:
        """Save at once the trackers that just emitted events, so a process taking over the
        vehicle (or this one after a crash) does not announce them again."""
        vehicles = self.stage.take_save_now()
        if not vehicles:
            return
        routes = self.stage.routes
        try:
            await self.store.save_live_state(
                {v: _route_fields(routes[v]) for v in vehicles if v in routes}
            )
        except Exception as exc:
            log.warning("could not save %d route trackers: %s", len(vehicles), exc)

    async def save_changed(self) -> None:
        """Save the state of every vehicle that changed since the last call (raises on a
        failure: those vehicles are saved again only once they change again)."""
        dirty = list(self.stage.take_dirty())
        # In slices, each its own round trip: the stage's other work (and every other task
        # of the process) runs between them, so saving a fleet never stalls them for long.
        for first in range(0, len(dirty), SAVE_SLICE):
            chunk = dirty[first : first + SAVE_SLICE]
            geo = self.stage.engine.export_state(chunk)["vehicles"]
            states: dict[str, dict[str, bytes]] = {}
            for v in chunk:
                fields: dict[str, bytes] = {}
                if v in geo:
                    fields[GEO_FIELD] = _json.encode(geo[v])
                tracked = self.stage.routes.get(v)
                if tracked is not None:
                    fields.update(_route_fields(tracked))
                if fields:
                    states[v] = fields
            await self.store.save_live_state(states)

    async def load_memberships(self, vehicles: Sequence[str]) -> None:
        """Each vehicle's saved zone memberships, into the engine (its zones set first)."""
        raw = await self.store.load_live_state(vehicles, GEO_FIELD)
        saved = {v: msgspec.json.decode(blob) for v, blob in raw.items()}
        if saved:
            self.stage.engine.import_state({"version": ENGINE_STATE_VERSION, "vehicles": saved})

    async def route_state(
        self, vehicle: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The tracker and approach states last saved for ``vehicle``'s route."""
        raw = await self.store.load_live_fields(vehicle, (TRACKER_FIELD, APPROACH_FIELD))
        return _decoded(raw.get(TRACKER_FIELD)), _decoded(raw.get(APPROACH_FIELD))

    async def approach_state(self, vehicle: str) -> dict[str, Any] | None:
        """The approach state last saved for ``vehicle``'s route."""
        raw = await self.store.load_live_fields(vehicle, (APPROACH_FIELD,))
        return _decoded(raw.get(APPROACH_FIELD))

    async def take_over(self, groups: Groups) -> None:
        """Before this process tracks fixes of a vehicle another process was tracking, load
        the tracker state that process saved."""
        for tracked in self.stage.take_over(groups):
            vehicle = tracked.route.vehicle_id
            try:
                raw = await self.store.load_live_fields(vehicle, (TRACKER_FIELD, APPROACH_FIELD))
                state = _decoded(raw.get(TRACKER_FIELD))
            except Exception as exc:
                log.warning("tracker state of %s not loaded: %s", vehicle, exc)
                continue
            if state is None:
                continue
            try:
                approach = _decoded(raw.get(APPROACH_FIELD))
            except Exception as exc:
                # It judges afresh: the customer waits for the vehicle to close in again.
                log.warning("approach state of %s not loaded: %s", vehicle, exc)
                approach = None
            if self.stage.restore(tracked, state, approach):
                self.metrics.inc("gateway_route_takeovers_total")
