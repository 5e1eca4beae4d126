"""REST API, the ops page and the browsers' live WebSocket (quart-trio on hypercorn).

Everything under ``/v1`` needs an agent API key (``Authorization: Bearer <key>`` or
``X-API-Key``), except what devices and customers use with their own tokens. Browsers cannot
set headers on a WebSocket, so the ops stream takes the key as ``?key=``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
from quart import Response, jsonify, request, send_from_directory, websocket
from quart_trio import QuartTrio

from gateway.core.fields import MAX_EPOCH_S
from gateway.fleet.state import VehicleState, public
from gateway.fleet.store import DeviceExists, UnknownDevice
from gateway.http.dispatch import dispatch_blueprint
from gateway.http.errors import ApiError, install_error_handlers
from gateway.http.guard import GuardedQuartTrio, RedisGuard
from gateway.http.models import Device as DeviceOut
from gateway.http.models import (
    DeviceCreate,
    DeviceList,
    Events,
    EventsQuery,
    Health,
    NewDevice,
    NewToken,
    Revoked,
    Track,
    TrackQuery,
    VehicleList,
)
from gateway.http.openapi import openapi_spec
from gateway.http.spec import Content, Op, merged, read_body, read_query

if TYPE_CHECKING:
    from gateway.app import Gateway

STATIC_DIR: Final = Path(__file__).parent / "static"

_json: Final = msgspec.json.Encoder()


_ID = {"id": "the device id"}
_VID = {"id": "the vehicle id"}

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("GET", "/healthz", "Liveness and Redis reachability",
       {200: Health, 503: Health}, public=True),
    Op("GET", "/metrics", "Prometheus metrics",
       {200: Content("text/plain", {"type": "string"}, "text exposition format")}, public=True),
    Op("GET", "/openapi.json", "This description",
       {200: Content("application/json", {"type": "object"}, "OpenAPI 3.1")}, public=True),
    Op("POST", "/v1/devices", "Register a device; returns its secret token once",
       {201: NewDevice, 409: None}, body=DeviceCreate),
    Op("GET", "/v1/devices", "List devices", {200: DeviceList}),
    Op("GET", "/v1/devices/{id}", "One device", {200: DeviceOut, 404: None}, params=_ID),
    Op("POST", "/v1/devices/{id}/token",
       "Issue a new token (the old one stops working; also un-revokes)",
       {200: NewToken, 404: None}, params=_ID),
    Op("POST", "/v1/devices/{id}/revoke", "Revoke the device's token and close its connections",
       {200: Revoked, 404: None}, params=_ID),
    Op("GET", "/v1/vehicles", "Latest state of every vehicle", {200: VehicleList}),
    Op("GET", "/v1/vehicles/{id}", "Latest state of one vehicle",
       {200: VehicleState, 404: None}, params=_VID),
    Op("GET", "/v1/vehicles/{id}/track", "Position history, oldest first",
       {200: Track}, params=_VID, query=TrackQuery),
    Op("GET", "/v1/events", "The event log, oldest first (order=desc: newest first)",
       {200: Events}, query=EventsQuery),
]  # fmt: skip


def finite_field(fields: Mapping[str, Any], name: str) -> float | None:
    """``fields[name]`` (query arguments or a form) as a finite number; None if absent.
    Anything else is a 400 naming the field."""
    raw = fields.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number", name) from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be finite", name)
    return value


def time_arg(name: str, default: float) -> float:
    """Query argument ``name`` as epoch seconds from 0 to ``MAX_EPOCH_S``; else a 400."""
    value = finite_field(request.args, name)
    if value is None:
        return default
    if not 0 <= value <= MAX_EPOCH_S:
        raise ApiError(400, f"{name} must be epoch seconds from 0 to {MAX_EPOCH_S:.0f}", name)
    return value


async def drain_browser() -> None:
    """Read a browser WebSocket until it closes: reading is how a closed browser is
    noticed; nothing it says is needed."""
    while True:
        await websocket.receive()


def agent_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, tok = auth.partition(" ")
    if scheme.lower() == "bearer" and tok:
        return tok.strip()
    return request.headers.get("X-API-Key")


def agent_required(
    gw: Gateway,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """A decorator refusing requests without a valid agent API key (401)."""

    def agent(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not gw.api_keys.check(agent_key()):
                return jsonify({"error": "missing or invalid API key"}), 401
            return await fn(*args, **kwargs)

        return wrapper

    return agent


def create_app(gw: Gateway) -> QuartTrio:
    app = GuardedQuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 2**20
    app.guard = RedisGuard(
        gw.redis, gw.metrics, gw.settings.api_redis_retry_s, app.add_background_task
    )

    install_error_handlers(app, gw.metrics)

    agent = agent_required(gw)
    gw.agent_auth = agent

    # ----- service endpoints

    @app.get("/healthz")
    async def healthz() -> Any:
        try:
            with trio.fail_after(2):
                await gw.redis.ping()
        except Exception as exc:
            return jsonify({"status": "degraded", "redis": str(exc)}), 503
        body: dict[str, Any] = {"status": "ok"}
        if gw.mqtt is not None:
            body["mqtt"] = "connected" if gw.mqtt.connected else "reconnecting"
        if gw.notifications is not None and gw.notifications.channels:
            body["notify"] = gw.notifications.channels
        return jsonify(body)

    @app.get("/metrics")
    async def metrics() -> Any:
        return Response(gw.metrics.render(), content_type="text/plain; version=0.0.4")

    all_ops: list[Op] = []  # every module's, once they are imported below

    @app.get("/openapi.json")
    async def openapi() -> Any:
        return jsonify(openapi_spec(gw.settings.resolved_public_url(gw.http_port), all_ops))

    # ----- devices

    @app.post("/v1/devices")
    @agent
    async def create_device() -> Any:
        body = await read_body(DeviceCreate)
        dev_id = body.id
        vehicle = body.vehicle or dev_id
        name = body.name if isinstance(body.name, str) else dev_id
        try:
            token = await gw.store.create_device(dev_id, vehicle, name)
        except DeviceExists:
            raise ApiError(409, f"device {dev_id} exists; rotate its token instead", "id") from None
        return jsonify({"id": dev_id, "vehicle": vehicle, "name": name, "token": token}), 201

    @app.get("/v1/devices")
    @agent
    async def list_devices() -> Any:
        return jsonify({"devices": [d.public() for d in await gw.store.list_devices()]})

    @app.get("/v1/devices/<dev_id>")
    @agent
    async def get_device(dev_id: str) -> Any:
        rec = await gw.store.get_device(dev_id)
        if rec is None:
            raise ApiError(404, "no such device")
        return jsonify(rec.public())

    @app.post("/v1/devices/<dev_id>/token")
    @agent
    async def rotate_token(dev_id: str) -> Any:
        try:
            token = await gw.store.rotate_token(dev_id)
        except UnknownDevice:
            raise ApiError(404, "no such device") from None
        gw.device_auth.forget_device(dev_id)
        return jsonify({"id": dev_id, "token": token})

    @app.post("/v1/devices/<dev_id>/revoke")
    @agent
    async def revoke_device(dev_id: str) -> Any:
        try:
            await gw.store.revoke_device(dev_id)
        except UnknownDevice:
            raise ApiError(404, "no such device") from None
        gw.device_revoked(dev_id)
        return jsonify({"id": dev_id, "revoked": True})

    # ----- vehicles

    @app.get("/v1/vehicles")
    @agent
    async def list_vehicles() -> Any:
        return jsonify({"vehicles": [public(s) for s in gw.fleet.vehicles.values()]})

    @app.get("/v1/vehicles/<vid>")
    @agent
    async def get_vehicle(vid: str) -> Any:
        s = gw.fleet.vehicles.get(vid)
        if s is None:
            raise ApiError(404, "no such vehicle")
        return jsonify(public(s))

    @app.get("/v1/vehicles/<vid>/track")
    @agent
    async def vehicle_track(vid: str) -> Any:
        now = time.time()
        q = read_query(TrackQuery)
        since = now - 3600 if isinstance(q.since, msgspec.UnsetType) else q.since
        until = (
            now + gw.settings.future_tolerance_s
            if isinstance(q.until, msgspec.UnsetType)
            else q.until
        )
        limit = q.limit
        rows = await gw.store.read_track(vid, since, until, limit, gw.settings.future_tolerance_s)
        positions = [{"device": device, **msgspec.to_builtins(p)} for device, p in rows]
        return jsonify({"vehicle": vid, "since": since, "until": until, "positions": positions})

    # ----- events

    @app.get("/v1/events")
    @agent
    async def list_events() -> Any:
        """The oldest ``limit`` events after ``after``, oldest first; with ``order=desc`` the
        newest ``limit`` (after ``after``), newest first."""
        q = read_query(EventsQuery)
        after = q.after or ""
        limit = q.limit
        order = q.order
        if order == "asc":
            events = await gw.store.read_events("(" + after if after else "-", limit)
        elif order == "desc":
            events = await gw.store.read_events_reverse(limit)
            if after:  # ids increase: those of the newest after it are the newest after it
                bound = tuple(map(int, after.split("-")))
                events = [e for e in events if tuple(map(int, e["id"].split("-"))) > bound]
        etype = q.type
        if etype:
            events = [e for e in events if e.get("type") == etype]
        return jsonify({"events": events})

    # ----- ops page and live stream

    @app.get("/")
    async def index() -> Any:
        return Response("", status=302, headers={"Location": "/ops"})

    @app.get("/ops")
    async def ops_page() -> Any:
        return await send_from_directory(STATIC_DIR, "ops.html")

    @app.get("/static/<path:name>")
    async def static_file(name: str) -> Any:
        return await send_from_directory(STATIC_DIR, name)

    @app.websocket("/v1/ops/live")
    async def ops_live() -> Any:
        if not gw.api_keys.check(websocket.args.get("key")):
            return Response("missing or invalid API key", status=401)
        await websocket.accept()
        sub = gw.hub.subscribe(None)
        try:
            await websocket.send(gw.ops_snapshot())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_browser)
                while True:
                    pending, extra, overflowed = await sub.next_batch()
                    if overflowed:
                        await websocket.send(gw.ops_snapshot())
                    elif pending:
                        frame = b'{"type":"positions","vehicles":[%s]}' % b",".join(
                            pending.values()
                        )
                        await websocket.send(frame.decode())
                        gw.metrics.inc("gateway_browser_messages_total")
                    for m in extra:
                        await websocket.send(m.decode())
                        gw.metrics.inc("gateway_browser_messages_total")
        finally:
            sub.close()

    from gateway.customer import claims, pod
    from gateway.customer.claims import claims_blueprint
    from gateway.customer.pod import pod_blueprint
    from gateway.http import customer as customer_api
    from gateway.http import devices as http_ingest
    from gateway.http import dispatch as dispatch_api
    from gateway.http import notify_ops
    from gateway.http import ops as ops_api
    from gateway.http import zones as zones_api
    from gateway.http.customer import customer_blueprint
    from gateway.http.devices import http_ingest_blueprint
    from gateway.http.ops import ops_blueprint
    from gateway.http.zones import zones_blueprint

    all_ops += merged(
        OPS, dispatch_api.OPS, zones_api.OPS, claims.OPS, customer_api.OPS, pod.OPS,
        http_ingest.OPS, ops_api.OPS, notify_ops.OPS,
    )  # fmt: skip

    app.register_blueprint(zones_blueprint(gw))
    app.register_blueprint(http_ingest_blueprint(gw))
    app.register_blueprint(dispatch_blueprint(gw))
    app.register_blueprint(customer_blueprint(gw))
    app.register_blueprint(pod_blueprint(gw))
    app.register_blueprint(ops_blueprint(gw))
    app.register_blueprint(claims_blueprint(gw))
    if gw.notifier is not None and gw.notifications is not None:
        from notify import create_blueprint as notify_blueprint

        app.register_blueprint(
            notify_blueprint(
                gw.notifier,
                twilio_auth_token=gw.notifications.twilio_auth_token,
                auth=agent,
                public_url=gw.settings.resolved_public_url(gw.http_port),
            )
        )
    return app
