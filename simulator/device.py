"""The wire client of one simulated device.

A :class:`DeviceClient` numbers the fixes it is given, keeps every position until the gateway
acknowledges or rejects it, and sends over a trio-websocket connection. While disconnected it
buffers (bounded: the oldest positions are dropped and counted); after a reconnect it resends
everything unacknowledged in batches. Acks may be coalesced and name the highest seq durably
accepted; a resent position reported as ``duplicate`` was already stored and counts as acked.
"""

from __future__ import annotations

import enum
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from .stats import DeviceStats
from .vehicle import Fix
from .wire import Ack, BadReply, Encoding, ErrorReply, Position, decode_reply, encode_frame

log = logging.getLogger(__name__)

CLOSE_POLICY: Final = 1008  # rate limit or other policy violation
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN: Final = 1013
CLOSE_GOING_AWAY: Final = 1001
TRY_AGAIN_MIN_S: Final = 5.0  # the gateway asked for patience: never come back sooner
DUPLICATE: Final = "duplicate"

TokenRefresher = Callable[[str], Awaitable[str]]
_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """How a device talks to the gateway."""

    url: str  # ws://host:port/v1/ingest
    encoding: Encoding = Encoding.JSON
    batch: int = 1  # positions per frame in normal operation; 1 sends bare objects
    resend_batch: int = 100  # positions per frame when catching up on a backlog
    max_backlog: int = 10_000  # unacked positions kept; beyond it the oldest are dropped
    disconnect_probability: float = 0.0  # chance per frame of a simulated network loss
    offline_s: tuple[float, float] = (2.0, 20.0)  # how long a simulated loss lasts
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 10.0
    drain_s: float = 3.0  # on stop, how long to wait for the last acks
    token_in_query: bool = False  # send ?token= instead of the Authorization header

    def __post_init__(self) -> None:
        if self.batch < 1 or self.resend_batch < 1:
            raise ValueError("batch sizes must be at least 1")
        if self.max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        if not 0.0 <= self.disconnect_probability <= 1.0:
            raise ValueError("disconnect_probability must be between 0 and 1")
        _Target.parse(self.url)


class _End(enum.Enum):
    STOPPED = "stopped"  # stop() was honoured
    OFFLINE = "offline"  # simulated network loss
    CLOSED = "closed"  # the gateway or the network ended the connection


class DeviceClient:
    """One device: call :meth:`submit` with fixes, run :meth:`run` in a nursery."""

    def __init__(
        self,
        device_id: str,
        token: str,
        config: DeviceConfig,
        *,
        seed: int | None = None,
        refresh_token: TokenRefresher | None = None,
    ) -> None:
        self.device_id = device_id
        self.token = token
        self.config = config
        self.stats = DeviceStats()
        self._rng = random.Random(seed)
        self._refresh_token = refresh_token
        self._backlog: deque[Position] = deque()  # unacked, in seq order
        self._next_seq = 1
        self._sent_upto = 0  # highest seq sent on the current connection
        self._max_sent = 0  # highest seq ever sent, to tell resends from first sends
        self._batch = config.batch
        self._resend_batch = max(config.batch, config.resend_batch)
        self._wakeup = trio.Event()
        self._replied = trio.Event()
        self._stop = trio.Event()
        self._close_code: int | None = None
        self._got_ack = False

    @property
    def backlog(self) -> list[Position]:
        """Positions not yet acknowledged or rejected, oldest first."""
        return list(self._backlog)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def submit(self, fix: Fix) -> int:
        """Queue a fix for sending and return its seq. Never blocks."""
        seq = self._next_seq
        self._next_seq += 1
        self._backlog.append(Position.from_fix(seq, fix))
        self.stats.submitted += 1
        if len(self._backlog) > self.config.max_backlog:
            self._backlog.popleft()
            self.stats.dropped += 1
        self.stats.unacked = len(self._backlog)
        self._wakeup.set()
        return seq

    def stop(self) -> None:
        """Ask :meth:`run` to flush, wait up to ``drain_s`` for acks, close and return."""
        self._stop.set()
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, send and reconnect with backoff until :meth:`stop` or cancellation.

        Network and protocol failures never escape; unexpected errors are logged, counted in
        ``stats.crashes`` and followed by a reconnect.
        """
        task_status.started()
        failures = 0
        while not self._stop.is_set():
            self._got_ack = False
            self._close_code = None
            try:
                end = await self._session()
            except ConnectionRejected as exc:
                self.stats.handshake_failures += 1
                failures += 1
                if exc.status_code in (401, 403):
                    self.stats.auth_failures += 1
                    log.warning(
                        "%s: handshake refused (%s): %r", self.device_id, exc.status_code, exc.body
                    )
                    await self._refresh()
                delay = self._backoff(failures)
            except (
                HandshakeError,
                OSError,
                trio.BrokenResourceError,
                trio.TooSlowError,
                ConnectionClosed,
            ) as exc:
                self.stats.handshake_failures += 1
                failures += 1
                log.debug("%s: cannot connect: %r", self.device_id, exc)
                delay = self._backoff(failures)
            except Exception:
                self.stats.crashes += 1
                failures += 1
                log.exception("%s: unexpected error, reconnecting", self.device_id)
                delay = self._backoff(failures)
            else:
                if end is _End.STOPPED:
                    return
                if self._got_ack:
                    failures = 0
                if end is _End.OFFLINE:
                    delay = self._rng.uniform(*self.config.offline_s)
                else:
                    failures += 1
                    delay = self._backoff(failures)
                    code = self._close_code
                    if code is not None:
                        self.stats.closes[code] += 1
                    if code == CLOSE_TOO_BIG:
                        self._batch = max(1, self._batch // 2)
                        self._resend_batch = max(1, self._resend_batch // 2)
                    elif code == CLOSE_TRY_AGAIN:
                        delay = max(delay, TRY_AGAIN_MIN_S)
            with trio.move_on_after(delay):
                await self._stop.wait()

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter, so a fleet does not reconnect in lockstep."""
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** min(failures - 1, 30))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def _refresh(self) -> None:
        if self._refresh_token is None:
            return
        try:
            self.token = await self._refresh_token(self.device_id)
        except Exception as exc:
            log.warning("%s: could not get a new token: %r", self.device_id, exc)

    def _connect_args(self) -> tuple[str, list[tuple[bytes, bytes]]]:
        if self.config.token_in_query:
            sep = "&" if "?" in self.config.url else "?"
            return f"{self.config.url}{sep}token={quote(self.token, safe='')}", []
        return self.config.url, [(b"Authorization", f"Bearer {self.token}".encode())]

    async def _session(self) -> _End:
        url, headers = self._connect_args()
        target = _Target.parse(url)
        with trio.fail_after(self.config.connect_timeout_s):
            stream = await target.open_stream()
        try:
            return await self._session_over(stream, target, headers)
        except BaseExceptionGroup as group:
            raise _sole_error(group) from None
        finally:
            # trio-websocket leaves the socket open when the server rejects the handshake or
            # closes first; owning the stream lets us always close it.
            await trio.aclose_forcefully(stream)

    async def _session_over(
        self, stream: _Stream, target: _Target, headers: list[tuple[bytes, bytes]]
    ) -> _End:
        timeout = self.config.connect_timeout_s
        async with trio.open_nursery() as nursery:
            with trio.fail_after(timeout):
                ws = await wrap_client_stream(
                    nursery, stream, target.host_header, target.resource, extra_headers=headers
                )
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            self.stats.connected = True
            self._sent_upto = 0  # whatever the last connection sent but got no ack for, resend
            end = _End.CLOSED
            try:
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(self._reader, ws, tasks.cancel_scope)
                    end = await self._writer(ws)
                    tasks.cancel_scope.cancel()
            finally:
                self.stats.connected = False
            if end is not _End.CLOSED:
                with trio.move_on_after(timeout):
                    if end is _End.OFFLINE:
                        await ws.aclose(CLOSE_GOING_AWAY, "simulated network loss")
                    else:
                        await ws.aclose()
            nursery.cancel_scope.cancel()
        return end

    async def _reader(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        try:
            while True:
                self.handle_reply(await ws.get_message())
        except ConnectionClosed as exc:
            self._closed(exc)
            scope.cancel()

    def _closed(self, exc: ConnectionClosed) -> None:
        if exc.reason is not None and self._close_code is None:
            self._close_code = exc.reason.code
            log.debug("%s: connection closed: %s", self.device_id, exc.reason)

    async def _writer(self, ws: WebSocketConnection) -> _End:
        while True:
            self._wakeup = trio.Event()
            stopping = self._stop.is_set()
            pending = self._pending()
            if pending and (stopping or len(pending) >= self._batch):
                size = self._batch if len(pending) < 2 * self._batch else self._resend_batch
                for start in range(0, len(pending), size):
                    chunk = pending[start : start + size]
                    if len(chunk) < self._batch and not stopping:
                        break
                    try:
                        await self._send(ws, chunk)
                    except ConnectionClosed as exc:
                        self._closed(exc)
                        return _End.CLOSED
                    if self._rng.random() < self.config.disconnect_probability:
                        self.stats.simulated_disconnects += 1
                        return _End.OFFLINE
                continue
            if stopping:
                with trio.move_on_after(self.config.drain_s):
                    while self._backlog:
                        await self._replied.wait()
                return _End.STOPPED
            await self._wakeup.wait()

    def _pending(self) -> list[Position]:
        out: list[Position] = []
        for p in reversed(self._backlog):
            if p.seq <= self._sent_upto:
                break
            out.append(p)
        out.reverse()
        return out

    async def _send(self, ws: WebSocketConnection, chunk: list[Position]) -> None:
        await ws.send_message(encode_frame(chunk, self.config.encoding))
        self.stats.frames += 1
        for p in chunk:
            if p.seq > self._max_sent:
                self.stats.sent += 1
            else:
                self.stats.resent += 1
        self._max_sent = max(self._max_sent, chunk[-1].seq)
        self._sent_upto = chunk[-1].seq

    def handle_reply(self, message: str | bytes) -> None:
        """Apply one message from the gateway to the backlog and the counters."""
        try:
            reply = decode_reply(message)
        except BadReply as exc:
            self.stats.bad_replies += 1
            log.debug("%s: unreadable reply: %s", self.device_id, exc)
            return
        if isinstance(reply, ErrorReply):
            self.stats.errors[reply.reason] += 1
        else:
            self._apply_ack(reply)
        self._replied.set()
        self._replied = trio.Event()

    def _apply_ack(self, ack: Ack) -> None:
        self._got_ack = True
        if ack.seq >= self._next_seq:
            self._resync(ack.seq)
            return
        stats = self.stats
        for rejection in ack.rejected:
            if rejection.seq is None:
                stats.errors[rejection.reason] += 1
            elif self._remove(rejection.seq):
                if rejection.reason == DUPLICATE:
                    stats.acked += 1
                    stats.duplicates += 1
                else:
                    stats.rejected[rejection.reason] += 1
        backlog = self._backlog
        while backlog and backlog[0].seq <= ack.seq:
            backlog.popleft()
            stats.acked += 1
        stats.unacked = len(backlog)

    def _remove(self, seq: int) -> bool:
        """Drop one position from the backlog; False if it is not there (already settled)."""
        for i, p in enumerate(self._backlog):
            if p.seq == seq:
                del self._backlog[i]
                return True
            if p.seq > seq:
                break
        return False

    def _resync(self, gateway_seq: int) -> None:
        """The gateway has seqs from an earlier run of this device: number on after them.

        Every seq this client has used is below ``gateway_seq``, so shifting them all by it keeps
        their order, puts them after what the gateway has, and never collides with replies
        still on their way about the old numbers (those find nothing in the backlog).
        """
        shift = gateway_seq
        self._backlog = deque(msgspec.structs.replace(p, seq=p.seq + shift) for p in self._backlog)
        self._next_seq += shift
        self._max_sent += shift
        self._sent_upto = shift
        self.stats.resyncs += 1
        log.info("%s: gateway is at seq %d, continuing after it", self.device_id, gateway_seq)
        self._wakeup.set()


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a ``ws://`` or ``wss://`` URL points."""

    host: str
    port: int
    secure: bool
    resource: str  # path and query

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a WebSocket URL: {url!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, secure, resource)

    @property
    def host_header(self) -> str:
        default = 443 if self.secure else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    async def open_stream(self) -> _Stream:
        if self.secure:
            return await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=ssl.create_default_context()
            )
        return await trio.open_tcp_stream(self.host, self.port)


def _sole_error(group: BaseExceptionGroup) -> BaseException:
    """The one real error in a nursery's group (cancellations aside), else the group."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            elif not isinstance(exc, trio.Cancelled):
                leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group
