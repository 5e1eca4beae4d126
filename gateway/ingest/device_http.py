"""The device apps' HTTP requests (OsmAnd, OwnTracks, the batch POST), whichever server
received them: the lean device HTTP server (``http_server``) or the Quart app
(``gateway.http.devices``). No HTTP library here: a request comes in as its fields and body,
an answer goes out as a ``Reply`` (or an ``ApiError`` for an error status).

Every request runs the same validation and write path as the WebSocket and is answered
only once the accepted positions are in Redis. One session per device, kept between
requests, so concurrent requests of a device (on either server) validate against one cursor.

Identity: the device's secret token, never a payload field. OsmAnd clients send only an
``id``, so the token goes there (set the app's device identifier to the token); OwnTracks
sends HTTP basic auth (the password is the token) or ``Authorization: Bearer``.

Protocols without a sequence number (OsmAnd, OwnTracks) get ``seq`` = fix time in
milliseconds, so a resent fix is a duplicate and an older one is not stored twice. What
they are answered, and why, is in docs/device-protocols.md ("What the device apps are
answered"): anything that reads as a position is a success, stored or filtered.
"""

from __future__ import annotations

import base64
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Final

import msgspec

from gateway.core.errors import ApiError
from gateway.core.metrics import Metrics
from gateway.core.outage import REDIS_OUTAGE
from gateway.core.structs import field_of, out_of_range
from gateway.fleet.devices import Devices, Filtered
from gateway.fleet.position import Position
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
JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
_EMPTY_ARRAY: Final = b"[]"

_json: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(exc: ApiError) -> Reply:
    """The answer to a refused request: ``exc.status`` with ``{"error", "field"}``."""
    body: dict[str, str] = {"error": exc.message}
    if exc.field:
        body["field"] = exc.field
    return Reply(exc.status, _json.encode(body), JSON, exc.headers or {})


class _Sender(msgspec.Struct):
    """Who sent a JSON body whose position cannot be read (a field out of range)."""

    device_id: str | msgspec.UnsetType = msgspec.UNSET


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or the password of ``Basic``."""
    scheme, _, rest = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    if scheme.lower() == "basic" and rest.strip():
        try:
            _, _, password = base64.b64decode(rest.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or None
    return None


def non_empty(fields: dict[str, str]) -> dict[str, str]:
    """Query or form fields; an empty one counts as absent, as the apps send them."""
    return {k: v for k, v in fields.items() if v != ""}


class DeviceRequests:
    """The device apps' HTTP requests, answered."""

    def __init__(
        self,
        writer: Ingest,
        device_auth: DeviceAuth,
        devices: Devices,
        metrics: Metrics,
        *,
        max_frame_bytes: int,
        max_batch_positions: int,
    ) -> None:
        self.writer = writer
        self.device_auth = device_auth
        self.devices = devices
        self.metrics = metrics
        self.max_frame_bytes = max_frame_bytes
        self.max_batch_positions = max_batch_positions
        self.sessions: dict[str, Session] = {}

    # ----- the three protocols

    async def osmand(
        self, params: dict[str, str], body: bytes, json_body: bool, authorization: str | None
    ) -> Reply:
        """OsmAnd: ``params`` the query and form fields (empty ones dropped), or ``body``
        the app's JSON (``json_body``)."""
        decoded: OsmAndJson | None = None
        sender: _Sender | None = None
        json_error: msgspec.ValidationError | None = None
        if json_body:
            if len(body) > self.max_frame_bytes:
                raise self._bad_frame("too_big", f"{len(body)} bytes")
            try:
                decoded = msgspec.json.decode(body, type=OsmAndJson, strict=False)
            except msgspec.ValidationError as exc:
                json_error = exc  # filtered below, once the device is known
                with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                    sender = msgspec.json.decode(body, type=_Sender, strict=False)
            except (msgspec.DecodeError, RecursionError):
                raise self._bad_frame("malformed", "the body is not a JSON object") from None
        token = (
            params.get("id")
            or params.get("deviceid")
            or params.get("device_id")
            or (decoded.device_id if decoded is not None and decoded.device_id else None)
            or (sender.device_id if sender is not None and sender.device_id else None)
            or bearer_token(authorization)
        )
        session = await self.session_for(str(token) if token else None)
        self.metrics.inc("gateway_frames_total", proto="osmand", enc="http")
        self._charge(session, frame_cost(sum(len(k) + len(v) + 2 for k, v in params.items())
                                         + len(body)))  # fmt: skip
        pos: Position | None = None
        bad: Rejection | None = None
        try:
            if json_error is not None:
                raise json_error
            if decoded is not None:
                pos = osmand_json_position(decoded)
            else:
                fields = msgspec.convert(params, OsmAndFields, strict=False)
                pos = osmand_fields_position(fields, params)
        except NoFix:
            await self._no_fix(session, "osmand")
            return Reply(200)
        except (msgspec.ValidationError, Unreadable) as exc:
            bad = self._unreadable(exc)
        ack = await self._store(session, pos, bad)
        if ack.rejected:
            # Still a success: the app resends a fix until it gets one, so a refused fix
            # answered with an error would block every fix behind it. What was filtered is
            # in the counters and in this body.
            return Reply(200, _json.encode(msgspec.to_builtins(ack) | {"type": "ack"}), JSON)
        return Reply(200)

    async def owntracks(self, body: bytes, authorization: str | None) -> Reply:
        """OwnTracks HTTP mode: one JSON message, answered with a JSON array (of commands or
        cards). It sends again whatever was not answered with a success: a message with
        nothing to store, or a filtered fix, is answered [] too."""
        session = await self.session_for(bearer_token(authorization))
        self.metrics.inc("gateway_frames_total", proto="owntracks", enc="http")
        self._charge(session, frame_cost(len(body)))
        if len(body) > self.max_frame_bytes:
            raise self._bad_frame("too_big", f"{len(body)} bytes")
        empty = Reply(200, _EMPTY_ARRAY, JSON)
        if not body.strip():
            await self._no_fix(session, "owntracks")
            return empty
        pos: Position | None = None
        bad: Rejection | None = None
        try:
            msg = msgspec.json.decode(body, type=OwnTracksMessage, strict=False)
            pos = owntracks_message_position(msg)
        except NoFix:
            await self._no_fix(session, "owntracks")
            return empty
        except (msgspec.ValidationError, Unreadable) as exc:
            bad = self._unreadable(exc)
        except (msgspec.DecodeError, RecursionError):
            raise self._bad_frame("malformed", "the body is not a JSON object") from None
        if pos is not None or bad is not None:
            await self._store(session, pos, bad)
        return empty

    async def batch(self, body: bytes, binary: bool, authorization: str | None) -> Reply:
        """The batch POST: one position or an array (JSON, or MessagePack when ``binary``),
        answered with the WebSocket's ack once stored."""
        session = await self.session_for(bearer_token(authorization))
        if len(body) > self.max_frame_bytes:
            raise self._bad_frame("too_big", f"{len(body)} bytes, limit {self.max_frame_bytes}")
        enc = "msgpack" if binary else "json"
        self.metrics.inc("gateway_frames_total", proto="http", enc=enc)
        cost = frame_cost(len(body))
        self._charge(session, cost)
        try:
            positions, bad = decode_frame(
                body if binary else body.decode("utf-8", "replace"), self.max_batch_positions
            )
        except MalformedFrame as exc:
            raise self._bad_frame(exc.reason, str(exc)) from None
        more = len(positions) + len(bad) - cost
        if more > 0:
            self._charge(session, more)
        ack = await self._ingest(session, positions, bad)
        answer = msgspec.to_builtins(ack) | {"type": "ack"}
        if binary:
            return Reply(200, msgspec.msgpack.encode(answer), MSGPACK)
        return Reply(200, _json.encode(answer), JSON)

    # ----- shared steps

    async def session_for(self, token: str | None) -> Session:
        device = await self.device_auth.lookup(token) if token else None
        if device is None:
            self.metrics.inc("gateway_handshakes_refused_total", reason="unknown_device")
            raise ApiError(401, "unknown or revoked device token")
        session = self.sessions.get(device.id)
        if session is None or session.device != device:
            if len(self.sessions) >= SESSION_CACHE:
                self.sessions.clear()
            session = self.sessions[device.id] = await self.writer.open_session(device, "http")
            session.on_progress = session.pulse
        return session

    def _charge(self, session: Session, n: int) -> None:
        """Take ``n`` from the device's budget (shared with its other requests and
        connections), or answer 429 with ``Retry-After``: nothing of the request is stored,
        and the device sends it again later."""
        assert session.bucket is not None
        wait = session.bucket.take_now(n, time.monotonic())
        if wait:
            self.metrics.inc("gateway_device_throttled_total")
            retry = "60" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise ApiError(429, "rate limit exceeded", headers={"Retry-After": retry})

    async def _ingest(
        self, session: Session, positions: list[Position], bad: list[Rejection]
    ) -> Ack:
        await session.submit(positions, bad)
        await session.wait_durable(session.cursor.seq)
        # Rejections of concurrent requests of the device may land in either reply.
        return Ack(session.durable_seq, session.take_rejected())

    async def _store(self, session: Session, pos: Position | None, bad: Rejection | None) -> Ack:
        """Store ``pos`` (or count ``bad``); the ack names what was filtered, and the latest
        of that is kept on the device's record (``Devices.last_filtered``)."""
        if pos is None:
            assert bad is not None
            ack = Ack(session.durable_seq, [bad])
        else:
            ack = await self._ingest(session, [pos], [])
        if ack.rejected:
            r = ack.rejected[-1]
            filtered = Filtered(str(r.reason), time.time(), r.seq, r.detail)
            # Best effort: the fix's own fate is decided; a Redis blip must not fail the
            # answer (the app would resend a fix the gateway has already dealt with).
            with contextlib.suppress(*REDIS_OUTAGE):
                await self.devices.note_filtered(session.device.id, filtered)
        return ack

    async def _no_fix(self, session: Session, proto: str) -> None:
        """A request without coordinates: the device is alive (not offline), nothing is
        stored."""
        self.metrics.inc("gateway_requests_without_fix_total", proto=proto)
        await self.writer.keep_alive(session.device)

    def _bad_frame(self, reason: str, detail: str) -> ApiError:
        self.metrics.inc("gateway_frames_rejected_total", reason=reason)
        return ApiError(400, f"{reason}: {detail}")

    def _unreadable(self, exc: Exception) -> Rejection:
        """A position the app sent that cannot be stored: a field out of range is filtered
        like any refused fix (the answer is still a success: the app would send it again for
        ever); a field of the wrong type, or a time that is not one, is a 400
        (``malformed``): nothing this request holds is a position."""
        if isinstance(exc, msgspec.ValidationError):
            message, where = field_of(exc)
            if out_of_range(message) and not message.startswith("Expected `str`"):
                self.metrics.inc("gateway_positions_rejected_total", reason=Reason.OUT_OF_RANGE)
                return Rejection(None, Reason.OUT_OF_RANGE, f"{where}: {message}")
            self.metrics.inc("gateway_frames_rejected_total", reason="malformed")
            raise ApiError(400, f"malformed: {message}", where)
        self.metrics.inc("gateway_frames_rejected_total", reason="malformed")
        raise ApiError(400, f"malformed: {exc}")
