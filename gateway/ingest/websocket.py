"""Device WebSocket ingest (trio-websocket server on its own port).

Handshake: the token comes as ``Authorization: Bearer ...`` or ``?token=``; a missing,
unknown or revoked token is refused with HTTP 401 and the reason as the body.
Frames: JSON text or MessagePack binary, one position or an array. Replies in the frame's
encoding: ``{"type": "ack", "seq": N, "rejected": [...]}`` (coalesced: one ack may cover
several frames) and ``{"type": "error", "reason": ..., "detail": ...}`` for a frame that
could not be read at all. A bad frame never closes the connection.
Close codes: 1008 the device kept exceeding its rate limit, 1009 frame too big,
4001 replaced by a newer connection of the same device (over the per-device limit),
4003 device revoked.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Final

import trio
from trio_websocket import ConnectionClosed, Endpoint, WebSocketRequest

from gateway.core.metrics import Metrics
from gateway.fleet.devices import DeviceRecord
from gateway.ingest.auth import DeviceAuth, bearer
from gateway.ingest.wire import Ack, ErrorReply, MalformedFrame, decode_frame, encode_reply
from gateway.ingest.writer import Ingest, Session, TokenBucket, frame_cost
from gateway.ingest.ws_direct import DirectConnection, serve_direct

log = logging.getLogger(__name__)

CLOSE_RATE_LIMIT: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_REPLACED: Final = 4001
CLOSE_REVOKED: Final = 4003
CLOSE_TIMEOUT_S: Final = 2.0
BAD_AUTH_PER_S: Final = 1 / 6  # failed handshakes an address earns back: 10 a minute
MAX_TRACKED_IPS: Final = 100_000
MAX_PENDING_ERRORS: Final = 16  # error replies a connection holds while the device reads none


class _Conn:
    """One device connection: its session, its reply state and a way to close it.

    Acks: when the writer has made the device's positions durable it calls ``progress``,
    which sends the ack there and then (``DirectConnection.send_now``: no task switch) unless
    an ack went out less than ``ack_interval_s`` ago, an error reply is waiting or another
    send is under way; then the connection's ack task sends it, at most once per
    ``ack_interval_s``, so a device streaming fast gets a few acks a second, each covering
    every frame made durable meanwhile."""

    def __init__(self, ws: DirectConnection, session: Session, ack_interval_s: float) -> None:
        self.ws = ws
        self.ack_interval_s = ack_interval_s
        self.session = session
        self.binary = False
        self.errors: list[tuple[ErrorReply, bool]] = []  # with the encoding of their frame
        self.errors_dropped = 0
        self.wake = trio.Event()
        self.kick_code: int | None = None
        self.kick_reason = ""
        self.scope = trio.CancelScope()
        # What the reader waits in (a rate-limit pause, room in the writer's queue); a kick
        # cancels it, so the reader goes on to read the close handshake at once.
        self.reader_wait = trio.CancelScope()
        self.sent_seq = session.durable_seq
        self.acked_at = -math.inf  # monotonic time of the last ack
        session.on_progress = self.progress

    def error(self, reply: ErrorReply, binary: bool) -> None:
        """Queue an error reply; past ``MAX_PENDING_ERRORS`` unsent (a device that does not
        read its replies) they are dropped and counted."""
        if len(self.errors) < MAX_PENDING_ERRORS:
            self.errors.append((reply, binary))
        else:
            self.errors_dropped += 1
        self.wake.set()

    def reader_waits(self) -> trio.CancelScope:
        """A new scope for the reader to wait in (a scope serves one ``with`` only)."""
        self.reader_wait = trio.CancelScope()
        return self.reader_wait

    def kick(self, code: int, reason: str) -> None:
        self.kick_code = code
        self.kick_reason = reason
        self.scope.cancel()
        self.reader_wait.cancel()

    def progress(self) -> None:
        """Positions of this device became durable, or were rejected: acknowledge."""
        session = self.session
        seq = session.durable_seq
        if seq == self.sent_seq and not session.rejected:
            return
        now = time.monotonic()
        ws = self.ws
        if self.errors or now - self.acked_at < self.ack_interval_s or not ws.can_send_now():
            self.wake.set()
            return
        left_over = ws.send_now(encode_reply(Ack(seq, session.take_rejected()), self.binary))
        self.sent_seq = seq
        self.acked_at = now
        if left_over:
            self.wake.set()

    async def ack_loop(self) -> None:
        try:
            await self._ack_loop()
        except ConnectionClosed:
            pass  # the receive loop notices too and ends the connection

    async def _ack_loop(self) -> None:
        ws = self.ws
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            await ws.flush()
            errors, self.errors = self.errors, []
            for err, binary in errors:
                await ws.send_message(encode_reply(err, binary))
            rejected = self.session.take_rejected()
            seq = self.session.durable_seq
            if rejected or seq != self.sent_seq:
                wait = self.acked_at + self.ack_interval_s - time.monotonic()
                if wait > 0:
                    await trio.sleep(wait)
                    rejected += self.session.take_rejected()
                    seq = self.session.durable_seq
                await ws.send_message(encode_reply(Ack(seq, rejected), self.binary))
                self.sent_seq = seq
                self.acked_at = time.monotonic()


class WebSocketIngest:
    def __init__(
        self,
        ingest: Ingest,
        auth: DeviceAuth,
        metrics: Metrics,
        *,
        max_frame_bytes: int,
        max_batch_positions: int,
        flood_close_after_s: float,
        max_connections_per_device: int,
        ack_interval_s: float,
        max_connections_per_ip: int = 10_000,
        bad_auth_burst: int = 20,
    ) -> None:
        self.ingest = ingest
        self.auth = auth
        self.metrics = metrics
        self.max_frame_bytes = max_frame_bytes
        self.max_batch_positions = max_batch_positions
        self.flood_close_after_s = flood_close_after_s
        self.max_connections_per_device = max_connections_per_device
        self.ack_interval_s = ack_interval_s
        self.max_connections_per_ip = max_connections_per_ip
        self.bad_auth_burst = bad_auth_burst
        self.ip_connections: dict[str, int] = {}
        self.bad_auth: dict[str, TokenBucket] = {}
        self._frames_key = {
            False: metrics.key("gateway_frames_total", proto="ws", enc="json"),
            True: metrics.key("gateway_frames_total", proto="ws", enc="msgpack"),
        }
        self.connections: dict[str, list[_Conn]] = {}
        metrics.gauge_fn(
            "gateway_device_connections",
            lambda: float(sum(len(c) for c in self.connections.values())),
        )

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; reports the bound port through ``task_status``."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_direct(
                    self.handle,
                    host,
                    port,
                    handler_nursery=nursery,
                    max_message_size=self.max_frame_bytes,
                    task_status=task_status,
                )
            )
            task_status.started(server.port)

    def kick_device(self, device_id: str, code: int, reason: str) -> None:
        for conn in list(self.connections.get(device_id, ())):
            conn.kick(code, reason)

    def _bad_auth_bucket(self, ip: str) -> TokenBucket:
        bucket = self.bad_auth.get(ip)
        if bucket is None:
            if len(self.bad_auth) > MAX_TRACKED_IPS:
                self.bad_auth.clear()
            bucket = self.bad_auth[ip] = TokenBucket(
                BAD_AUTH_PER_S, self.bad_auth_burst, time.monotonic()
            )
        return bucket

    async def handle(self, request: WebSocketRequest, connection: DirectConnection) -> None:
        remote = request.remote
        ip = str(remote.address) if isinstance(remote, Endpoint) else str(remote)
        # An address that keeps presenting bad tokens is refused before any lookup.
        bad = self.bad_auth.get(ip)
        if (bad is not None and bad.take(0, time.monotonic()) > 0) or (
            bad is not None and bad.tokens < 1
        ):
            self.metrics.inc("gateway_handshakes_refused_total", reason="ip_blocked")
            await request.reject(429, body=b"too many failed attempts from this address")
            return
        if self.ip_connections.get(ip, 0) >= self.max_connections_per_ip:
            self.metrics.inc("gateway_handshakes_refused_total", reason="ip_connections")
            await request.reject(429, body=b"too many connections from this address")
            return
        token = bearer(request.headers, request.path)
        if token is None:
            self.metrics.inc("gateway_handshakes_refused_total", reason="missing_token")
            await request.reject(401, body=b"missing token: send Authorization: Bearer <token>")
            return
        device = await self.auth.lookup(token)
        if device is None:
            self.metrics.inc("gateway_handshakes_refused_total", reason="unknown_device")
            self._bad_auth_bucket(ip).take(1, time.monotonic())
            await request.reject(401, body=b"unknown or revoked device token")
            return
        self.ip_connections[ip] = self.ip_connections.get(ip, 0) + 1
        try:
            await self._serve_device(request, connection, device)
        finally:
            left = self.ip_connections.get(ip, 1) - 1
            if left:
                self.ip_connections[ip] = left
            else:
                self.ip_connections.pop(ip, None)

    async def _serve_device(
        self, request: WebSocketRequest, connection: DirectConnection, device: DeviceRecord
    ) -> None:
        session = await self.ingest.open_session(device, "ws")
        assert session.bucket is not None
        conn = _Conn(connection, session, self.ack_interval_s)
        # Frames are handled in the connection's reader task, set up before accepting.
        connection.on_message = _Receiver(self, conn, session.bucket).on_message
        connection.on_error = self._frame_failed
        ws = await request.accept()
        conns = self.connections.setdefault(device.id, [])
        conns.append(conn)
        while len(conns) > self.max_connections_per_device:
            conns.pop(0).kick(CLOSE_REPLACED, "replaced by a newer connection of this device")
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.ack_loop)
                    try:
                        await ws.get_message()  # no message comes this way: waits for the end
                    except ConnectionClosed:
                        pass
                    nursery.cancel_scope.cancel()
        finally:
            if conn in conns:
                conns.remove(conn)
            if not conns:
                self.connections.pop(device.id, None)
            closed = ws.closed
            if closed is not None and closed.code == CLOSE_TOO_BIG:
                self.metrics.inc("gateway_frames_rejected_total", reason="too_big")
            elif closed is not None and closed.code == CLOSE_INTERNAL_ERROR:
                self.metrics.inc("gateway_connections_closed_total", code=str(closed.code))
            if conn.kick_code is not None:
                self.metrics.inc("gateway_connections_closed_total", code=str(conn.kick_code))
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cs:
                cs.shield = True
                await ws.aclose(conn.kick_code or 1000, conn.kick_reason or None)
                await self.ingest.save_budget(device)

    def _frame_failed(self, exc: Exception) -> None:
        """A device's frame raised: its connection is closed with 1011 (``ws_direct``)."""
        self.metrics.inc("gateway_handler_errors_total", proto="ws", error=type(exc).__name__)


class _Receiver:
    """One connection's frames, handled as its reader task reads them."""

    __slots__ = ("bucket", "conn", "frames_key", "ingest", "metrics", "server", "session",
                 "throttled_since")  # fmt: skip

    def __init__(self, server: WebSocketIngest, conn: _Conn, bucket: TokenBucket) -> None:
        self.server = server
        self.conn = conn
        self.session = conn.session
        self.bucket = bucket
        self.ingest = server.ingest
        self.metrics = server.metrics
        self.frames_key = server._frames_key
        self.throttled_since: float | None = None

    async def on_message(self, message: str | bytes) -> None:
        conn = self.conn
        if conn.kick_code is not None:
            return  # closing: what the device still had in flight is not read
        metrics = self.metrics
        binary = isinstance(message, bytes)
        conn.binary = binary
        metrics.add(self.frames_key[binary])
        # Charged before decoding, valid or not: garbage costs budget like positions do. The
        # common case, a budget with room, takes it here without a wait.
        cost = frame_cost(len(message))
        bucket = self.bucket
        wait = bucket.take_now(cost, time.monotonic())
        if wait:
            if not await self._throttled(cost, wait):
                return
        else:
            self.throttled_since = None
        server = self.server
        try:
            positions, bad = decode_frame(message, server.max_batch_positions)
        except MalformedFrame as exc:
            metrics.inc("gateway_frames_rejected_total", reason=exc.reason)
            conn.error(ErrorReply(exc.reason, str(exc)), binary)
            return
        more = len(positions) + len(bad) - cost  # each position costs one
        if more > 0:
            wait = bucket.take_now(more, time.monotonic())
            if wait and not await self._throttled(more, wait):
                return
        left = self.session.offer(positions, bad)
        if left is not None:  # the writer's queue is full: wait for room (unless kicked;
            with conn.reader_waits():  # then these were never acked and the device resends)
                await self.ingest.enqueue(self.session, left)

    async def _throttled(self, n: int, wait: float) -> bool:
        """The device's budget lacks ``n`` tokens for ``wait`` seconds: wait for them and take
        them (which back-pressures this device's socket and nobody else's). False: the
        connection is being closed (1008: the wait would be longer than
        ``FLOOD_CLOSE_AFTER_S``, or the device has been throttled that long without a pause)
        and the frame is dropped unacknowledged, so the device resends it later."""
        conn = self.conn
        now = time.monotonic()
        self.metrics.inc("gateway_device_throttled_total")
        flood_s = self.server.flood_close_after_s
        if self.throttled_since is None:
            self.throttled_since = now
        if wait > flood_s or now + wait - self.throttled_since > flood_s:
            conn.kick(CLOSE_RATE_LIMIT, "rate limit exceeded")
            return False
        with conn.reader_waits():
            await trio.sleep(wait)
        if conn.kick_code is not None:
            return False
        self.bucket.take(n, time.monotonic())
        return True
