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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
from quart import Blueprint, Response, jsonify, request

from .api_spec import Op
from .http_errors import ApiError, decode_json
from .ingest import Session, frame_cost
from .wire import Ack, MalformedFrame, Position, Reason, Rejection, decode_frame

if TYPE_CHECKING:
    from .app import Gateway

KNOT_MPS: Final = 0.514444
KMH_MPS: Final = 1 / 3.6
SESSION_CACHE: Final = 100_000

# The operations of this module, for /openapi.json; OsmAnd and OwnTracks are still described
# by hand in openapi.py. The batch body is read by ``wire.decode_frame``, with ``Position``.
OPS: Final = [
    Op("POST", "/v1/positions",
       "Device batch POST: one position or an array; answers the ack once stored",
       {200: Ack, 401: None, 429: None}, body=Position | list[Position], public=True,
       description="Authorization: Bearer <device token>. The body may also be MessagePack "
       "(Content-Type: application/msgpack, the same shape), answered in MessagePack. A "
       "position refused on its own (out of range, a duplicate...) is named in the ack's "
       "`rejected`; a frame that cannot be read at all, or too large, is a 400. 429: the "
       "device's rate limit, with Retry-After."),
]  # fmt: skip


def _epoch(value: Any) -> float:
    """Unix seconds, unix milliseconds, or ISO 8601 / 'yyyy-MM-dd HH:mm:ss' (UTC)."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        t = float(value)
        return t / 1000.0 if t > 1e11 else t
    if isinstance(value, str):
        text = value.strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise ValueError(f"not a time: {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _opt(params: dict[str, Any], *names: str, scale: float = 1.0) -> float | None:
    for n in names:
        v = params.get(n)
        if v not in (None, ""):
            return float(v) * scale
    return None


def _position(fields: dict[str, Any]) -> Position:
    """A Position from decoded fields, with the same range checks as the wire decoder."""
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["seq"] = round(fields["ts"] * 1000)
    return msgspec.convert(fields, Position)


def osmand_position(params: dict[str, Any]) -> Position:
    """The OsmAnd query form (speed in knots) or the JSON body form (speed in m/s)."""
    loc = params.get("location")
    if isinstance(loc, dict):
        coords = loc.get("coords") or {}
        battery = loc.get("battery") or {}
        level = battery.get("level")
        return _position(
            {
                "ts": _epoch(loc.get("timestamp")),
                "lat": float(coords["latitude"]),
                "lon": float(coords["longitude"]),
                "speed": _opt(coords, "speed"),
                "heading": _opt(coords, "heading"),
                "accuracy": _opt(coords, "accuracy"),
                "alt": _opt(coords, "altitude"),
                "battery": None if level is None else float(level) * 100.0,
                "odometer": _opt(loc, "odometer"),
            }
        )
    if "location" in params and "lat" not in params:
        lat, lon = str(params["location"]).split(",")[:2]
        params = {**params, "lat": lat, "lon": lon}
    ts = params.get("timestamp")
    return _position(
        {
            "ts": _epoch(ts) if ts not in (None, "") else time.time(),
            "lat": float(params["lat"]),
            "lon": float(params["lon"]),
            "speed": _opt(params, "speed", scale=KNOT_MPS),
            "heading": _opt(params, "bearing", "heading"),
            "accuracy": _opt(params, "accuracy"),
            "alt": _opt(params, "altitude"),
            "battery": _opt(params, "batt", "battery"),
            "temp_c": _opt(params, "temp", "temperature"),
        }
    )


def owntracks_position(msg: dict[str, Any]) -> Position | None:
    """An OwnTracks ``_type: location`` message (vel in km/h); None for other types."""
    if msg.get("_type") != "location":
        return None
    return _position(
        {
            "ts": _epoch(msg["tst"]),
            "lat": float(msg["lat"]),
            "lon": float(msg["lon"]),
            "speed": _opt(msg, "vel", scale=KMH_MPS),
            "heading": _opt(msg, "cog"),
            "accuracy": _opt(msg, "acc"),
            "alt": _opt(msg, "alt"),
            "battery": _opt(msg, "batt"),
        }
    )


def http_ingest_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("http_ingest", __name__)
    metrics = gw.metrics

    # One session per device, kept between requests, so concurrent requests of a device
    # validate against one cursor.
    sessions: dict[str, Session] = {}

    async def session_for(token: str | None) -> Session:
        device = await gw.device_auth.lookup(token) if token else None
        if device is None:
            metrics.inc("gateway_handshakes_refused_total", reason="unknown_device")
            raise ApiError(401, "unknown or revoked device token")
        session = sessions.get(device.id)
        if session is None or session.device != device:
            if len(sessions) >= SESSION_CACHE:
                sessions.clear()
            session = sessions[device.id] = await gw.ingest.open_session(device)
            session.on_progress = session.pulse
        return session

    def charge(session: Session, n: int) -> None:
        """Take ``n`` from the device's budget (shared with its other requests and
        connections), or answer 429 with ``Retry-After``: nothing of the request is stored,
        and the device sends it again later."""
        assert session.bucket is not None
        now = time.monotonic()
        wait = session.bucket.wait_for(n, now)
        if wait > 0:
            metrics.inc("gateway_device_throttled_total")
            retry = "60" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise ApiError(429, "rate limit exceeded", headers={"Retry-After": retry})
        session.bucket.take(n, now)

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

    async def device_json() -> dict[str, Any]:
        """A device's JSON body as an object; anything else is a malformed frame."""
        data = await request.get_data(as_text=False)
        if len(data) > gw.settings.max_frame_bytes:
            raise bad_frame("too_big", f"{len(data)} bytes, limit {gw.settings.max_frame_bytes}")
        try:
            body = decode_json(data)
        except ApiError as exc:
            raise bad_frame("malformed", exc.message) from None
        if not isinstance(body, dict):
            raise bad_frame("malformed", "body is not a JSON object")
        return body

    def read_one(
        parse: Callable[[dict[str, Any]], Position | None], fields: dict[str, Any]
    ) -> Position | None:
        """One position from a protocol's fields; out of range or unreadable is a 400."""
        try:
            return parse(fields)
        except msgspec.ValidationError as exc:
            metrics.inc("gateway_positions_rejected_total", reason=Reason.OUT_OF_RANGE)
            raise ApiError(400, f"out_of_range: {exc}") from None
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            # A field missing, of the wrong type or shape (``battery`` not an object), a
            # number that is no float (infinite: OverflowError making its seq).
            raise bad_frame("malformed", f"cannot read the position: {exc!r}") from None

    @bp.route("/v1/osmand", methods=["GET", "POST"])
    async def osmand() -> Any:
        params: dict[str, Any] = dict(request.args)
        if request.method == "POST":
            if request.mimetype == "application/json":
                params.update(await device_json())
            else:
                params.update(dict(await request.form))
        token = params.get("id") or params.get("deviceid") or params.get("device_id") or bearer()
        session = await session_for(str(token) if token else None)
        metrics.inc("gateway_frames_total", proto="osmand", enc="http")
        charge(session, frame_cost(len(request.query_string) + len(await request.get_data())))
        pos = read_one(osmand_position, params)
        assert pos is not None  # every OsmAnd request is a location
        ack = await ingest(session, [pos], [])
        if ack.rejected:
            return jsonify(msgspec.to_builtins(ack)), 400
        return Response("", status=200)

    @bp.post("/v1/owntracks")
    async def owntracks() -> Any:
        session = await session_for(bearer())
        metrics.inc("gateway_frames_total", proto="owntracks", enc="http")
        charge(session, frame_cost(len(await request.get_data())))
        pos = read_one(owntracks_position, await device_json())
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
        if len(data) > gw.settings.max_frame_bytes:
            raise bad_frame("too_big", f"{len(data)} bytes, limit {gw.settings.max_frame_bytes}")
        binary = request.mimetype in ("application/msgpack", "application/x-msgpack")
        enc = "msgpack" if binary else "json"
        metrics.inc("gateway_frames_total", proto="http", enc=enc)
        cost = frame_cost(len(data))
        charge(session, cost)
        try:
            positions, bad = decode_frame(
                data if binary else data.decode("utf-8", "replace"),
                gw.settings.max_batch_positions,
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
