"""Device ingest over plain HTTP: OsmAnd (Traccar Client), OwnTracks, and a batch POST.

Every request runs the same validation and write path as the WebSocket and answers only
once the accepted positions are in Redis.

Identity: the device's secret token, never a payload field. OsmAnd clients send only an
``id``, so the token goes there (set the app's device identifier to the token); OwnTracks
sends HTTP basic auth (the password is the token) or ``Authorization: Bearer``.

Protocols without a sequence number (OsmAnd, OwnTracks) get ``seq`` = fix time in
milliseconds, so a resent fix is a duplicate and an older one is not stored twice.
"""

from __future__ import annotations

import base64
import math
import time
from typing import Annotated, Any, Final

import msgspec
from quart import Blueprint, Response, jsonify, request

from gateway.core.metrics import Metrics
from gateway.core.structs import field_of, out_of_range
from gateway.fleet.position import Position, PositionShape
from gateway.http.errors import ApiError
from gateway.http.spec import Content, Op
from gateway.ingest.auth import DeviceAuth
from gateway.ingest.device_formats import (
    OsmAndFields,
    OsmAndJson,
    OwnTracksMessage,
    Unreadable,
    osmand_fields_position,
    osmand_json_position,
    owntracks_message_position,
)
from gateway.ingest.wire import Ack, MalformedFrame, Reason, Rejection, decode_frame
from gateway.ingest.writer import Ingest, Session, frame_cost

SESSION_CACHE: Final = 100_000

# The operations of this module, for /openapi.json. OsmAnd and OwnTracks are read with the
# Structs of ``device_formats``; the batch body by ``wire.decode_frame``, with ``Position``.
# What the batch POST takes: a position of the right types, or an array of anything; each
# position is then checked on its own, and one that fails (out of range, a field missing)
# is named in the ack's `rejected` with the reason, the others kept (200).
Batch = Annotated[
    list[Any],
    msgspec.Meta(
        description="positions (the Position shape), at most MAX_BATCH_POSITIONS; an item "
        "that is not one is named in the ack's `rejected` and the others are kept"
    ),
]

# A refused position is answered with the ack naming why; an unreadable request with Error.
_REJECTED: Final = Content(
    "application/json",
    {"anyOf": [{"$ref": "#/components/schemas/Ack"}, {"$ref": "#/components/schemas/Error"}]},
    "refused: the ack names the position's rejection, or the request could not be read",
)

OPS: Final = [
    Op("POST", "/v1/positions",
       "Device batch POST: one position or an array; answers the ack once stored",
       {200: Ack, 401: None, 429: None}, body=PositionShape | Batch, public=True,
       description="Authorization: Bearer <device token>. The body may also be MessagePack "
       "(Content-Type: application/msgpack, the same shape), answered in MessagePack. A "
       "position refused on its own (out of range, a duplicate...) is named in the ack's "
       "`rejected`; a frame that cannot be read at all, or too large, is a 400. 429: the "
       "device's rate limit, with Retry-After."),
    *(Op(method, "/v1/osmand",
         "OsmAnd protocol (Traccar Client): one position; id = the device token",
         {200: Content("text/plain", {"type": "string", "maxLength": 0}, "stored"),
          400: _REJECTED, 401: None, 422: None, 429: None},
         query=OsmAndFields, public=True,
         body=(Content("application/x-www-form-urlencoded", OsmAndFields), OsmAndJson)
         if method == "POST" else None,
         description="The fields come as query arguments, as a form, or (POST) as the app's "
         "JSON body (speed in m/s there, in knots otherwise); fields not listed are ignored, "
         "an empty one counts as absent. 400: a field out of range or of the wrong type, or "
         "the position refused (the ack names why); 422: no position in it.")
      for method in ("GET", "POST")),
    Op("POST", "/v1/owntracks", "OwnTracks HTTP mode (basic auth password = the device token)",
       {200: Content("application/json", {"type": "array", "maxItems": 0}, "no commands"),
        400: _REJECTED, 401: None, 422: None, 429: None},
       body=OwnTracksMessage, public=True,
       description="A `location` is stored; other message types are accepted and ignored."),
]  # fmt: skip


def http_ingest_blueprint(
    writer: Ingest,
    device_auth: DeviceAuth,
    metrics: Metrics,
    *,
    max_frame_bytes: int,
    max_batch_positions: int,
) -> Blueprint:
    bp = Blueprint("http_ingest", __name__)

    # One session per device, kept between requests, so concurrent requests of a device
    # validate against one cursor.
    sessions: dict[str, Session] = {}

    async def session_for(token: str | None) -> Session:
        device = await device_auth.lookup(token) if token else None
        if device is None:
            metrics.inc("gateway_handshakes_refused_total", reason="unknown_device")
            raise ApiError(401, "unknown or revoked device token")
        session = sessions.get(device.id)
        if session is None or session.device != device:
            if len(sessions) >= SESSION_CACHE:
                sessions.clear()
            session = sessions[device.id] = await writer.open_session(device)
            session.on_progress = session.pulse
        return session

    def charge(session: Session, n: int) -> None:
        """Take ``n`` from the device's budget (shared with its other requests and
        connections), or answer 429 with ``Retry-After``: nothing of the request is stored,
        and the device sends it again later."""
        assert session.bucket is not None
        wait = session.bucket.take_now(n, time.monotonic())
        if wait:
            metrics.inc("gateway_device_throttled_total")
            retry = "60" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise ApiError(429, "rate limit exceeded", headers={"Retry-After": retry})

    async def ingest(session: Session, positions: list[Position], bad: list[Rejection]) -> Ack:
        await session.submit(positions, bad)
        await session.wait_durable(session.cursor.seq)
        # Rejections of concurrent requests of the device may land in either reply.
        return Ack(session.durable_seq, session.take_rejected())

    def bearer() -> str | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        if scheme.lower() == "basic" and rest.strip():
            try:
                _, _, password = base64.b64decode(rest.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return password or None
        return None

    def bad_frame(reason: str, detail: str) -> ApiError:
        metrics.inc("gateway_frames_rejected_total", reason=reason)
        return ApiError(400, f"{reason}: {detail}")

    def refused(exc: Exception) -> ApiError:
        """The answer to a position that could not be read: a field out of range (400,
        ``out_of_range``), of the wrong type (400, ``malformed``), or fields of the right
        types that hold no position (422)."""
        if isinstance(exc, Unreadable):
            metrics.inc("gateway_frames_rejected_total", reason="malformed")
            return ApiError(422, f"malformed: {exc}")
        assert isinstance(exc, msgspec.ValidationError)
        message, where = field_of(exc)
        if out_of_range(message):
            metrics.inc("gateway_positions_rejected_total", reason=Reason.OUT_OF_RANGE)
            return ApiError(400, f"out_of_range: {message}", where)
        metrics.inc("gateway_frames_rejected_total", reason="malformed")
        return ApiError(400, f"malformed: {message}", where)

    def fields(source: Any) -> dict[str, str]:
        """Query or form fields; an empty one counts as absent, as the apps send them."""
        return {k: v for k, v in source.items() if v != ""}

    @bp.route("/v1/osmand", methods=["GET", "POST"])
    async def osmand() -> Any:
        params = fields(request.args)
        body: OsmAndJson | None = None
        if request.method == "POST":
            if request.mimetype == "application/json":
                data = await request.get_data(as_text=False)
                if len(data) > max_frame_bytes:
                    raise bad_frame("too_big", f"{len(data)} bytes")
                try:
                    body = msgspec.json.decode(data, type=OsmAndJson)
                except msgspec.ValidationError as exc:
                    raise refused(exc) from None
                except (msgspec.DecodeError, RecursionError):
                    raise bad_frame("malformed", "the body is not a JSON object") from None
            else:
                params.update(fields(await request.form))
        token = (
            params.get("id")
            or params.get("deviceid")
            or params.get("device_id")
            or (body.device_id if body is not None and body.device_id else None)
            or bearer()
        )
        session = await session_for(str(token) if token else None)
        metrics.inc("gateway_frames_total", proto="osmand", enc="http")
        charge(session, frame_cost(len(request.query_string) + len(await request.get_data())))
        try:
            if body is not None:
                pos = osmand_json_position(body)
            else:
                pos = osmand_fields_position(msgspec.convert(params, OsmAndFields, strict=False))
        except (msgspec.ValidationError, Unreadable) as exc:
            raise refused(exc) from None
        ack = await ingest(session, [pos], [])
        if ack.rejected:
            return jsonify(msgspec.to_builtins(ack)), 400
        return Response("", status=200)

    @bp.post("/v1/owntracks")
    async def owntracks() -> Any:
        session = await session_for(bearer())
        metrics.inc("gateway_frames_total", proto="owntracks", enc="http")
        data = await request.get_data(as_text=False)
        charge(session, frame_cost(len(data)))
        if len(data) > max_frame_bytes:
            raise bad_frame("too_big", f"{len(data)} bytes")
        try:
            msg = msgspec.json.decode(data, type=OwnTracksMessage)
            pos = owntracks_message_position(msg)
        except (msgspec.ValidationError, Unreadable) as exc:
            raise refused(exc) from None
        except (msgspec.DecodeError, RecursionError):
            raise bad_frame("malformed", "the body is not a JSON object") from None
        if pos is not None:
            ack = await ingest(session, [pos], [])
            if ack.rejected:
                return jsonify(msgspec.to_builtins(ack)), 400
        # OwnTracks expects a JSON array (of commands or cards) in reply.
        return jsonify([])

    @bp.post("/v1/positions")
    async def batch() -> Any:
        session = await session_for(bearer())
        data = await request.get_data(as_text=False)
        assert isinstance(data, bytes)
        if len(data) > max_frame_bytes:
            raise bad_frame("too_big", f"{len(data)} bytes, limit {max_frame_bytes}")
        binary = request.mimetype in ("application/msgpack", "application/x-msgpack")
        enc = "msgpack" if binary else "json"
        metrics.inc("gateway_frames_total", proto="http", enc=enc)
        cost = frame_cost(len(data))
        charge(session, cost)
        try:
            positions, bad = decode_frame(
                data if binary else data.decode("utf-8", "replace"),
                max_batch_positions,
            )
        except MalformedFrame as exc:
            raise bad_frame(exc.reason, str(exc)) from None
        more = len(positions) + len(bad) - cost
        if more > 0:
            charge(session, more)
        ack = await ingest(session, positions, bad)
        body = msgspec.to_builtins(ack) | {"type": "ack"}
        if binary:
            return Response(msgspec.msgpack.encode(body), content_type="application/msgpack")
        return jsonify(body)

    return bp
