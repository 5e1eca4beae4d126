"""Proof of delivery over HTTP: the driver app's or an agent's multipart upload, and the
proof and its files for agents.

The upload's text fields are read as ``PodForm`` (the type ``/openapi.json`` describes), a
400 naming the field otherwise; a proof's ``ts`` is at most ``FUTURE_TOLERANCE_S`` (the
setting) from now, a 422 otherwise. Every image is decoded before it is kept
(``check_image``: JPEG or PNG, at most ``MAX_IMAGE_PIXELS`` pixels, its type the decoded one
whatever its name or claimed type say); ``Proofs.complete`` stores it.

Files are served as ``image/<type>`` with ``X-Content-Type-Options: nosniff``,
``Content-Disposition: inline`` and a ``Content-Security-Policy`` that lets nothing in them
load or run, so bytes that a browser might take for a page stay an image.

A refusal is answered only once the whole request body has arrived (``http.body``, from the
app's error handlers), so the client reads its answer and sends its next request on the same
connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
from quart import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.core.structs import field_of
from gateway.customer.pod import MAX_IMAGE_PIXELS, BadImage, Proofs, TooManyPixels, check_image
from gateway.customer.pod_models import (
    MAX_PHOTOS,
    POD_MAX_DISTANCE_M,
    UPLOAD_SCHEMA,
    FileKind,
    ImageType,
    Pod,
    PodForm,
    UnpairedCoordinate,
)
from gateway.dispatch.lifecycle import IllegalTransition
from gateway.dispatch.records import STARTED
from gateway.dispatch.store import DispatchStore, NotFound
from gateway.http.common import AgentAuth, agent_key
from gateway.http.errors import ApiError
from gateway.http.spec import Content, Op
from gateway.ingest.auth import DeviceAuth

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

MAX_FILE_BYTES: Final = 5 * 2**20  # 5 MiB per image
IMAGE_DECODERS: Final = 2  # images decoded at once, each in a worker thread
SERVED_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=86400",
}


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


def pod_blueprint(
    proofs: Proofs,
    dispatch: DispatchStore,
    agent: AgentAuth,
    device_auth: DeviceAuth,
    *,
    future_tolerance_s: float,
) -> Blueprint:
    bp = Blueprint("pod", __name__)
    decoders = trio.CapacityLimiter(IMAGE_DECODERS)

    async def caller_for(ident: str) -> tuple[str, str]:
        """The delivery's internal id, and ``"agent"`` or the id of the driver app's device
        allowed to complete it. The key is checked before the delivery is looked up: a
        caller without one learns nothing of which deliveries exist."""
        key = agent_key()
        is_agent = agent.check(key)
        device = None if is_agent or not key else await device_auth.lookup(key)
        if not is_agent and device is None:
            raise ApiError(401, "an agent API key or the vehicle's device token is needed")
        delivery_id = await dispatch.resolve_delivery(ident)
        if delivery_id is None:
            raise ApiError(404, "no such delivery")
        if device is None:
            return delivery_id, "agent"
        d = await dispatch.get_delivery(delivery_id)
        route = None if d is None or d.route is None else await dispatch.get_route(d.route)
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
        tolerance = future_tolerance_s
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
        try:
            pod = await proofs.complete(
                delivery_id, by, uploads, name=name, notes=notes, position=position, ts=ts
            )
        except IllegalTransition as exc:
            raise ApiError(409, f"cannot complete a delivery that is {exc.current}") from None
        except NotFound:
            raise ApiError(404, "no such delivery") from None
        return jsonify(msgspec.to_builtins(pod)), 201

    @bp.post("/v1/deliveries/<ident>/pod")
    async def complete_with_proof(ident: str) -> Any:
        return await complete(ident)

    @bp.get("/v1/deliveries/<ident>/pod")
    async def show(ident: str) -> Any:
        if not agent.check(agent_key()):
            raise ApiError(401, "missing or invalid API key")
        delivery_id = await dispatch.resolve_delivery(ident)
        pod = None if delivery_id is None else await proofs.load(delivery_id)
        if pod is None:
            raise ApiError(404, "no proof of delivery")
        return jsonify(msgspec.to_builtins(pod))

    @bp.get("/v1/deliveries/<ident>/pod/<sha>")
    async def file(ident: str, sha: str) -> Any:
        if not agent.check(agent_key()):
            raise ApiError(401, "missing or invalid API key")
        delivery_id = await dispatch.resolve_delivery(ident)
        return await send_pod_file(proofs, delivery_id, sha)

    return bp


async def send_pod_file(proofs: Proofs, delivery_id: str | None, sha: str) -> Any:
    """The proof's file ``sha`` as an image that nothing in it can make into a page."""
    found = None if delivery_id is None else await proofs.file(delivery_id, sha)
    if found is None:
        raise ApiError(404, "no such file")
    path, match = found
    response = await send_file(path, mimetype=f"image/{match.type}")
    response.headers.update(SERVED_HEADERS)
    response.headers["Content-Disposition"] = f'inline; filename="{path.name}"'
    return response
