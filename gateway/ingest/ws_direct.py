"""trio-websocket with each message handed straight to a callback in the connection's reader.

trio-websocket's reader task puts every message into a memory channel and the handler task
takes it out: two task switches per frame, about half of what a bare loop spends on a small
frame (docs/performance.md). Here the reader awaits ``on_message(message)`` itself.
Otherwise it is the library: the same wsproto parsing, the same size limit and 1009 close,
pings, the closing handshake; and a callback that waits (a full writer queue, a rate limit)
stops this connection's reader and so back-pressures its socket and no other.

Two more things differ. A callback that raises closes its connection alone with 1011
(``DirectConnection``), where the library would let the exception end the server. And a frame
wsproto cannot parse (a text frame that is not UTF-8) is answered with the close frame
naming why (1007), where the library drops the TCP connection without one.

The library has no public hook for any of this, so ``DirectConnection`` overrides three of
its internals (``WebSocketConnection._handle_message_event``,
``WebSocketConnection._handle_close_connection_event`` and
``WebSocketServer._handle_connection``) and trio-websocket is pinned to the version they
were written against; ``_check_internals`` fails at import if that version's internals are
not there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, cast

import trio
import trio_websocket
from trio_websocket import WebSocketConnection, WebSocketRequest, WebSocketServer
from trio_websocket._impl import CloseReason
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from gateway.core.failures import log_once

log = logging.getLogger(__name__)

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
