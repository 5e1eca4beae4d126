"""The lean device HTTP server: OsmAnd, OwnTracks and the batch POST on their own port
(``DEVICE_HTTP_PORT``, Traccar's 5055 by default), HTTP/1.1 with keep-alive, parsed with
httptools (llhttp, C) and answered by ``device_http.DeviceRequests``, the same code as the
API port's device endpoints.

Device requests are the hot path of real fleets: thousands of phones each sending a fix a
second. Through the full Quart stack a request costs about a millisecond of CPU; here
parsing and answering cost a few tens of microseconds, and the rest is the ingest path
every protocol shares (validation, the single writer, the ack once stored).

Paths: ``/`` and ``/v1/osmand`` (GET or POST: the Traccar Client's server URL is the server
itself), ``/v1/owntracks`` (POST), ``/v1/positions`` (POST). Requests on one connection are
answered in order, one at a time (a client that pipelines waits its turn; one that sends
faster than its fixes are stored is slowed, its socket unread, and no other). Bounds: the
request line and headers at most ``MAX_HEAD_BYTES``, a body at most ``max_body_bytes``
(413, then the connection closes), an idle connection closed after ``IDLE_TIMEOUT_S``, at
most ``max_connections`` open (beyond, new ones are closed at once and counted).
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Final

import httptools
import trio

from gateway.core.errors import ApiError
from gateway.core.failures import log_once
from gateway.core.metrics import Metrics
from gateway.ingest.device_http import JSON, DeviceRequests, Reply, error_reply, non_empty

log = logging.getLogger(__name__)

MAX_HEAD_BYTES: Final = 16 * 1024
IDLE_TIMEOUT_S: Final = 120.0
RECEIVE_BYTES: Final = 65_536
# After a refusal: what is read and dropped before closing, at most
LINGER_S: Final = 2.0
LINGER_BYTES: Final = 4 * 2**20
REASONS: Final = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
                  405: b"Method Not Allowed", 413: b"Content Too Large",
                  429: b"Too Many Requests", 500: b"Internal Server Error"}  # fmt: skip
OSMAND_PATHS: Final = frozenset({b"/", b"/v1/osmand"})


class _TooLarge(Exception):
    pass


@dataclass(slots=True)
class _Request:
    method: bytes = b""
    url: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    keep_alive: bool = True


class RequestParsing:
    """httptools' callbacks: complete requests go to ``done``, in order."""

    __slots__ = ("body_bytes", "current", "done", "head_bytes", "max_body", "parser", "too_large")

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.current = _Request()
        self.done: list[_Request] = []
        self.head_bytes = 0
        self.body_bytes = 0
        self.too_large: str | None = None  # why the request was too large (httptools wraps
        # a callback's exception in its own)
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.head_bytes = 0
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._too_large("the request line and headers are too long")
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._too_large("the request line and headers are too long")
        self.current.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.current.method = self.parser.get_method()
        self.current.keep_alive = self.parser.should_keep_alive()
        length = self.current.headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body:
            self._too_large(f"the body is larger than {self.max_body} bytes")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.max_body:
            self._too_large(f"the body is larger than {self.max_body} bytes")
        self.current.body.append(body)

    def _too_large(self, why: str) -> None:
        self.too_large = why
        raise _TooLarge(why)

    def on_message_complete(self) -> None:
        self.done.append(self.current)


# The socket read and written directly (``os.read``/``os.write`` on its non-blocking file
# descriptor, trio's ``wait_readable``/``wait_writable`` when it would block): a third of
# what trio's stream layers cost a request, for the same back-pressure and cancellation.


async def receive(fd: int) -> bytes:
    """What the socket has, up to ``RECEIVE_BYTES``; b"" once the client closed it."""
    try:
        data = os.read(fd, RECEIVE_BYTES)
    except BlockingIOError:
        pass
    else:
        await trio.lowlevel.checkpoint()  # data was there at once: let the others run too
        return data
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, RECEIVE_BYTES)
        except BlockingIOError:
            continue


async def send(fd: int, data: bytes) -> None:
    """All of ``data``, waiting while the client does not read."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)


def query_fields(query: bytes) -> dict[str, str]:
    """The fields of a query string, the empty ones left out (as the apps send them): the
    common case (no escapes) split directly, the rest by ``urllib.parse``."""
    text = query.decode("latin-1")
    if "%" in text or "+" in text:
        return non_empty(dict(urllib.parse.parse_qsl(text)))
    out: dict[str, str] = {}
    for pair in text.split("&"):
        name, _, value = pair.partition("=")
        if name and value:
            out[name] = value
    return out


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    head = [
        b"HTTP/1.1 %d %s" % (reply.status, REASONS.get(reply.status, b"")),
        b"Content-Length: %d" % len(reply.body),
        b"Content-Type: " + reply.content_type.encode("latin-1"),
    ]
    for name, value in reply.headers.items():
        head.append(f"{name}: {value}".encode("latin-1"))
    if not keep_alive:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + reply.body


class DeviceHttpServer:
    def __init__(
        self,
        requests: DeviceRequests,
        metrics: Metrics,
        *,
        max_body_bytes: int,
        max_connections: int = 50_000,
    ) -> None:
        self.requests = requests
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.connections = 0
        metrics.gauge_fn("gateway_device_http_connections", lambda: float(self.connections))

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``host:port`` (0: a free port, reported by ``task_status``)."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.max_connections:
            self.metrics.inc("gateway_device_http_refused_total", reason="too_many_connections")
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        try:
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away (a reset connection, a broken pipe)
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        parsing = RequestParsing(self.max_body_bytes)
        # One cancel scope for the connection, its deadline pushed back at each receive
        # (cheaper than a scope per receive): idle too long, the connection closes.
        fd = stream.socket.fileno()
        with trio.CancelScope() as idle:
            while True:
                idle.deadline = trio.current_time() + IDLE_TIMEOUT_S
                data = await receive(fd)
                if not data:
                    return  # closed by the client
                idle.deadline = math.inf
                try:
                    parsing.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    await self._refuse(stream, 400, "no upgrade here: WebSockets go to INGEST_PORT")
                    return
                except (httptools.HttpParserError, _TooLarge) as exc:
                    if parsing.too_large is not None:
                        status = 413 if parsing.current.method else 400
                        await self._refuse(stream, status, parsing.too_large)
                    else:
                        await self._refuse(stream, 400, f"not HTTP/1.1: {exc}")
                    return
                while parsing.done:
                    request = parsing.done.pop(0)
                    reply = await self._answer(request)
                    await send(fd, encode_reply(reply, request.keep_alive))
                    if not request.keep_alive:
                        return

    async def _refuse(self, stream: trio.SocketStream, status: int, message: str) -> None:
        """Answer ``status`` and close, reading (and dropping) what the client still sends
        for a moment: closing a socket with unread data resets the connection, and the
        client might lose the answer."""
        self.metrics.inc("gateway_device_http_refused_total", reason=str(status))
        await stream.send_all(encode_reply(error_reply(ApiError(status, message)), False))
        with trio.move_on_after(LINGER_S):
            await stream.send_eof()
            dropped = 0
            while dropped < LINGER_BYTES and (chunk := await stream.receive_some(RECEIVE_BYTES)):
                dropped += len(chunk)

    async def _answer(self, request: _Request) -> Reply:
        self.metrics.inc("gateway_device_http_requests_total")
        try:
            return await self._route(request)
        except ApiError as exc:
            return error_reply(exc)
        except Exception as exc:  # a bug: this request's 500, the server goes on
            self.metrics.inc("gateway_handler_errors_total", proto="device_http")
            log_once(log, "a device HTTP request failed", exc)
            return error_reply(ApiError(500, "internal error"))

    async def _route(self, r: _Request) -> Reply:
        path, _, query = r.url.partition(b"?")
        body = b"".join(r.body)
        auth_raw = r.headers.get(b"authorization")
        auth = auth_raw.decode("latin-1") if auth_raw is not None else None
        media = r.headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if path in OSMAND_PATHS:
            if r.method not in (b"GET", b"POST"):
                raise ApiError(405, "GET or POST", headers={"Allow": "GET, POST"})
            params = query_fields(query)
            json_body = r.method == b"POST" and media == JSON.encode()
            if r.method == b"POST" and not json_body and body:
                form = urllib.parse.parse_qsl(body.decode("utf-8", "replace"))
                params.update(non_empty(dict(form)))
            return await self.requests.osmand(params, body if json_body else b"", json_body, auth)
        if r.method != b"POST" and path in (b"/v1/owntracks", b"/v1/positions"):
            raise ApiError(405, "POST", headers={"Allow": "POST"})
        if path == b"/v1/owntracks":
            return await self.requests.owntracks(body, auth)
        if path == b"/v1/positions":
            binary = media in (b"application/msgpack", b"application/x-msgpack")
            return await self.requests.batch(body, binary, auth)
        raise ApiError(404, "no such path: /, /v1/osmand, /v1/owntracks or /v1/positions")
