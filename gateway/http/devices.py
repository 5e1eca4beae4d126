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
import contextlib
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
    NoFix,
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


class _Sender(msgspec.Struct):
    """Who sent a JSON body whose position cannot be read (a field out of range)."""

    device_id: str | msgspec.UnsetType = msgspec.UNSET


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
         {200: (Content("text/plain", {"type": "string", "maxLength": 0}, "stored, or no fix"),
                Content("application/json", Ack, "filtered: the ack names why")),
          400: None, 401: None, 429: None},
         query=OsmAndFields, public=True,
         body=(Content("application/x-www-form-urlencoded", OsmAndFields), OsmAndJson)
         if method == "POST" else None,
         description="The fields come as query arguments, as a form, or (POST) as the app's "
         "JSON body (speed in m/s there, in knots otherwise); fields not listed are ignored, "
         "an empty one counts as absent, and a negative speed, heading, accuracy or battery "
         "is unknown. Anything that reads as a position answers 200, stored or filtered (a "
         "duplicate, out of range, too coarse...: the ack names why): the app resends a fix "
         "until it gets a success, and would block every fix behind it. A request without "
         "coordinates (cell or Wi-Fi only) answers 200 and keeps the device online. 400: a "
         "field of the wrong type or a time that is not one; 401: unknown or revoked device.")
      for method in ("GET", "POST")),
    Op("POST", "/v1/owntracks", "OwnTracks HTTP mode (basic auth password = the device token)",
       {200: Content("application/json", {"type": "array", "maxItems": 0}, "no commands"),
        400: None, 401: None, 429: None},
       body=OwnTracksMessage, body_required=False, public=True,
       description="A `location` is stored; other message types, an empty body and a "
       "filtered fix (a duplicate, out of range...) also answer []: OwnTracks sends again "
       "whatever did not get a success. A negative acc, vel, cog or batt is unknown. 400: "
       "not a JSON object, or a field of the wrong type."),
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

    def unreadable(exc: Exception) -> Rejection:
        """What a position the device app sent and the gateway cannot store says: a field out
        of range is filtered like any refused fix (the answer is still a success: the app
        would send it again for ever); a field of the wrong type, or a time that is not one,
        is a 400 (``malformed``): nothing this request holds is a position."""
        if isinstance(exc, msgspec.ValidationError):
            message, where = field_of(exc)
            if out_of_range(message) and not message.startswith("Expected `str`"):
                metrics.inc("gateway_positions_rejected_total", reason=Reason.OUT_OF_RANGE)
                return Rejection(None, Reason.OUT_OF_RANGE, f"{where}: {message}")
            metrics.inc("gateway_frames_rejected_total", reason="malformed")
            raise ApiError(400, f"malformed: {message}", where)
        metrics.inc("gateway_frames_rejected_total", reason="malformed")
        raise ApiError(400, f"malformed: {exc}")

    async def no_fix(session: Session, proto: str) -> None:
        """A request without coordinates: the device is alive (not offline), nothing is
        stored."""
        metrics.inc("gateway_requests_without_fix_total", proto=proto)
        await writer.keep_alive(session.device)

    async def store(session: Session, pos: Position | None, bad: Rejection | None) -> Ack:
        """Store ``pos`` (or count ``bad``); the ack names what was filtered."""
        if pos is None:
            assert bad is not None
            return Ack(session.durable_seq, [bad])
        return await ingest(session, [pos], [])

    def fields(source: Any) -> dict[str, str]:
        """Query or form fields; an empty one counts as absent, as the apps send them."""
        return {k: v for k, v in source.items() if v != ""}

    @bp.route("/v1/osmand", methods=["GET", "POST"])
    async def osmand() -> Any:
        params = fields(request.args)
        body: OsmAndJson | None = None
        sender: _Sender | None = None
        json_error: msgspec.ValidationError | None = None
        if request.method == "POST":
            if request.mimetype == "application/json":
                data = await request.get_data(as_text=False)
                if len(data) > max_frame_bytes:
                    raise bad_frame("too_big", f"{len(data)} bytes")
                try:
                    body = msgspec.json.decode(data, type=OsmAndJson, strict=False)
                except msgspec.ValidationError as exc:
                    json_error = exc  # filtered below, once the device is known
                    with contextlib.suppress(msgspec.ValidationError):
                        sender = msgspec.json.decode(data, type=_Sender, strict=False)
                except (msgspec.DecodeError, RecursionError):
                    raise bad_frame("malformed", "the body is not a JSON object") from None
            else:
                params.update(fields(await request.form))
        token = (
            params.get("id")
            or params.get("deviceid")
            or params.get("device_id")
            or (body.device_id if body is not None and body.device_id else None)
            or (sender.device_id if sender is not None and sender.device_id else None)
            or bearer()
        )
        session = await session_for(str(token) if token else None)
        metrics.inc("gateway_frames_total", proto="osmand", enc="http")
        charge(session, frame_cost(len(request.query_string) + len(await request.get_data())))
        pos: Position | None = None
        bad: Rejection | None = None
        try:
            if json_error is not None:
                raise json_error
            if body is not None:
                pos = osmand_json_position(body)
            else:
                pos = osmand_fields_position(
                    msgspec.convert(params, OsmAndFields, strict=False), params
                )
        except NoFix:
            await no_fix(session, "osmand")
            return Response("", status=200)
        except (msgspec.ValidationError, Unreadable) as exc:
            bad = unreadable(exc)
        ack = await store(session, pos, bad)
        if ack.rejected:
            # Still a success: the app resends a fix until it gets one, so a refused fix
            # answered with an error would block every fix behind it. What was filtered is
            # in the counters and in this body.
            return jsonify(msgspec.to_builtins(ack) | {"type": "ack"})
        return Response("", status=200)

    @bp.post("/v1/owntracks")
    async def owntracks() -> Any:
        session = await session_for(bearer())
        metrics.inc("gateway_frames_total", proto="owntracks", enc="http")
        data = await request.get_data(as_text=False)
        charge(session, frame_cost(len(data)))
        if len(data) > max_frame_bytes:
            raise bad_frame("too_big", f"{len(data)} bytes")
        # OwnTracks expects a JSON array (of commands or cards) in reply, and sends again
        # whatever was not answered with a success: a message with nothing to store, or a
        # filtered fix, is answered [] too (what was filtered goes to the counters).
        if not data.strip():
            await no_fix(session, "owntracks")
            return jsonify([])
        pos: Position | None = None
        bad: Rejection | None = None
        try:
            msg = msgspec.json.decode(data, type=OwnTracksMessage, strict=False)
            pos = owntracks_message_position(msg)
        except NoFix:
            await no_fix(session, "owntracks")
            return jsonify([])
        except (msgspec.ValidationError, Unreadable) as exc:
            bad = unreadable(exc)
        except (msgspec.DecodeError, RecursionError):
            raise bad_frame("malformed", "the body is not a JSON object") from None
        if pos is not None or bad is not None:
            await store(session, pos, bad)
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
