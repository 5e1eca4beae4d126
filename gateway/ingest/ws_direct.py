"""trio-websocket with each message handed straight to a callback in the connection's reader.

trio-websocket's reader task puts every message into a memory channel and the handler task
takes it out: two task switches per frame, about half of what a bare loop spends on a small
frame (docs/performance.md). Here the reader awaits ``on_message(message)`` itself.
Otherwise it is the library: the same wsproto parsing, the same size limit and 1009 close,
pings, the closing handshake; and a callback that waits (a full writer queue, a rate limit)
stops this connection's reader and so back-pressures its socket and no other.

The connection reads and writes its socket directly (``FdSocketStream``: ``os.read`` once
trio says the socket is readable, ``os.write`` until it would block), not through trio's
socket wrappers, which first try the call, catch the failure and then wait: at one frame a
second per device that failure was most of the receive cost. And a reply can be sent at once
from whatever task has it (``DirectConnection.send_now``: no task switch, no lock wait) when
nothing else is being sent and the socket takes it; the writer acknowledges that way.

Two more things differ. A callback that raises closes its connection alone with 1011
(``DirectConnection``), where the library would let the exception end the server. And a frame
wsproto cannot parse (a text frame that is not UTF-8) is answered with the close frame
naming why (1007), where the library drops the TCP connection without one.

The library has no public hook for any of this, so ``DirectConnection`` overrides three of
its internals (``WebSocketConnection._handle_message_event``,
``WebSocketConnection._handle_close_connection_event`` and
``WebSocketServer._handle_connection``) and uses more (``_send``, ``_stream``,
``_stream_lock``, ``_wsproto``, ``_abort_web_socket``: ``send_now`` frames with the
connection's wsproto and writes only while its send lock is free), and trio-websocket is
pinned to the version they were written against; ``_check_internals`` fails at import if
that version's internals are not there.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final, cast

import trio
import trio_websocket
from trio_websocket import Endpoint, WebSocketConnection, WebSocketRequest, WebSocketServer
from trio_websocket._impl import CloseReason, _get_stream_endpoint
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from gateway.core.failures import log_once

log = logging.getLogger(__name__)

RECEIVE_BYTES: Final = 65_536

MessageCallback = Callable[[str | bytes], Awaitable[None]]
DirectHandler = Callable[[WebSocketRequest, "DirectConnection"], Awaitable[None]]

CLOSE_INTERNAL_ERROR: Final = 1011  # a frame handler raised

_INTERNALS: Final = {
    WebSocketConnection: (
        "_handle_message_event",
        "_handle_close_connection_event",
        "_reader_task",
        "_get_request",
        "_send",
        "_abort_web_socket",
    ),
    WebSocketServer: ("_handle_connection",),
}
_STATE: Final = (
    "_message_size",
    "_message_parts",
    "_max_message_size",
    "_close_reason",
    "_recv_channel",
    "_reader_running",
    "_handler_nursery",
    "_connect_timeout",
    "_disconnect_timeout",
    "_stream",
    "_stream_lock",
    "_wsproto",
)


def _check_internals() -> None:
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in _INTERNALS.items()
        for name in names
        if not hasattr(cls, name)
    ]
    init_code = WebSocketConnection.__init__.__code__.co_names + (
        WebSocketServer.__init__.__code__.co_names
    )
    missing += [name for name in _STATE if name not in init_code]
    if missing:
        raise ImportError(
            f"trio-websocket {trio_websocket.__version__} lacks internals gateway.ingest.ws_direct "
            f"overrides: {', '.join(missing)}; install the pinned version"
        )


_check_internals()


class FdSocketStream(trio.abc.HalfCloseableStream):
    """A ``SocketStream``'s socket, waited for before it is read and written directly
    (``inner``: the ``SocketStream``, which closes it and names its ends).

    ``backlog``: the unsent end of a message ``DirectConnection.send_now`` started; it goes
    out before anything else is sent."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.backlog = b""

    @property
    def fd(self) -> int:
        """The socket's descriptor, asked each time: once closed, its number may already be
        another socket's."""
        fd: int = self.inner.socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        return fd

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            try:
                await trio.lowlevel.wait_readable(self.fd)
                return os.read(self.fd, max_bytes or RECEIVE_BYTES)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _broken(exc) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.backlog:
            data, self.backlog = self.backlog + bytes(data), b""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_writable(self.fd)
                except OSError as exc:
                    raise _broken(exc) from exc
            except OSError as exc:
                raise _broken(exc) from exc
        await trio.lowlevel.checkpoint()


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the socket was closed")
    return trio.BrokenResourceError(str(exc))


class DirectConnection(WebSocketConnection):
    """A server connection whose messages go to ``on_message`` once it is set (before
    the handshake is accepted, so no message can take the channel's way instead).

    ``on_message`` runs in the connection's reader task, so an exception it raises would
    end the reader and, through the server's nursery, the server. It is caught here
    instead: the connection alone is closed with 1011, ``on_error`` is told, and the
    traceback is logged (once per place it was raised, so a device repeating a frame that
    trips a bug cannot flood the log)."""

    on_message: MessageCallback | None = None
    on_error: Callable[[Exception], None] | None = None

    async def _handle_message_event(self, event: BytesMessage | TextMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            await super()._handle_message_event(event)
            return
        data = event.data
        self._message_size += len(data)
        self._message_parts.append(bytes(data) if isinstance(data, bytearray) else data)
        if self._message_size > self._max_message_size:
            # As the library does: close with 1009 and stop reading.
            err = f"Exceeded maximum message size: {self._max_message_size} bytes"
            self._message_size = 0
            self._message_parts = []
            self._close_reason = CloseReason(1009, err)
            await self._send(CloseConnection(code=1009, reason=err))
            await self._recv_channel.aclose()
            self._reader_running = False
        elif event.message_finished:
            parts = self._message_parts
            message: str | bytes
            if len(parts) == 1:
                message = parts[0]
            elif isinstance(event, BytesMessage):
                message = b"".join(cast("list[bytes]", parts))
            else:
                message = "".join(cast("list[str]", parts))
            self._message_size = 0
            self._message_parts = []
            try:
                await on_message(message)
            except Exception as exc:
                await self._internal_error(exc)

    @property
    def local(self) -> Endpoint | str:
        stream = self._stream
        inner = stream.inner if isinstance(stream, FdSocketStream) else stream
        return _get_stream_endpoint(inner, local=True)

    @property
    def remote(self) -> Endpoint | str:
        stream = self._stream
        inner = stream.inner if isinstance(stream, FdSocketStream) else stream
        return _get_stream_endpoint(inner, local=False)

    def can_send_now(self) -> bool:
        """Whether ``send_now`` would send: open, nothing else being sent, nothing left over."""
        stream = self._stream
        return (
            self._close_reason is None
            and not self._stream_lock.locked()
            and isinstance(stream, FdSocketStream)
            and not stream.backlog
            and self._wsproto.state == ConnectionState.OPEN
        )

    def send_now(self, message: str | bytes) -> bool:
        """Send ``message`` without waiting (only when ``can_send_now``). True: the socket
        took only part of it; the rest is in the stream's ``backlog``, which ``flush`` (or the
        next send) sends. A broken socket is left for the reader to notice."""
        stream = cast("FdSocketStream", self._stream)
        event = (
            TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        )
        data = self._wsproto.send(event)
        try:
            n = os.write(stream.fd, data)
        except BlockingIOError:
            n = 0
        except (OSError, trio.ClosedResourceError):
            return False
        if n < len(data):
            stream.backlog = data[n:]
            return True
        return False

    async def flush(self) -> None:
        """Send what ``send_now`` left over, if anything."""
        stream = self._stream
        if isinstance(stream, FdSocketStream) and stream.backlog:
            async with self._stream_lock:
                try:
                    await stream.send_all(b"")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._abort_web_socket()

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        # wsproto reports a frame it cannot parse (a text frame that is not UTF-8: 1007, a
        # protocol error: 1002) as a close event while the connection is still open; the
        # library then drops TCP without telling the peer why. Send the close frame first.
        if self._wsproto.state == ConnectionState.OPEN:
            self._close_reason = CloseReason(event.code, event.reason or None)
            await self._send(CloseConnection(code=event.code, reason=event.reason))
        await super()._handle_close_connection_event(event)

    async def _internal_error(self, exc: Exception) -> None:
        log_once(log, "a frame handler failed; its connection is closed (1011)", exc)
        if self.on_error is not None:
            self.on_error(exc)
        self._close_reason = CloseReason(CLOSE_INTERNAL_ERROR, "internal error")
        await self._send(CloseConnection(code=CLOSE_INTERNAL_ERROR, reason="internal error"))
        await self._recv_channel.aclose()
        self._reader_running = False


class DirectServer(WebSocketServer):
    """``WebSocketServer`` making ``DirectConnection``s; its handler gets the connection
    with the request, to set ``on_message`` before accepting."""

    def __init__(
        self,
        handler: DirectHandler,
        listeners: list[trio.SocketListener],
        *,
        handler_nursery: trio.Nursery | None,
        max_message_size: int,
        receive_buffer_size: int | None,
    ) -> None:
        async def unused(request: WebSocketRequest) -> None:  # the base class wants one
            raise AssertionError("DirectServer calls its direct handler")

        super().__init__(
            unused,
            listeners,
            handler_nursery=handler_nursery,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
        )
        self._direct_handler = handler

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        # WebSocketServer._handle_connection with the connection class swapped.
        if isinstance(stream, trio.SocketStream):
            stream = FdSocketStream(stream)
        async with trio.open_nursery() as nursery:
            connection = DirectConnection(
                stream,
                WSConnection(ConnectionType.SERVER),
                message_queue_size=self._message_queue_size,
                max_message_size=self._max_message_size,
                receive_buffer_size=self._receive_buffer_size,
            )
            nursery.start_soon(connection._reader_task)
            with trio.move_on_after(self._connect_timeout) as connect_scope:
                request = await connection._get_request()
            if connect_scope.cancelled_caught:
                nursery.cancel_scope.cancel()
                await stream.aclose()
                return
            try:
                await self._direct_handler(request, connection)
            finally:
                with trio.move_on_after(self._disconnect_timeout):
                    await connection.aclose()
                nursery.cancel_scope.cancel()


async def serve_direct(
    handler: DirectHandler,
    host: str | None,
    port: int,
    *,
    handler_nursery: trio.Nursery | None = None,
    max_message_size: int,
    receive_buffer_size: int | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``trio_websocket.serve_websocket`` (plain TCP) with ``DirectServer``."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = DirectServer(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
    )
    await server.run(task_status=task_status)
