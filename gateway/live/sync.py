"""Zone and route changes from the API and the other processes, applied to the live stage.

Zones (:class:`ZoneSync`): every change made through any process reaches the engine through
the zone store's change feed; each time the feed is subscribed (at start, and again after a
lost connection) the engine's zones are made the ones Redis stores, so changes announced while
this process was not listening are not lost to it.

Routes (:class:`RouteSync`): a route change made through this process's API (dispatch calls
:meth:`RouteSync.route_changed`) is applied here and announced on ``routes:changed`` (origin,
route id), so every process holds every started route: each one tracks it once its vehicle's
fixes reach it. On subscribing again it applies every started route, and every route tracked
here, whose record is not the one installed. Changes are applied one at a time, from a task of
their own.
"""

from __future__ import annotations

import logging
import secrets
from functools import partial
from typing import Any, Final

import msgspec
import trio

from gateway.core.keys import ROUTES_CHANGED as ROUTES_CHANNEL
from gateway.core.pubsub import follow_channel
from gateway.dispatch.records import RouteRecord
from gateway.dispatch.service import Dispatch
from gateway.live.persistence import SavedState
from gateway.live.stage import TrackingStage
from gateway.zones.store import ZoneStore, decode_zone, feature_digest
from geofence import Zone
from notify.redis_client import RedisClient, publish

log = logging.getLogger(__name__)

ROUTE_CHANGES: Final = 10_000  # route changes waiting to be applied

_enc: Final = msgspec.msgpack.Encoder()
_route_change: Final = msgspec.msgpack.Decoder(tuple[str, str])


class ZoneSync:
    """Keeps ``stage``'s zones the ones ``zone_store`` holds."""

    def __init__(self, zone_store: ZoneStore, stage: TrackingStage) -> None:
        self.zone_store = zone_store
        self.stage = stage
        # Zone id -> fingerprint of the stored Feature the engine holds, for the zones loaded
        # from Redis as a whole: catching up decodes only the zones that differ.
        self._digests: dict[str, bytes] = {}

    def apply(self, zone_id: str, zone: Zone | None) -> None:
        """Set zone ``zone_id`` to ``zone`` (None: remove it)."""
        self._digests.pop(zone_id, None)
        self.stage.apply_zone(zone_id, zone)

    async def catch_up(self) -> None:
        """Make the engine's zones the ones stored in Redis: at start, and whenever the
        change feed is subscribed again (zones added, replaced or deleted meanwhile)."""
        stored = await self.zone_store.load_features()
        for zone in self.stage.engine.zones():
            if zone.id not in stored:
                self.apply(zone.id, None)
        for zone_id, raw in stored.items():
            digest = feature_digest(raw)
            if self._digests.get(zone_id) != digest:
                self.apply(zone_id, decode_zone(raw))
                self._digests[zone_id] = digest

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the zone changes; started once first subscribed (or failing to)."""
        await self.zone_store.follow_changes(
            self.apply, on_subscribed=self.catch_up, task_status=task_status
        )


class RouteSync:
    """Installs ``dispatch``'s started routes in ``stage`` and keeps them up to date across
    processes (announced over ``redis`` pub/sub)."""

    def __init__(
        self,
        stage: TrackingStage,
        saved: SavedState,
        dispatch: Dispatch,
        redis: RedisClient[Any],
    ) -> None:
        self.stage = stage
        self.saved = saved
        self.dispatch = dispatch
        self.redis = redis
        self.origin = secrets.token_hex(8)  # this process, in its announcements
        # Route changes to apply, and whether they were made here (then: announce them).
        self._send, self._recv = trio.open_memory_channel[tuple[RouteRecord, bool]](ROUTE_CHANGES)

    def route_changed(self, record: RouteRecord, local: bool = True) -> None:
        """Dispatch listener: apply the route's new state from the sync's own task."""
        try:
            self._send.send_nowait((record, local))
        except trio.WouldBlock:
            log.error("route change queue full; route %s not applied live", record.id)

    async def install(self, record: RouteRecord) -> None:
        """Track a started route on its vehicle; stop tracking it otherwise."""
        if not self.stage.drop_route(record):
            return
        deliveries = await self.dispatch.store.reader().deliveries(record.delivery_ids())
        held = self.stage.held_state(record)
        if held is None:  # new here, or tracked by another process lately: its saved state
            state, approach = await self.saved.route_state(record.vehicle)
        else:
            state, approach = held
        self.stage.install(record, deliveries.values(), state, approach)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the started routes, then apply the changes as they come; started once
        the routes are installed and the change feed first subscribed (or failing to)."""
        async with trio.open_nursery() as nursery:
            for record in await self.dispatch.load_active_routes():
                await self.install(record)
            nursery.start_soon(self._apply_changes)
            await nursery.start(
                partial(follow_channel, on_subscribed=self._catch_up),
                self.redis,
                ROUTES_CHANNEL,
                self._remote_route_changed,
            )
            task_status.started()

    async def _apply_changes(self) -> None:
        async for record, local in self._recv:
            try:
                await self.install(record)
            except Exception:
                log.exception("could not apply route %s live", record.id)
            if local:
                try:
                    await publish(self.redis, ROUTES_CHANNEL, _enc.encode((self.origin, record.id)))
                except Exception as exc:
                    log.warning("route change %s not announced: %s", record.id, exc)

    async def _remote_route_changed(self, data: bytes) -> None:
        """A route changed through another process: read it and apply it here too."""
        try:
            origin, route_id = _route_change.decode(data)
        except msgspec.DecodeError:
            return
        if origin == self.origin:
            return
        try:
            record = await self.dispatch.store.get_route(route_id)
        except Exception as exc:
            log.warning("changed route %s not read: %s", route_id, exc)
            return
        if record is not None:
            self.route_changed(record, local=False)

    async def _catch_up(self) -> None:
        """Apply the route changes announced while this process was not listening: every
        started route, and every route tracked here, whose record is not the one installed."""
        active = await self.dispatch.load_active_routes()
        started = {r.id for r in active}
        routes = self.stage.routes.values()
        others = [t.route.id for t in routes if t.route.id not in started]
        records = [*active, *(await self.dispatch.store.reader().routes(others)).values()]
        installed = {t.route.id: t.record for t in self.stage.routes.values()}
        for record in records:
            if installed.get(record.id) != record:
                await self._send.send((record, False))
