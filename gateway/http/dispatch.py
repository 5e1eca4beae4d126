"""REST API for routes, stops and deliveries, for the shipper's OMS, CRM or ERP.

``dispatch_blueprint`` serves the gateway's :class:`Dispatch`. Every endpoint needs the
agent API key. Errors are JSON ``{"error", "field"}``: 400 input not of the described type,
404 unknown id, 409 a change the current state does not allow (illegal transitions also
carry ``from`` and ``to``), 422 input of the described type that breaks a rule the
description cannot state (a window ending before it starts, an unknown vehicle...). Routes
and deliveries can be addressed by internal or external id. The input and output types are
in ``gateway.dispatch.models``.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from quart import Blueprint, jsonify, request

from gateway.dispatch.lifecycle import IllegalTransition, MissingReason
from gateway.dispatch.models import (
    ASSIGN_BODY,
    Assign,
    DeliveriesQuery,
    DeliveryChange,
    DeliveryList,
    ImportedId,
    ImportResult,
    RouteChange,
    RouteImport,
    RouteList,
    RoutesQuery,
    RouteSummary,
    StatusChange,
    TransitionError,
)
from gateway.dispatch.plan import Conflict
from gateway.dispatch.records import DeliveryRecord, RouteRecord, matches_query
from gateway.dispatch.records import route_id as internal_route_id
from gateway.dispatch.service import Dispatch, UnknownVehicle
from gateway.dispatch.store import Busy, NotFound
from gateway.dispatch.validate import InvalidImport, driver, typed, window
from gateway.http.common import AgentAuth
from gateway.http.errors import decode_json
from gateway.http.guard import RETRY_AFTER_S
from gateway.http.spec import Op, read_query

_ID: Final = {"id": "internal id, or the shipper's external id"}

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("PUT", "/v1/routes", "Bulk import routes (upsert by external id; all or nothing)",
       {200: ImportResult, 409: None, 422: None}, body=RouteImport),
    Op("GET", "/v1/routes", "List routes", {200: RouteList}, query=RoutesQuery),
    Op("GET", "/v1/routes/{id}", "One route with its stops",
       {200: RouteRecord, 404: None}, params=_ID),
    Op("POST", "/v1/routes/{id}/assign", "Change the vehicle and/or driver",
       {200: RouteChange, 404: None, 409: None, 422: None}, body=ASSIGN_BODY, params=_ID),
    Op("POST", "/v1/routes/{id}/start", "Start the route: its deliveries go out for delivery",
       {200: RouteChange, 404: None, 409: None}, params=_ID),
    Op("GET", "/v1/deliveries", "Search deliveries",
       {200: DeliveryList, 404: None}, query=DeliveriesQuery),
    Op("GET", "/v1/deliveries/{id}", "One delivery", {200: DeliveryRecord, 404: None},
       params=_ID),
    Op("POST", "/v1/deliveries/{id}/status", "Move a delivery along its lifecycle",
       {200: DeliveryChange, 404: None, 409: TransitionError, 422: None},
       body=StatusChange, params=_ID),
]  # fmt: skip


class _NotFound(Exception):
    pass


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"error": message, **extra}
    if field:
        body["field"] = field
    return jsonify(body), status


async def _body(kind: type[Any]) -> Any:
    return typed(kind, decode_json(await request.get_data(as_text=False)))


def _json(value: msgspec.Struct) -> Any:
    return jsonify(msgspec.to_builtins(value))


def dispatch_blueprint(dispatch: Dispatch, agent: AgentAuth) -> Blueprint:
    """The routes and deliveries API over ``dispatch``."""
    store = dispatch.store
    bp = Blueprint("dispatch", __name__)

    @bp.errorhandler(InvalidImport)
    async def _invalid(exc: InvalidImport) -> Any:
        status = 422 if isinstance(exc, UnknownVehicle) else exc.status
        return _error(status, exc.message, exc.field)

    @bp.errorhandler(MissingReason)
    async def _missing_reason(exc: MissingReason) -> Any:
        return _error(422, str(exc), "reason")

    @bp.errorhandler(IllegalTransition)
    async def _illegal(exc: IllegalTransition) -> Any:
        return _error(409, str(exc), "status", **{"from": exc.current, "to": exc.new})

    @bp.errorhandler(Conflict)
    async def _conflict(exc: Conflict) -> Any:
        return _error(409, exc.message, exc.field)

    @bp.errorhandler(_NotFound)
    async def _not_found(exc: _NotFound) -> Any:
        return _error(404, str(exc), "id")

    @bp.errorhandler(NotFound)
    async def _gone(exc: NotFound) -> Any:
        # Deleted between resolving the id and the transaction.
        return _error(404, f"no such record {exc}", "id")

    @bp.errorhandler(Busy)
    async def _busy(exc: Busy) -> Any:
        # The shape and header of every 503 (api_spec.Unavailable).
        body = {"error": "busy", "message": str(exc), "retry_after_s": RETRY_AFTER_S}
        return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_S)}

    async def route_id(ident: str) -> str:
        rid = await store.resolve_route(ident)
        if rid is None:
            raise _NotFound(f"no such route {ident}")
        return rid

    async def delivery_id(ident: str) -> str:
        did = await store.resolve_delivery(ident)
        if did is None:
            raise _NotFound(f"no such delivery {ident}")
        return did

    def route(path: str, method: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        def deco(fn: Callable[..., Awaitable[Any]]) -> Any:
            return bp.route(path, methods=[method])(agent(fn))

        return deco

    # ----- routes

    @route("/v1/routes", "PUT")
    async def import_routes() -> Any:
        body: RouteImport = await _body(RouteImport)
        ch = await dispatch.import_routes(body)
        count = collections.Counter(e.type for e in ch.events)
        ids = [r.external_id.strip() for r in body.routes]
        return _json(
            ImportResult(
                routes=[ImportedId(external_id=e, id=internal_route_id(e)) for e in ids],
                imported=count["route.imported"],
                updated=count["route.updated"],
                deliveries_created=count["delivery.created"],
                deliveries_updated=count["delivery.updated"],
                events=len(ch.events),
            )
        )

    @route("/v1/routes", "GET")
    async def list_routes() -> Any:
        q = read_query(RoutesQuery)
        day = None if isinstance(q.date, msgspec.UnsetType) else q.date.isoformat()
        routes = [
            r
            for r in await store.list_routes()
            if (day is None or r.date == day)
            and (isinstance(q.vehicle, msgspec.UnsetType) or r.vehicle == q.vehicle)
            and (isinstance(q.status, msgspec.UnsetType) or r.status == q.status)
        ]
        routes.sort(key=lambda r: (r.date, r.external_id))
        return _json(RouteList([RouteSummary.of(r) for r in routes[: q.limit]]))

    @route("/v1/routes/<ident>", "GET")
    async def get_route(ident: str) -> Any:
        rec = await store.get_route(await route_id(ident))
        if rec is None:
            raise _NotFound(f"no such route {ident}")
        return _json(rec)

    @route("/v1/routes/<ident>/assign", "POST")
    async def assign_route(ident: str) -> Any:
        rid = await route_id(ident)
        b: Assign = await _body(Assign)
        if isinstance(b.vehicle, msgspec.UnsetType) and isinstance(b.driver, msgspec.UnsetType):
            # The description's minProperties, which a Struct cannot enforce.
            raise InvalidImport("vehicle", "give a vehicle, a driver or both")
        veh = None if isinstance(b.vehicle, msgspec.UnsetType) else b.vehicle
        drv = None if isinstance(b.driver, msgspec.UnsetType) else driver(b.driver)
        ch = await dispatch.assign(rid, veh, drv)
        rec = ch.routes.get(rid) or await store.get_route(rid)
        if rec is None:
            raise _NotFound(f"no such route {ident}")
        return _json(RouteChange(rec, len(ch.events)))

    @route("/v1/routes/<ident>/start", "POST")
    async def start_route(ident: str) -> Any:
        rid = await route_id(ident)
        ch = await dispatch.start(rid)
        return _json(RouteChange(ch.routes[rid], len(ch.events)))

    # ----- deliveries

    @route("/v1/deliveries", "GET")
    async def list_deliveries() -> Any:
        q = read_query(DeliveriesQuery)
        rid = None if isinstance(q.route, msgspec.UnsetType) else await route_id(q.route)
        text = "" if isinstance(q.q, msgspec.UnsetType) else q.q
        found = [
            d
            for d in await store.list_deliveries(rid)
            if (isinstance(q.status, msgspec.UnsetType) or d.status == q.status)
            and matches_query(d, text)
        ]
        found.sort(key=lambda d: (d.window.start, d.external_id))
        return _json(DeliveryList(found[: q.limit], len(found)))

    @route("/v1/deliveries/<ident>", "GET")
    async def get_delivery(ident: str) -> Any:
        rec = await store.get_delivery(await delivery_id(ident))
        if rec is None:
            raise _NotFound(f"no such delivery {ident}")
        return _json(rec)

    @route("/v1/deliveries/<ident>/status", "POST")
    async def delivery_status(ident: str) -> Any:
        did = await delivery_id(ident)
        b: StatusChange = await _body(StatusChange)
        ch = await dispatch.set_status(
            did,
            b.status,
            reason=None if isinstance(b.reason, msgspec.UnsetType) else b.reason,
            note=None if isinstance(b.note, msgspec.UnsetType) else b.note.strip(),
            window=None if isinstance(b.window, msgspec.UnsetType) else window(b.window, "window"),
        )
        return _json(DeliveryChange(ch.deliveries[did], len(ch.events)))

    return bp
