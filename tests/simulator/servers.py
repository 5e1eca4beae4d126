"""Small real servers speaking the gateway's device contract, for the simulator's tests.

``IngestServer`` is a trio-websocket handler that stores positions per device, acks the highest
seq, rejects chosen seqs and can drop a connection after a given frame without acking it.
``make_api`` is a quart-trio app with the device registration endpoints.
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


def make_api(ingest: IngestServer) -> QuartTrio:
    """Device registration endpoints that issue tokens the ingest server accepts."""
    app = QuartTrio(__name__)
    app.config["calls"] = []

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
