"""A local SMTP server that keeps what it receives, for the tests and the demo.

aiosmtpd runs its own asyncio loop in a thread; ``start()``/``stop()`` wrap that, and
``run`` is the same as a trio service (``port = await nursery.start(server.run)``). It binds
port 0 unless told otherwise and reports the real port. It can offer STARTTLS, require a
login, and refuse the next recipients with a given reply (4xx or 5xx).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import trio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True, slots=True)
class CapturedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: float
    authenticated_as: str | None
    tls: bool

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def part(self, content_type: str) -> str | None:
        """Decoded body of the first part of ``content_type`` ("text/plain", "text/html")."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return str(part.get_content())
        return None


class _Handler:
    def __init__(self, owner: SmtpCaptureServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.owner._next_rejection()
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        login = session.auth_data
        self.owner._add(
            CapturedEmail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=parsed,
                received_at=time.time(),
                authenticated_as=login.login.decode() if isinstance(login, LoginPassword) else None,
                tls=session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's threaded controller, bound to a socket of our own so port 0 works."""

    def _create_server(self) -> Any:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.hostname, self.port))
        self.port = sock.getsockname()[1]
        return self.loop.create_server(self._factory_invoker, sock=sock, ssl=self.ssl_context)


class SmtpCaptureServer:
    """SMTP on ``host:port``; ``messages`` holds what was accepted, oldest first.

    ``tls_context`` offers STARTTLS (``require_starttls`` makes it mandatory);
    ``credentials`` (login -> password) requires AUTH LOGIN/PLAIN, over TLS when TLS is
    offered.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.messages: list[CapturedEmail] = []
        self._lock = threading.Lock()
        self._rejections: list[str] = []
        self._credentials = dict(credentials) if credentials else None
        kwargs: dict[str, Any] = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        if self._credentials is not None:
            kwargs["authenticator"] = self._authenticate
            # Without TLS, AUTH is accepted but not required: aiosmtpd warns on every
            # connection that requires AUTH in plain text.
            kwargs["auth_required"] = tls_context is not None
            kwargs["auth_require_tls"] = tls_context is not None
        self._controller: _Controller | None = None
        self._smtp_kwargs = kwargs
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._arrived = trio.Event()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self._credentials is None:
            return AuthResult(success=False, handled=False)
        expected = self._credentials.get(data.login.decode())
        ok = expected is not None and expected == data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def reject_next(self, count: int, reply: str) -> None:
        """Answer the next ``count`` RCPT commands with ``reply`` (e.g. "451 4.3.0 busy")."""
        with self._lock:
            self._rejections.extend([reply] * count)

    def _next_rejection(self) -> str | None:
        with self._lock:
            return self._rejections.pop(0) if self._rejections else None

    def _add(self, captured: CapturedEmail) -> None:
        with self._lock:
            self.messages.append(captured)
        token = self._trio_token
        if token is not None:
            try:
                token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

    def start(self) -> int:
        """Start the server thread; returns the bound port."""
        if self._controller is not None:
            raise RuntimeError("already started")
        # A plain selector loop, not the policy's: with trio-asyncio imported, the policy
        # would hand out a trio-asyncio loop, which can not run in a thread of its own.
        loop = asyncio.SelectorEventLoop()
        controller = _Controller(
            _Handler(self), hostname=self.host, port=self.port, loop=loop, **self._smtp_kwargs
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """The server as a trio service: reports the port, stops when cancelled."""
        self._trio_token = trio.lowlevel.current_trio_token()
        port = await trio.to_thread.run_sync(self.start)
        try:
            task_status.started(port)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.stop)
            self._trio_token = None

    async def wait_for_messages(self, count: int) -> list[CapturedEmail]:
        """Wait until at least ``count`` messages were accepted (only while ``run`` runs)."""
        while len(self.messages) < count:
            await self._arrived.wait()
        return self.messages
