"""REST API for routes, stops and deliveries, for the shipper's OMS, CRM or ERP.

``dispatch_blueprint(gw)`` builds the blueprint and the gateway's :class:`Dispatch` (kept as
``gw.dispatch``). Every endpoint needs the agent API key. Errors are JSON
``{"error", "field"}``: 400 bad input, 404 unknown id, 409 a change the current state does
not allow (illegal transitions also carry ``from`` and ``to``), 422 an unknown vehicle.
Routes and deliveries can be addressed by internal or external id.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec
from quart import Blueprint, jsonify, request

from .api_spec import Op
from .dispatch import (
    ROUTE_STATUSES,
    DeliveryRecord,
    RouteRecord,
    matches_query,
)
from .dispatch import route_id as internal_route_id
from .dispatch_lifecycle import FAILURE_REASONS, STATUSES, IllegalTransition, MissingReason
from .dispatch_plan import Changes, Conflict
from .dispatch_service import Dispatch, UnknownVehicle
from .dispatch_store import Busy, DispatchStore, NotFound
from .dispatch_validate import MAX_NOTES_CHARS, InvalidImport, driver, obj, text, vehicle, window
from .http_errors import decode_json

if TYPE_CHECKING:
    from .app import Gateway

MAX_LIST: Final = 1_000
DEFAULT_LIST: Final = 100

# The operations of this module, for /openapi.json (still described by hand in
# openapi.py while this list is empty).
OPS: Final[list[Op]] = []


class _NotFound(Exception):
    pass


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"error": message, **extra}
    if field:
        body["field"] = field
    return jsonify(body), status


def _limit() -> int:
    raw = request.args.get("limit", "")
    if not raw:
        return DEFAULT_LIST
    try:
        value = int(raw)
    except ValueError:
        raise InvalidImport("limit", "must be an integer") from None
    if not 1 <= value <= MAX_LIST:
        raise InvalidImport("limit", f"must be between 1 and {MAX_LIST}")
    return value


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise InvalidImport(name, f"must be one of {', '.join(allowed)}")
    return value


async def _body() -> Any:
    body = decode_json(await request.get_data(as_text=False))
    if not isinstance(body, dict):
        raise InvalidImport("", "the body must be a JSON object")
    return body


def _route_json(r: RouteRecord) -> dict[str, Any]:
    return msgspec.to_builtins(r)


def _delivery_json(d: DeliveryRecord) -> dict[str, Any]:
    return msgspec.to_builtins(d)


def dispatch_blueprint(gw: Gateway) -> Blueprint:
    """The routes and deliveries API; also sets ``gw.dispatch``."""
    dispatch = Dispatch(
        DispatchStore(gw.redis),
        gw.store,
        gw.settings.events_max_len,
        metrics=gw.metrics,
    )
    # The Gateway class may or may not declare this attribute; setattr suits both.
    setattr(gw, "dispatch", dispatch)  # noqa: B010
    store = dispatch.store
    agent = gw.agent_auth
    if agent is None:
        raise RuntimeError("create_app sets gw.agent_auth before registering blueprints")
    bp = Blueprint("dispatch", __name__)

    @bp.errorhandler(InvalidImport)
    async def _invalid(exc: InvalidImport) -> Any:
        return _error(422 if isinstance(exc, UnknownVehicle) else 400, exc.message, exc.field)

    @bp.errorhandler(MissingReason)
    async def _missing_reason(exc: MissingReason) -> Any:
        return _error(400, str(exc), "reason")

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
        return _error(503, str(exc))

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

    def summary(ch: Changes) -> dict[str, Any]:
        return {"events": len(ch.events)}

    def route(path: str, method: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        def deco(fn: Callable[..., Awaitable[Any]]) -> Any:
            return bp.route(path, methods=[method])(agent(fn))

        return deco

    # ----- routes

    @route("/v1/routes", "PUT")
    async def import_routes() -> Any:
        body = await _body()
        ch = await dispatch.import_routes(body)
        count = collections.Counter(e["type"] for e in ch.events)
        ids = [r["external_id"].strip() for r in body["routes"]]
        return jsonify(
            {
                "routes": [{"external_id": e, "id": internal_route_id(e)} for e in ids],
                "imported": count["route.imported"],
                "updated": count["route.updated"],
                "deliveries_created": count["delivery.created"],
                "deliveries_updated": count["delivery.updated"],
                **summary(ch),
            }
        )

    @route("/v1/routes", "GET")
    async def list_routes() -> Any:
        day = request.args.get("date") or None
        veh = request.args.get("vehicle") or None
        status = _choice("status", ROUTE_STATUSES)
        routes = [
            r
            for r in await store.list_routes()
            if (day is None or r.date == day)
            and (veh is None or r.vehicle == veh)
            and (status is None or r.status == status)
        ]
        routes.sort(key=lambda r: (r.date, r.external_id))
        return jsonify({"routes": [r.summary() for r in routes[: _limit()]]})

    @route("/v1/routes/<ident>", "GET")
    async def get_route(ident: str) -> Any:
        rec = await store.get_route(await route_id(ident))
        if rec is None:
            raise _NotFound(f"no such route {ident}")
        return jsonify(_route_json(rec))

    @route("/v1/routes/<ident>/assign", "POST")
    async def assign_route(ident: str) -> Any:
        rid = await route_id(ident)
        b = obj(await _body(), "", (), ("vehicle", "driver"))
        veh = None if b.get("vehicle") is None else vehicle(b["vehicle"], "vehicle")
        drv = None if b.get("driver") is None else driver(b["driver"], "driver")
        if veh is None and drv is None:
            raise InvalidImport("vehicle", "give a vehicle, a driver or both")
        ch = await dispatch.assign(rid, veh, drv)
        rec = ch.routes.get(rid) or await store.get_route(rid)
        return jsonify({"route": None if rec is None else _route_json(rec), **summary(ch)})

    @route("/v1/routes/<ident>/start", "POST")
    async def start_route(ident: str) -> Any:
        rid = await route_id(ident)
        ch = await dispatch.start(rid)
        return jsonify({"route": _route_json(ch.routes[rid]), **summary(ch)})

    # ----- deliveries

    @route("/v1/deliveries", "GET")
    async def list_deliveries() -> Any:
        rid = None
        if ident := request.args.get("route"):
            rid = await route_id(ident)
        status = _choice("status", STATUSES)
        q = request.args.get("q", "")
        found = [
            d
            for d in await store.list_deliveries(rid)
            if (status is None or d.status == status) and matches_query(d, q)
        ]
        found.sort(key=lambda d: (d.window.start, d.external_id))
        limit = _limit()
        return jsonify(
            {"deliveries": [_delivery_json(d) for d in found[:limit]], "total": len(found)}
        )

    @route("/v1/deliveries/<ident>", "GET")
    async def get_delivery(ident: str) -> Any:
        rec = await store.get_delivery(await delivery_id(ident))
        if rec is None:
            raise _NotFound(f"no such delivery {ident}")
        return jsonify(_delivery_json(rec))

    @route("/v1/deliveries/<ident>/status", "POST")
    async def delivery_status(ident: str) -> Any:
        did = await delivery_id(ident)
        b = obj(await _body(), "", ("status",), ("reason", "note", "window"))
        status = b["status"]
        if status not in STATUSES:
            raise InvalidImport("status", f"must be one of {', '.join(STATUSES)}")
        reason = b.get("reason")
        if reason is not None and reason not in FAILURE_REASONS:
            raise InvalidImport("reason", f"must be one of {', '.join(FAILURE_REASONS)}")
        note = b.get("note")
        if note is not None:
            note = text(note, "note", MAX_NOTES_CHARS, empty_ok=True)
        win = None if b.get("window") is None else window(b["window"], "window")
        ch = await dispatch.set_status(did, status, reason=reason, note=note, window=win)
        return jsonify({"delivery": _delivery_json(ch.deliveries[did]), **summary(ch)})

    return bp
