"""REST API, the ops page and the browsers' live WebSocket (quart-trio on hypercorn).

Everything under ``/v1`` needs an agent API key (``Authorization: Bearer <key>`` or
``X-API-Key``), except what devices and customers use with their own tokens. Browsers cannot
set headers on a WebSocket, so the ops stream takes the key as ``?key=``.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
from quart import Response, jsonify, request, send_from_directory, websocket
from quart_trio import QuartTrio

from .dispatch_api import dispatch_blueprint
from .http_errors import ApiError, install_error_handlers, json_object
from .openapi import openapi_spec
from .state import public
from .store import DeviceExists, UnknownDevice
from .unavailable import GuardedQuartTrio, RedisGuard

if TYPE_CHECKING:
    from .app import Gateway

STATIC_DIR: Final = Path(__file__).parent / "static"
ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_TRACK_ROWS: Final = 50_000

_json: Final = msgspec.json.Encoder()


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


MAX_EPOCH_S: Final = 1e11  # about the year 5138: a later time is a mistake


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


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}", name)
    return value


def _valid_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ApiError(
            400, f"{field} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'", field
        )
    return value


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
        return jsonify(body)

    @app.get("/metrics")
    async def metrics() -> Any:
        return Response(gw.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    async def openapi() -> Any:
        return jsonify(openapi_spec(gw.settings.resolved_public_url(gw.http_port)))

    # ----- devices

    @app.post("/v1/devices")
    @agent
    async def create_device() -> Any:
        body = await json_object()
        dev_id = _valid_id(body.get("id"), "id")
        vehicle = _valid_id(body.get("vehicle", dev_id), "vehicle")
        name = body.get("name", dev_id)
        if not isinstance(name, str) or len(name) > 200:
            raise ApiError(400, "name must be a string of at most 200 characters", "name")
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
        since = time_arg("since", now - 3600)
        until = time_arg("until", now + gw.settings.future_tolerance_s)
        if until < since:
            raise ApiError(400, "until must not be before since", "until")
        limit = _int_arg("limit", 10_000, 1, MAX_TRACK_ROWS)
        rows = await gw.store.read_track(vid, since, until, limit, gw.settings.future_tolerance_s)
        positions = [{"device": device, **msgspec.to_builtins(p)} for device, p in rows]
        return jsonify({"vehicle": vid, "since": since, "until": until, "positions": positions})

    # ----- events

    @app.get("/v1/events")
    @agent
    async def list_events() -> Any:
        """The oldest ``limit`` events after ``after``, oldest first; with ``order=desc`` the
        newest ``limit`` (after ``after``), newest first."""
        after = request.args.get("after", "")
        if after and not re.match(r"^\d+-\d+$", after):
            raise ApiError(400, "after must be an event id such as 1700000000000-0", "after")
        limit = _int_arg("limit", 100, 1, 1000)
        order = request.args.get("order") or "asc"
        if order == "asc":
            events = await gw.store.read_events("(" + after if after else "-", limit)
        elif order == "desc":
            events = await gw.store.read_events_reverse(limit)
            if after:  # ids increase: those of the newest after it are the newest after it
                bound = tuple(map(int, after.split("-")))
                events = [e for e in events if tuple(map(int, e["id"].split("-"))) > bound]
        else:
            raise ApiError(400, "order must be asc (oldest first) or desc (newest first)", "order")
        etype = request.args.get("type")
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

    from .claims import claims_blueprint
    from .customer_api import customer_blueprint
    from .http_ingest import http_ingest_blueprint
    from .ops_api import ops_blueprint
    from .pod import pod_blueprint
    from .zones_api import zones_blueprint

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
