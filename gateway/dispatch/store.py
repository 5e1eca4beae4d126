"""Redis storage of routes and deliveries, each change one optimistic MULTI/EXEC.

Every write operation reads what it needs under ``WATCH``, computes the change with the pure
functions of :mod:`gateway.dispatch.plan`, and writes it in one MULTI/EXEC; if a watched key
changed meanwhile, it starts again. A half-imported batch is therefore never visible.

One change can touch many routes, deliveries and vehicles, so every key here carries the
one hash tag ``{dispatch}``: on a Redis Cluster they all live in one slot, where WATCH and
MULTI/EXEC work. Routes and deliveries change orders of magnitude less often than positions
arrive, so one slot is not a bottleneck.

Keys:

==================================  ======  ===========================================
``route:{dispatch}:<id>``           string  JSON :class:`~gateway.dispatch.records.RouteRecord`
``route:{dispatch}:<id>:dlv``       set     the route's delivery ids
``dlv:{dispatch}:<id>``             string  JSON :class:`~gateway.dispatch.records.DeliveryRecord`
``vehroute:{dispatch}:<vehicle>``   string  the vehicle's active (started) route id
``routes:{dispatch}``               set     every route id
``routes:{dispatch}:active``        set     started route ids
``routes:{dispatch}:ext``           hash    external id -> route id
``deliveries:{dispatch}``           set     every delivery id
``deliveries:{dispatch}:ext``       hash    external id -> delivery id
==================================  ======  ===========================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final

import coredis
from coredis.patterns.pipeline import ClusterPipeline, Pipeline

from gateway.core import keys
from gateway.core.events import EventLog
from gateway.core.keys import (
    DELIVERIES,
    DELIVERIES_EXT,
    ROUTES,
    ROUTES_ACTIVE,
    ROUTES_EXT,
    route_deliveries_key,
    route_key,
    vehroute_key,
)
from gateway.dispatch.plan import Changes, assign_route, change_status, merge_import, start_route
from gateway.dispatch.records import (
    STARTED,
    DeliveryRecord,
    Driver,
    RouteRecord,
    Window,
    decode_delivery,
    decode_route,
    encode,
)
from gateway.dispatch.validate import ImportedRoute
from gateway.fleet.store import text as _text
from notify.deliveries import delivery_key
from notify.events import Event
from notify.redis_client import RedisClient

MAX_ATTEMPTS: Final = 20  # optimistic retries when other writers keep changing the same keys
READ_CHUNK: Final = 500  # keys per pipelined read


class NotFound(LookupError):
    """No route or delivery with that id."""


class Busy(Exception):
    """Other writers kept changing the same records; the caller may retry."""


class _Reader:
    """Reads records and remembers their keys, so the transaction can watch them."""

    def __init__(self, redis: RedisClient[bytes]) -> None:
        self.redis = redis
        self.keys: set[str] = set()

    async def _get(self, ks: list[str]) -> list[bytes | None]:
        self.keys.update(ks)
        out: list[bytes | None] = []
        for i in range(0, len(ks), READ_CHUNK):
            async with self.redis.pipeline(transaction=False) as p:
                reqs = [p.get(k) for k in ks[i : i + READ_CHUNK]]
            out.extend([await r for r in reqs])
        return out

    async def routes(self, ids: Iterable[str]) -> dict[str, RouteRecord]:
        ids = sorted(set(ids))
        raws = await self._get([route_key(i) for i in ids])
        return {i: decode_route(r) for i, r in zip(ids, raws, strict=True) if r is not None}

    async def deliveries(self, ids: Iterable[str]) -> dict[str, DeliveryRecord]:
        ids = sorted(set(ids))
        raws = await self._get([delivery_key(i) for i in ids])
        return {i: decode_delivery(r) for i, r in zip(ids, raws, strict=True) if r is not None}

    async def vehroutes(self, vehicles: Iterable[str]) -> dict[str, str | None]:
        vs = sorted(set(vehicles))
        raws = await self._get([vehroute_key(v) for v in vs])
        return {v: None if r is None else _text(r) for v, r in zip(vs, raws, strict=True)}


class _Rewatch(Exception):
    pass


class DispatchStore:
    """Routes and deliveries in Redis."""

    def __init__(self, redis: RedisClient[bytes], events: EventLog) -> None:
        self.redis = redis
        self.events = events

    # ----- reads

    def reader(self) -> _Reader:
        return _Reader(self.redis)

    async def get_route(self, route_id: str) -> RouteRecord | None:
        return (await self.reader().routes([route_id])).get(route_id)

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        return (await self.reader().deliveries([delivery_id])).get(delivery_id)

    async def resolve_route(self, ident: str) -> str | None:
        """The internal id of the route with internal or external id ``ident``."""
        if await self.redis.exists([route_key(ident)]):
            return ident
        rid = await self.redis.hget(ROUTES_EXT, ident)
        return None if rid is None else _text(rid)

    async def resolve_delivery(self, ident: str) -> str | None:
        """The internal id of the delivery with internal or external id ``ident``."""
        if await self.redis.exists([delivery_key(ident)]):
            return ident
        did = await self.redis.hget(DELIVERIES_EXT, ident)
        return None if did is None else _text(did)

    async def list_routes(self) -> list[RouteRecord]:
        ids = [_text(m) for m in await self.redis.smembers(ROUTES)]
        return list((await self.reader().routes(ids)).values())

    async def list_deliveries(self, route_id: str | None = None) -> list[DeliveryRecord]:
        """Every delivery, or those on one route."""
        key = DELIVERIES if route_id is None else route_deliveries_key(route_id)
        ids = [_text(m) for m in await self.redis.smembers(key)]
        return list((await self.reader().deliveries(ids)).values())

    async def known_vehicles(self, vehicles: Iterable[str]) -> set[str]:
        vs = sorted(set(vehicles))
        if not vs:
            return set()
        found = await self.redis.smismember(keys.VEHICLES, vs)
        return {v for v, ok in zip(vs, found, strict=True) if ok}

    async def active_route(self, vehicle: str) -> RouteRecord | None:
        """The started route of ``vehicle``, if it has one."""
        rid = (await self.reader().vehroutes([vehicle]))[vehicle]
        if rid is None:
            return None
        route = await self.get_route(rid)
        return route if route is not None and route.status == STARTED else None

    async def load_active_routes(self) -> list[RouteRecord]:
        """Every started route (for live trackers starting up)."""
        ids = [_text(m) for m in await self.redis.smembers(ROUTES_ACTIVE)]
        routes = await self.reader().routes(ids)
        return sorted((r for r in routes.values() if r.status == STARTED), key=lambda r: r.id)

    # ----- writes

    async def import_batch(self, batch: list[ImportedRoute], now: float) -> Changes:
        async def compute(rd: _Reader) -> Changes:
            routes = await rd.routes(imp.route.id for imp in batch)
            dids = {d.id for imp in batch for d in imp.deliveries}
            dids.update(d for r in routes.values() for d in r.delivery_ids())
            deliveries = await rd.deliveries(dids)
            elsewhere = {d.route for d in deliveries.values() if d.route and d.route not in routes}
            routes.update(await rd.routes(elsewhere))
            vehicles = {imp.route.vehicle for imp in batch} | {r.vehicle for r in routes.values()}
            return merge_import(batch, routes, deliveries, await rd.vehroutes(vehicles), now)

        return await self._transact(compute)

    async def assign(
        self, route_id: str, vehicle: str | None, driver: Driver | None, now: float
    ) -> Changes:
        async def compute(rd: _Reader) -> Changes:
            route = (await rd.routes([route_id])).get(route_id)
            if route is None:
                raise NotFound(route_id)
            vehicles = [route.vehicle] + ([vehicle] if vehicle else [])
            return assign_route(route, vehicle, driver, await rd.vehroutes(vehicles), now)

        return await self._transact(compute)

    async def start(self, route_id: str, now: float) -> Changes:
        async def compute(rd: _Reader) -> Changes:
            route = (await rd.routes([route_id])).get(route_id)
            if route is None:
                raise NotFound(route_id)
            deliveries = await rd.deliveries(route.delivery_ids())
            return start_route(route, deliveries, await rd.vehroutes([route.vehicle]), now)

        return await self._transact(compute)

    async def set_status(
        self,
        delivery_id: str,
        status: str,
        now: float,
        *,
        reason: str | None = None,
        note: str | None = None,
        window: Window | None = None,
        records: Mapping[str, bytes] | None = None,
        events: Sequence[Event] = (),
        announce: bool = True,
    ) -> Changes:
        """Move a delivery along its lifecycle; ``records`` and ``events`` (a proof of
        delivery and its events) are written in the same transaction, after the change's own
        events. ``announce=False``: the change's own events are not logged (the caller logs
        one of its own that stands for them: the live stage's ``delivery.arriving``)."""

        async def compute(rd: _Reader) -> Changes:
            d = (await rd.deliveries([delivery_id])).get(delivery_id)
            if d is None:
                raise NotFound(delivery_id)
            route = None if d.route is None else (await rd.routes([d.route])).get(d.route)
            siblings: dict[str, DeliveryRecord] = {}
            vehroute = None
            if route is not None:
                siblings = await rd.deliveries(route.delivery_ids())
                vehroute = (await rd.vehroutes([route.vehicle]))[route.vehicle]
            changes = change_status(
                d, route, siblings, vehroute, status, now, reason=reason, note=note, window=window
            )
            if not announce:
                changes.events.clear()
            changes.records.update(records or {})
            changes.events.extend(events)
            return changes

        return await self._transact(compute)

    async def _transact(self, compute: Callable[[_Reader], Awaitable[Changes]]) -> Changes:
        """Run ``compute`` on records read under WATCH and write its changes atomically.

        The first pass learns which keys ``compute`` reads; later passes watch them. A pass
        that reads a key it did not watch (the records pointed somewhere new) goes again.
        """
        watched: set[str] = set()
        for _ in range(MAX_ATTEMPTS):
            rd = self.reader()
            try:
                if not watched:
                    await compute(rd)
                    raise _Rewatch
                async with (
                    self.redis.pipeline(transaction=True) as pipe,
                    pipe.watch(*sorted(watched)),
                ):
                    changes = await compute(rd)
                    if not rd.keys <= watched:
                        raise _Rewatch
                    _queue(pipe, changes)
                    self.events.queue(pipe, changes.events)
            except _Rewatch:
                watched |= rd.keys
                continue
            except coredis.exceptions.WatchError:
                continue
            return changes
        raise Busy("the records kept changing; retry")


def _queue(pipe: Pipeline[bytes] | ClusterPipeline[bytes], ch: Changes) -> None:
    for r in ch.routes.values():
        pipe.set(route_key(r.id), encode(r))
        members = route_deliveries_key(r.id)
        pipe.delete([members])
        if ids := r.delivery_ids():
            pipe.sadd(members, ids)
        pipe.sadd(ROUTES, [r.id])
        pipe.hset(ROUTES_EXT, {r.external_id: r.id})
        if r.status == STARTED:
            pipe.sadd(ROUTES_ACTIVE, [r.id])
        else:
            pipe.srem(ROUTES_ACTIVE, [r.id])
    for d in ch.deliveries.values():
        pipe.set(delivery_key(d.id), encode(d))
        pipe.sadd(DELIVERIES, [d.id])
        pipe.hset(DELIVERIES_EXT, {d.external_id: d.id})
    for key, value in ch.records.items():
        pipe.set(key, value)
    for vehicle, rid in ch.vehroutes.items():
        if rid is None:
            pipe.delete([vehroute_key(vehicle)])
        else:
            pipe.set(vehroute_key(vehicle), rid)
