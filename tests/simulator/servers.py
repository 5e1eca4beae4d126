"""Small real servers speaking the gateway's device contract, for the simulator's tests.

``IngestServer`` is a trio-websocket handler that stores positions per device, acks the highest
seq, rejects chosen seqs and can drop a connection after a given frame without acking it.
``make_api`` is a quart-trio app with the device registration endpoints and, answering like the
gateway's routes and deliveries API, ``PUT /v1/routes``, ``POST /v1/routes/{id}/start``,
``GET /v1/routes``, ``GET /v1/deliveries``, ``POST /v1/deliveries/{id}/status``,
``POST /v1/deliveries/{id}/pod`` (multipart, the vehicle's device token or the agent key) and
``POST /v1/deliveries/{id}/link``, recording each call in a :class:`RoutesApi`.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
from quart import request
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, WebSocketRequest

API_KEY = "test-key"


@dataclass
class Device:
    token: str
    highest: int = 0
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class IngestServer:
    """Ingest endpoint double: one ``Device`` per token."""

    devices: dict[str, Device] = field(default_factory=dict)  # by device id
    reject: dict[int, str] = field(default_factory=dict)  # seq -> reason, for every device
    drop_after_frame: int | None = None  # close without acking the n-th frame (1-based, total)
    drop_code: int = 1011
    frames: list[tuple[int, str, Any]] = field(default_factory=list)  # (conn no, device, body)
    connections: int = 0
    refused: int = 0
    received: int = 0  # frames, all connections
    rejections: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, device_id: str, token: str) -> Device:
        self.devices[device_id] = Device(token)
        return self.devices[device_id]

    def _device_for(self, req: WebSocketRequest) -> tuple[str, Device] | None:
        headers = {k.lower(): v for k, v in req.headers}
        auth = headers.get(b"authorization", b"").decode()
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is None and "token=" in req.path:
            token = req.path.split("token=", 1)[1].split("&")[0]
        for device_id, dev in self.devices.items():
            if token is not None and dev.token == token:
                return device_id, dev
        return None

    async def handler(self, req: WebSocketRequest) -> None:
        found = self._device_for(req)
        if found is None:
            self.refused += 1
            await req.reject(401, body=b"unknown or revoked token")
            return
        device_id, dev = found
        ws = await req.accept()
        self.connections += 1
        conn = self.connections
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            binary = isinstance(message, bytes)
            body = (
                msgspec.msgpack.decode(message)
                if isinstance(message, bytes)
                else msgspec.json.decode(message)
            )
            self.frames.append((conn, device_id, body))
            self.received += 1
            rejected = []
            for item in body if isinstance(body, list) else [body]:
                seq = item["seq"]
                if seq <= dev.highest or seq in dev.stored:
                    reason = "duplicate"
                elif seq in self.reject:
                    reason = self.reject[seq]
                else:
                    dev.stored[seq] = item
                    dev.highest = seq
                    continue
                self.rejections[reason] += 1
                rejected.append({"seq": seq, "reason": reason})
            if self.drop_after_frame == self.received:
                await ws.aclose(self.drop_code, "test drop")
                return
            reply = {"type": "ack", "seq": dev.highest, "rejected": rejected}
            enc = msgspec.msgpack.encode(reply) if binary else msgspec.json.encode(reply).decode()
            try:
                await ws.send_message(enc)
            except ConnectionClosed:
                return


OPEN = ("scheduled", "out_for_delivery", "arriving")
NEXT = {
    "scheduled": {"out_for_delivery", "cancelled"},
    "out_for_delivery": {"arriving", "delivered", "failed", "cancelled"},
    "arriving": {"delivered", "failed", "cancelled"},
}
REASONS = ("nobody_home", "no_access", "refused", "damaged", "address_not_found", "other")


@dataclass
class RoutesApi:
    """State of the routes double; ``fail`` holds HTTP codes to answer first, per method+path
    prefix (e.g. ``{"POST /v1/deliveries": [503, 503]}``)."""

    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # by external id
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)  # by external id
    active: dict[str, str] = field(default_factory=dict)  # vehicle -> route external id
    calls: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, body
    # Proofs by delivery: the form fields, the files as (field, bytes), and who sent them.
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)

    def injected(self, method: str, path: str) -> int | None:
        for prefix, codes in self.fail.items():
            if f"{method} {path}".startswith(prefix) and codes:
                return codes.pop(0)
        return None

    def seen(self, method: str, prefix: str) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] == method and c[1].startswith(prefix)]

    def add_started(self, vehicle: str, external_id: str, deliveries: int) -> None:
        """A route left started by someone else (or an earlier run)."""
        ids = [f"{external_id}-D{k}" for k in range(deliveries)]
        self.routes[external_id] = {"status": "started", "vehicle": vehicle, "deliveries": ids}
        for d in ids:
            self.deliveries[d] = {"id": d, "route": external_id, "status": "out_for_delivery"}
        self.active[vehicle] = external_id

    def _finish_if_done(self, route: str) -> None:
        rec = self.routes[route]
        if rec["status"] == "started" and all(
            self.deliveries[d]["status"] not in OPEN for d in rec["deliveries"]
        ):
            rec["status"] = "finished"
            self.active.pop(rec["vehicle"], None)


def _err(status: int, message: str, field_name: str | None = None, **extra: Any) -> Any:
    body = {"error": message, **extra}
    if field_name:
        body["field"] = field_name
    return body, status


def _routes_endpoints(app: QuartTrio, api: RoutesApi) -> None:
    def authorised() -> bool:
        return request.headers.get("Authorization") == f"Bearer {API_KEY}"

    async def begin() -> tuple[Any, Any]:
        body = await request.get_json(silent=True)
        api.calls.append((request.method, request.path, body))
        if not authorised():
            return body, _err(401, "unauthorised")
        code = api.injected(request.method, request.path)
        if code is not None:
            return body, _err(code, "injected failure")
        return body, None

    @app.put("/v1/routes")
    async def import_routes() -> Any:
        body, refused = await begin()
        if refused:
            return refused
        for i, r in enumerate(body["routes"]):
            if r["vehicle"] not in app.config["ingest"].devices:
                return _err(422, f"unknown vehicle {r['vehicle']!r}", f"routes[{i}].vehicle")
        for r in body["routes"]:
            ext = r["external_id"]
            ids = [d["external_id"] for s in r["stops"] for d in s["deliveries"]]
            old = api.routes.get(ext, {"status": "planned"})
            api.routes[ext] = {"status": old["status"], "vehicle": r["vehicle"],
                               "deliveries": ids, "payload": r}  # fmt: skip
            for d in ids:
                api.deliveries.setdefault(d, {"id": d, "route": ext, "status": "scheduled"})
        return {"routes": [{"external_id": r["external_id"]} for r in body["routes"]],
                "imported": len(body["routes"])}  # fmt: skip

    @app.post("/v1/routes/<ident>/start")
    async def start(ident: str) -> Any:
        _, refused = await begin()
        if refused:
            return refused
        rec = api.routes.get(ident)
        if rec is None:
            return _err(404, f"no such route {ident}", "id")
        if rec["status"] != "planned":
            return _err(409, f"route {ident} is already {rec['status']}", "id")
        other = api.active.get(rec["vehicle"])
        if other is not None and other != ident:
            return _err(409, f"vehicle {rec['vehicle']} is still on route {other}", "vehicle")
        rec["status"] = "started"
        api.active[rec["vehicle"]] = ident
        for d in rec["deliveries"]:
            api.deliveries[d]["status"] = "out_for_delivery"
        return {"route": {"external_id": ident, "status": "started"}, "events": 1}

    @app.get("/v1/routes")
    async def list_routes() -> Any:
        _, refused = await begin()
        if refused:
            return refused
        vehicle, status = request.args.get("vehicle"), request.args.get("status")
        found = [
            {"id": ext, "external_id": ext, "vehicle": r["vehicle"], "status": r["status"]}
            for ext, r in api.routes.items()
            if (vehicle is None or r["vehicle"] == vehicle)
            and (status is None or r["status"] == status)
        ]
        return {"routes": found}

    @app.get("/v1/deliveries")
    async def list_deliveries() -> Any:
        _, refused = await begin()
        if refused:
            return refused
        route = request.args.get("route")
        found = [d for d in api.deliveries.values() if route is None or d["route"] == route]
        return {"deliveries": found, "total": len(found)}

    @app.post("/v1/deliveries/<ident>/status")
    async def status(ident: str) -> Any:
        body, refused = await begin()
        if refused:
            return refused
        rec = api.deliveries.get(ident)
        if rec is None:
            return _err(404, f"no such delivery {ident}", "id")
        new = body.get("status")
        if new == "failed" and body.get("reason") not in REASONS:
            return _err(400, "failed needs a reason", "reason")
        if new not in NEXT.get(rec["status"], set()):
            return _err(409, "illegal transition", "status", **{"from": rec["status"], "to": new})
        rec["status"] = new
        rec["reason"], rec["note"] = body.get("reason"), body.get("note")
        api._finish_if_done(rec["route"])
        return {"delivery": rec, "events": 1}

    @app.post("/v1/deliveries/<ident>/pod")
    async def pod(ident: str) -> Any:
        form = await request.form
        files = await request.files
        uploads = [(name, f.read()) for name in ("photo", "signature") for f in files.getlist(name)]
        api.calls.append((request.method, request.path, dict(form)))
        code = api.injected(request.method, request.path)
        if code is not None:
            return _err(code, "injected failure")
        rec = api.deliveries.get(ident)
        if rec is None:
            return _err(404, "no such delivery")
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        by = "agent" if auth == API_KEY else None
        route = api.routes[rec["route"]]
        for device_id, dev in app.config["ingest"].devices.items():
            if auth and dev.token == auth:
                if route["status"] != "started" or route["vehicle"] != device_id:
                    return _err(403, "this delivery is not on this vehicle's started route")
                by = device_id
        if by is None:
            return _err(401, "an agent API key or the vehicle's device token is needed")
        if rec["status"] not in ("out_for_delivery", "arriving"):
            return _err(409, f"cannot complete a delivery that is {rec['status']}")
        rec["status"] = "delivered"
        api.pods[ident] = {"form": dict(form), "files": uploads, "by": by}
        api._finish_if_done(rec["route"])
        return {"delivery": ident, "by": by}, 201

    @app.post("/v1/deliveries/<ident>/link")
    async def link(ident: str) -> Any:
        _, refused = await begin()
        if refused:
            return refused
        if ident not in api.deliveries:
            return _err(404, "no such delivery")
        return {"delivery": ident, "token": f"tok-{ident}", "url": f"http://customer/t/tok-{ident}"}


def make_api(ingest: IngestServer, routes: RoutesApi | None = None) -> QuartTrio:
    """Device registration endpoints that issue tokens the ingest server accepts, and the
    routes double (``app.config["routes"]``)."""
    app = QuartTrio(__name__)
    app.config["calls"] = []
    app.config["ingest"] = ingest
    app.config["routes"] = routes if routes is not None else RoutesApi()
    _routes_endpoints(app, app.config["routes"])

    def authorised() -> bool:
        return request.headers.get("Authorization") == f"Bearer {API_KEY}"

    @app.post("/v1/devices")
    async def create() -> Any:
        app.config["calls"].append("create")
        if not authorised():
            return {"error": "unauthorised"}, 401
        body = await request.get_json()
        if body["id"] in ingest.devices:
            return {"error": "exists"}, 409
        token = secrets.token_urlsafe(16)
        ingest.add(body["id"], token)
        return {"id": body["id"], "vehicle": body["vehicle"], "token": token}, 201

    @app.post("/v1/devices/<device_id>/token")
    async def rotate(device_id: str) -> Any:
        app.config["calls"].append("rotate")
        if not authorised():
            return {"error": "unauthorised"}, 401
        if device_id not in ingest.devices:
            return {"error": "not found"}, 404
        token = secrets.token_urlsafe(16)
        ingest.devices[device_id].token = token
        return {"id": device_id, "token": token}, 200

    return app


async def start_api(nursery: trio.Nursery, app: QuartTrio) -> str:
    """Serve ``app`` with hypercorn on a free port; returns its base URL."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds: list[str] = await nursery.start(serve, app, config)
    return binds[0]
