"""Proof of delivery: photos, a signature, who received it, where and when.

The driver app (its device token, for deliveries on its vehicle's started route) or an agent
completes a delivery with a multipart upload. Every image is decoded before it is kept
(``check_image``): JPEG or PNG, at most ``MAX_IMAGE_PIXELS`` pixels, its type the decoded one
whatever its name or claimed type say. The text fields are read as ``pod_models.PodForm``
(the type ``/openapi.json`` describes); a proof's ``ts`` is also at most ``FUTURE_TOLERANCE_S``
(the setting) from now, a 422 otherwise. Files end up under
``DATA_DIR/pod/<delivery>/`` named by their SHA-256, and the record goes to Redis at
``pod:{delivery}``. A geo-stamp farther than ``POD_MAX_DISTANCE_M`` from the stop is accepted
but flagged for agents (``delivery.pod_flagged``).

A refused upload leaves nothing on disk: the images are written to temporary files in
``DATA_DIR/pod/`` and moved into the delivery's folder only once the delivery has been
completed; whatever is still temporary when the request ends is deleted.

Files are served as ``image/<type>`` with ``X-Content-Type-Options: nosniff``,
``Content-Disposition: inline`` and a ``Content-Security-Policy`` that lets nothing in them
load or run, so bytes that a browser might take for a page stay an image.

A refusal is answered only once the whole request body has arrived (``quart_body``, from
the app's error handlers), so the client reads its answer and sends its next request on the
same connection.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
from PIL import Image
from quart import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.core.keys import pod_key
from gateway.core.structs import field_of
from gateway.customer.pod_models import (
    MAX_PHOTOS,
    POD_MAX_DISTANCE_M,
    UPLOAD_SCHEMA,
    FileKind,
    ImageType,
    Pod,
    PodFile,
    PodForm,
    UnpairedCoordinate,
)
from gateway.dispatch.lifecycle import DELIVERED, IllegalTransition
from gateway.dispatch.records import STARTED
from gateway.http.api import agent_key
from gateway.http.errors import ApiError
from gateway.http.spec import Content, Op
from geofence import haversine_m

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from gateway.app import Gateway

MAX_FILE_BYTES: Final = 5 * 2**20  # 5 MiB per image
# A phone photo is 12 megapixels; decoding 25 takes up to 100 MB (4 bytes a pixel).
MAX_IMAGE_PIXELS: Final = 25_000_000
IMAGE_DECODERS: Final = 2  # images decoded at once, each in a worker thread
STAGING_PREFIX: Final = ".upload-"

# Pillow's format name -> the type stored and served. A JPEG with several pictures in it
# (phones' MPO) is a JPEG to any viewer.
IMAGE_TYPES: Final[dict[str, ImageType]] = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png"}
SERVED_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=86400",
}
# What Pillow's decoders raise for bytes that are not a well-formed image of their format.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_json: Final = msgspec.json.Encoder()

_ID: Final = {"id": "internal id, or the shipper's external id"}
_SHA: Final = {**_ID, "sha": "the file's SHA-256, as in the proof's files"}
_BINARY: Final = {"type": "string", "format": "binary"}
_UPLOAD: Final = (
    "Multipart. With an agent API key, or the device token of the vehicle whose started "
    "route has the delivery (403 for another device's). The delivery becomes delivered (409 "
    "when its status does not allow that). Each image must decode as a JPEG or PNG (415) of "
    f"at most {MAX_FILE_BYTES} bytes and {MAX_IMAGE_PIXELS} pixels (413); the whole upload "
    "is at most MAX_CONTENT_LENGTH bytes, a text field MAX_FORM_MEMORY_SIZE (413). A ts "
    "ahead of the gateway's clock by more than FUTURE_TOLERANCE_S is a 422. A geo-stamp "
    f"over {POD_MAX_DISTANCE_M:g} m from the stop is accepted but flagged."
)
_SERVED: Final = (
    "Answered with X-Content-Type-Options: nosniff, Content-Disposition: inline, a "
    "Content-Security-Policy that lets nothing in the file load or run, and Cache-Control: "
    "private."
)

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("POST", "/v1/deliveries/{id}/pod", "Complete a delivery with its proof of delivery",
       {201: Pod, 401: None, 403: None, 404: None, 409: None, 413: None, 415: None, 422: None},
       body=Content("multipart/form-data", UPLOAD_SCHEMA), params=_ID, public=True,
       description=_UPLOAD),
    Op("GET", "/v1/deliveries/{id}/pod", "The proof of delivery", {200: Pod, 404: None},
       params=_ID),
    Op("GET", "/v1/deliveries/{id}/pod/{sha}", "A file of the proof of delivery",
       {200: (Content("image/jpeg", _BINARY, "the image"), Content("image/png", _BINARY)),
        404: None}, params=_SHA, description=_SERVED),
]  # fmt: skip


class BadImage(Exception):
    """Bytes that are not an image the gateway keeps; the message says why."""


class TooManyPixels(BadImage):
    """An image larger than the gateway decodes."""


def check_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageType:
    """``"jpeg"`` or ``"png"``: the type of ``data`` once all its pixels have decoded.

    BadImage if it is another format, is not an image at all, or does not decode to its end;
    TooManyPixels if it has more than ``max_pixels`` (known from its header, before any pixel
    is decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise TooManyPixels(f"has {width} x {height} pixels, more than {max_pixels}")
            im.load()
            return IMAGE_TYPES[im.format or ""]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bound (above ours), met while it reads the header; the warning is
        # raised only where warnings are errors.
        raise TooManyPixels(f"has more than {max_pixels} pixels") from None
    except _DECODE_ERRORS:
        raise BadImage("is not a complete JPEG or PNG image") from None


async def load_pod(gw: Gateway, delivery_id: str) -> Pod | None:
    raw = await gw.redis.get(pod_key(delivery_id))
    return None if raw is None else msgspec.json.decode(raw, type=Pod)


def pod_root(gw: Gateway) -> Path:
    return gw.data_dir / "pod"


def pod_folder(gw: Gateway, delivery_id: str) -> Path:
    return pod_root(gw) / delivery_id


# ----- files on disk (blocking; run in worker threads)


def _stage(root: Path, contents: list[bytes], staged: list[Path]) -> None:
    """Write each of ``contents`` to a new temporary file in ``root``, appending its path to
    ``staged`` as soon as it exists (so a failure part-way leaves nothing unaccounted)."""
    root.mkdir(parents=True, exist_ok=True)
    for data in contents:
        fd, name = tempfile.mkstemp(dir=root, prefix=STAGING_PREFIX, suffix=".part")
        staged.append(Path(name))
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _commit(moves: list[tuple[Path, Path]]) -> None:
    for staged, final in moves:
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(final)  # the same content when it exists: it is named by its hash


def _discard(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def pod_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("pod", __name__)
    decoders = trio.CapacityLimiter(IMAGE_DECODERS)

    async def caller_for(ident: str) -> tuple[str, str]:
        """The delivery's internal id, and ``"agent"`` or the id of the driver app's device
        allowed to complete it. The key is checked before the delivery is looked up: a
        caller without one learns nothing of which deliveries exist."""
        key = agent_key()
        agent = gw.api_keys.check(key)
        device = None if agent or not key else await gw.device_auth.lookup(key)
        if not agent and device is None:
            raise ApiError(401, "an agent API key or the vehicle's device token is needed")
        delivery_id = await gw.dispatch.store.resolve_delivery(ident)
        if delivery_id is None:
            raise ApiError(404, "no such delivery")
        if device is None:
            return delivery_id, "agent"
        d = await gw.dispatch.store.get_delivery(delivery_id)
        route = None if d is None or d.route is None else await gw.dispatch.store.get_route(d.route)
        if route is None or route.status != STARTED or route.vehicle != device.vehicle:
            raise ApiError(403, "this delivery is not on this vehicle's started route")
        return delivery_id, device.id

    async def read_form() -> tuple[MultiDict[str, Any], MultiDict[str, Any]]:
        try:
            return await request.form, await request.files
        except RequestEntityTooLarge:
            whole, field = request.max_content_length, request.max_form_memory_size
            raise ApiError(
                413, f"an upload is at most {whole} bytes in all, a text field {field} bytes"
            ) from None

    def text_fields(form: MultiDict[str, Any]) -> PodForm:
        """The form's text fields as ``PodForm``; a 400 naming the field otherwise."""
        for name in ("photo", "signature"):
            if name in form:
                raise ApiError(400, f"{name} must be a file part (one with a filename)", name)
        # Only the fields it names: the others may have any name, one msgspec cannot take.
        given = {name: form[name] for name in PodForm.__struct_fields__ if name in form}
        try:
            return msgspec.convert(given, PodForm, strict=False)
        except msgspec.ValidationError as exc:
            message, where = field_of(exc)
            if message.startswith("Invalid enum value"):
                # Text in a number field: msgspec names the empty string it also allows.
                message = f"{where} must be a number"
            raise ApiError(400, message, where) from None

    def proof_ts(given: PodForm, now: float) -> float:
        ts = given.when()
        if ts is None:
            return now
        tolerance = gw.settings.future_tolerance_s
        if ts > now + tolerance:
            raise ApiError(
                422, f"ts is more than {tolerance:g} s ahead of the gateway's clock", "ts"
            )
        return ts

    async def images(
        photos: list[Any], signatures: list[Any]
    ) -> list[tuple[FileKind, ImageType, bytes]]:
        """``(kind, type, bytes)`` of every image uploaded, each decoded."""
        uploads: list[tuple[FileKind, bytes]] = []
        kinds: tuple[tuple[FileKind, list[Any]], ...] = (
            ("photo", photos),
            ("signature", signatures),
        )
        for kind, items in kinds:
            for f in items:
                data = f.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise ApiError(413, f"{kind} larger than {MAX_FILE_BYTES} bytes", kind)
                uploads.append((kind, data))
        checked = []
        for kind, data in uploads:
            try:
                itype = await trio.to_thread.run_sync(check_image, data, limiter=decoders)
            except BadImage as exc:
                status = 413 if isinstance(exc, TooManyPixels) else 415
                raise ApiError(status, f"{kind} {exc}", kind) from None
            checked.append((kind, itype, data))
        return checked

    async def complete(ident: str) -> Any:
        delivery_id, by = await caller_for(ident)
        form, files = await read_form()
        given = text_fields(form)
        try:
            position = given.position()
        except UnpairedCoordinate as exc:
            raise ApiError(400, "lat and lon go together", exc.missing) from None
        photos, signatures = files.getlist("photo"), files.getlist("signature")
        if len(photos) > MAX_PHOTOS:
            raise ApiError(400, f"at most {MAX_PHOTOS} photos", "photo")
        if len(signatures) > 1:
            raise ApiError(400, "one signature at most", "signature")
        name, notes = given.name(), given.note()
        if not photos and not signatures and not name:
            raise ApiError(400, "a proof needs a photo, a signature or the recipient's name")
        ts = proof_ts(given, time.time())
        uploads = await images(photos, signatures)
        stored = [
            PodFile(hashlib.sha256(data).hexdigest(), kind, itype, len(data))
            for kind, itype, data in uploads
        ]
        d = await gw.dispatch.store.get_delivery(delivery_id)
        assert d is not None
        distance = None
        if position is not None:
            distance = haversine_m(*position, d.location.lat, d.location.lon)
        flagged = distance is not None and distance > POD_MAX_DISTANCE_M
        lat, lon = (None, None) if position is None else position
        pod = Pod(delivery_id, stored, name, notes, lat, lon, ts, distance, flagged, by)
        staged: list[Path] = []
        try:
            # Written before the delivery changes (a full disk refuses the proof), moved in
            # place only once it has.
            await trio.to_thread.run_sync(_stage, pod_root(gw), [u[2] for u in uploads], staged)
            try:
                await gw.dispatch.set_status(delivery_id, DELIVERED, note=notes or None)
            except IllegalTransition as exc:
                raise ApiError(409, f"cannot complete a delivery that is {exc.current}") from None
            folder = pod_folder(gw, delivery_id)
            finals = [folder / f"{f.sha256}.{f.type}" for f in stored]
            await trio.to_thread.run_sync(_commit, list(zip(staged, finals, strict=True)))
            staged.clear()
        finally:
            if staged:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_discard, staged)
        await gw.redis.set(pod_key(delivery_id), _json.encode(pod))
        base = {"ts": ts, "vehicle": None, "route": d.route, "stop": d.stop,
                "delivery": delivery_id}  # fmt: skip
        data = {"files": len(stored), "distance_m": distance, "recipient_name": name, "by": by}
        events: list[dict[str, Any]] = [{"type": "delivery.pod", **base, "data": data}]
        if flagged:
            limits = {"distance_m": distance, "limit_m": POD_MAX_DISTANCE_M}
            events.append({"type": "delivery.pod_flagged", **base, "data": limits})
        await gw.store.append_events(events, gw.settings.events_max_len)
        return jsonify(msgspec.to_builtins(pod)), 201

    @bp.post("/v1/deliveries/<ident>/pod")
    async def complete_with_proof(ident: str) -> Any:
        return await complete(ident)

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
    name = f"{match.sha256}.{match.type}"
    response = await send_file(pod_folder(gw, delivery_id) / name, mimetype=f"image/{match.type}")
    response.headers.update(SERVED_HEADERS)
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return response
