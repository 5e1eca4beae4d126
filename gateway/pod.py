"""Proof of delivery: photos, a signature, who received it, where and when.

The driver app (its device token, for deliveries on its vehicle's started route) or an agent
completes a delivery with a multipart upload. Image types are sniffed from the bytes (JPEG
and PNG only), sizes are bounded, files are stored under ``DATA_DIR/pod/<delivery>/`` named
by their SHA-256, and the record goes to Redis at ``pod:{delivery}``. A geo-stamp farther
than ``POD_MAX_DISTANCE_M`` from the stop is accepted but flagged for agents
(``delivery.pod_flagged``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
from quart import Blueprint, jsonify, request, send_file

from geofence import haversine_m

from .api import ApiError, agent_key, finite_field
from .dispatch import STARTED
from .dispatch_lifecycle import DELIVERED, IllegalTransition

if TYPE_CHECKING:
    from .app import Gateway

MAX_FILE_BYTES: Final = 5 * 2**20  # 5 MiB per image
MAX_PHOTOS: Final = 5
POD_MAX_DISTANCE_M: Final = 150.0
MAX_TEXT: Final = 500

_json: Final = msgspec.json.Encoder()


def sniff_image(data: bytes) -> str | None:
    """``"jpeg"``, ``"png"`` or None, from the leading bytes (never from the file name)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


class PodFile(msgspec.Struct, frozen=True):
    sha256: str
    kind: str  # photo | signature
    type: str  # jpeg | png
    size: int


class Pod(msgspec.Struct, frozen=True):
    delivery: str
    files: list[PodFile]
    recipient_name: str
    notes: str
    lat: float | None
    lon: float | None
    ts: float
    distance_m: float | None
    flagged: bool
    by: str  # device id or "agent"


def pod_key(delivery_id: str) -> str:
    return f"pod:{{{delivery_id}}}"


async def load_pod(gw: Gateway, delivery_id: str) -> Pod | None:
    raw = await gw.redis.get(pod_key(delivery_id))
    return None if raw is None else msgspec.json.decode(raw, type=Pod)


def pod_folder(gw: Gateway, delivery_id: str) -> Path:
    return gw.data_dir / "pod" / delivery_id


def pod_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("pod", __name__)

    async def caller_for(delivery_id: str) -> str:
        """``"agent"`` or the device id of the driver app allowed to complete this delivery."""
        key = agent_key()
        if gw.api_keys.check(key):
            return "agent"
        device = await gw.device_auth.lookup(key) if key else None
        if device is None:
            raise ApiError(401, "an agent API key or the vehicle's device token is needed")
        d = await gw.dispatch.store.get_delivery(delivery_id)
        route = None if d is None or d.route is None else await gw.dispatch.store.get_route(d.route)
        if route is None or route.status != STARTED or route.vehicle != device.vehicle:
            raise ApiError(403, "this delivery is not on this vehicle's started route")
        return device.id

    @bp.post("/v1/deliveries/<ident>/pod")
    async def complete(ident: str) -> Any:
        # The body is read first: answering before it is consumed stalls the connection.
        form = await request.form
        files = await request.files
        delivery_id = await gw.dispatch.store.resolve_delivery(ident)
        if delivery_id is None:
            raise ApiError(404, "no such delivery")
        by = await caller_for(delivery_id)
        name = (form.get("recipient_name") or "").strip()
        notes = (form.get("notes") or "").strip()
        if len(name) > MAX_TEXT or len(notes) > MAX_TEXT:
            raise ApiError(400, f"recipient_name and notes are limited to {MAX_TEXT} characters")
        lat, lon = finite_field(form, "lat"), finite_field(form, "lon")
        if (lat is None) != (lon is None) or (
            lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180)
        ):
            raise ApiError(400, "lat and lon go together and must be valid degrees", "lat")
        ts = finite_field(form, "ts") or time.time()
        uploads: list[tuple[str, bytes]] = []
        photos = files.getlist("photo")
        if len(photos) > MAX_PHOTOS:
            raise ApiError(400, f"at most {MAX_PHOTOS} photos", "photo")
        for kind, items in (("photo", photos), ("signature", files.getlist("signature")[:1])):
            for f in items:
                data = f.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise ApiError(413, f"{kind} larger than {MAX_FILE_BYTES} bytes", kind)
                uploads.append((kind, data))
        if not uploads and not name:
            raise ApiError(400, "a proof needs a photo, a signature or the recipient's name")
        stored: list[PodFile] = []
        folder = pod_folder(gw, delivery_id)
        for kind, data in uploads:
            itype = sniff_image(data)
            if itype is None:
                raise ApiError(415, f"{kind} must be a JPEG or PNG image", kind)
            digest = hashlib.sha256(data).hexdigest()
            await trio.Path(folder).mkdir(parents=True, exist_ok=True)
            await trio.Path(folder / f"{digest}.{itype}").write_bytes(data)
            stored.append(PodFile(digest, kind, itype, len(data)))
        d = await gw.dispatch.store.get_delivery(delivery_id)
        assert d is not None
        distance = None
        if lat is not None and lon is not None:
            distance = haversine_m(lat, lon, d.location.lat, d.location.lon)
        flagged = distance is not None and distance > POD_MAX_DISTANCE_M
        pod = Pod(delivery_id, stored, name, notes, lat, lon, ts, distance, flagged, by)
        try:
            await gw.dispatch.set_status(delivery_id, DELIVERED, note=notes or None)
        except IllegalTransition as exc:
            raise ApiError(409, f"cannot complete a delivery that is {exc.current}") from None
        await gw.redis.set(pod_key(delivery_id), _json.encode(pod))
        base = {"ts": ts, "vehicle": None, "route": d.route, "stop": d.stop,
                "delivery": delivery_id}  # fmt: skip
        data = {"files": len(stored), "distance_m": distance, "recipient_name": name, "by": by}
        events = [{"type": "delivery.pod", **base, "data": data}]
        if flagged:
            limits = {"distance_m": distance, "limit_m": POD_MAX_DISTANCE_M}
            events.append({"type": "delivery.pod_flagged", **base, "data": limits})
        await gw.store.append_events(events, gw.settings.events_max_len)
        return jsonify(msgspec.to_builtins(pod)), 201

    @bp.get("/v1/deliveries/<ident>/pod")
    async def show(ident: str) -> Any:
        if not gw.api_keys.check(agent_key()):
            raise ApiError(401, "missing or invalid API key")
        delivery_id = await gw.dispatch.store.resolve_delivery(ident)
        pod = None if delivery_id is None else await load_pod(gw, delivery_id)
        if pod is None:
            raise ApiError(404, "no proof of delivery")
        return jsonify(msgspec.to_builtins(pod))

    @bp.get("/v1/deliveries/<ident>/pod/<sha>")
    async def file(ident: str, sha: str) -> Any:
        if not gw.api_keys.check(agent_key()):
            raise ApiError(401, "missing or invalid API key")
        delivery_id = await gw.dispatch.store.resolve_delivery(ident)
        return await send_pod_file(gw, delivery_id, sha)

    return bp


async def send_pod_file(gw: Gateway, delivery_id: str | None, sha: str) -> Any:
    pod = None if delivery_id is None else await load_pod(gw, delivery_id)
    match = None if pod is None else next((f for f in pod.files if f.sha256 == sha), None)
    if match is None or delivery_id is None:
        raise ApiError(404, "no such file")
    path = pod_folder(gw, delivery_id) / f"{match.sha256}.{match.type}"
    response = await send_file(path, mimetype=f"image/{match.type}")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response
