"""Email over SMTP with aiosmtplib.

aiosmtplib is asyncio code; it runs here through trio-asyncio (an asyncio loop on top of
trio, opened when the channel is entered) and nowhere else in the project. Each message is
sent as multipart/alternative (text and HTML) on its own connection, upgraded with STARTTLS
when the server offers it (or always, with ``starttls=True``), after a login when
credentials are configured.

SMTP replies map to the domain errors by their class: 4xx and lost connections are
transient, 5xx permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Final, Self

import aiosmtplib
import trio
import trio_asyncio

from ..errors import PermanentError, TransientError
from ..message import Message, SendResult

DEFAULT_TIMEOUT_S: Final = 30.0
CLOSE_GRACE_S: Final = 1.0
_CLOSE_POLL_S: Final = 0.005
_DRAIN_ROUNDS: Final = 3  # loop iterations for close callbacks scheduled with call_soon


class SmtpEmailChannel:
    """Sends ``Message`` as email from ``from_addr`` through the SMTP server at ``host:port``.

    ``starttls``: ``None`` upgrades when offered, ``True`` requires it, ``False`` never
    upgrades. ``use_tls`` connects with implicit TLS (port 465) instead. ``tls_context``
    replaces the default verification (tests pass one trusting their own certificate).

    Must be entered (``async with``) before ``send``: that opens the asyncio loop the
    library runs on; the loop closes when the block exits.
    """

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        from_addr: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool | None = None,
        use_tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        reply_to: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.from_addr = from_addr
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.tls_context = tls_context
        self.reply_to = reply_to
        self.timeout_s = timeout_s
        self._stack: contextlib.AsyncExitStack | None = None
        self._loop: Any = None

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        self._loop = await stack.enter_async_context(trio_asyncio.open_loop())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, loop = self._stack, self._loop
        self._stack = self._loop = None
        if stack is None:
            return
        with trio.CancelScope(shield=True):
            await _let_connections_close(loop)
        await stack.__aexit__(exc_type, exc, tb)

    def build(self, message: Message) -> EmailMessage:
        """The MIME message for ``message``; its Message-ID is derived from the message id,
        so a repeated send (see the outbox's in-flight window) can be recognised."""
        mail = EmailMessage()
        mail["From"] = self.from_addr
        mail["To"] = message.to
        mail["Subject"] = message.subject or message.trigger
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        domain = self.from_addr.rpartition("@")[2] or "localhost"
        mail["Message-ID"] = f"<{message.id}@{domain}>"
        if self.reply_to:
            mail["Reply-To"] = self.reply_to
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def send(self, message: Message) -> SendResult:
        if self._loop is None:
            raise RuntimeError("SmtpEmailChannel must be entered (async with) before send")
        mail = self.build(message)
        options: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "timeout": self.timeout_s,
            "use_tls": self.use_tls,
            "start_tls": None if self.use_tls else self.starttls,
        }
        if self.username is not None:
            options["username"] = self.username
            options["password"] = self.password or ""
        if self.tls_context is not None:
            options["tls_context"] = self.tls_context
        try:
            send = trio_asyncio.aio_as_trio(aiosmtplib.send, loop=self._loop)
            _, reply = await send(mail, **options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _from_code(
                min((r.code for r in exc.recipients), default=550),
                f"recipient refused: {'; '.join(r.message for r in exc.recipients)}",
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _from_code(exc.code, f"smtp {exc.code}: {exc.message}") from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentError(
                f"smtp server does not support what is configured: {exc}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"smtp connection failed: {exc!r}") from None
        return SendResult(provider_id=str(mail["Message-ID"]), status="sent", detail=reply)


async def _let_connections_close(loop: Any) -> None:
    """Give connections that are shutting down a moment to finish before the loop closes.

    A TLS connection closes with an exchange of close_notify alerts after QUIT, and a
    refused TLS handshake releases its socket in a later loop callback; closing the loop
    before either happens leaks the socket. Waits at most ``CLOSE_GRACE_S``.
    """
    sleep = trio_asyncio.aio_as_trio(asyncio.sleep, loop=loop)
    # asyncio's selector loop keeps its live transports here (fd -> transport); there is no
    # public way to ask whether connections are still open.
    transports = getattr(loop, "_transports", {})
    deadline = trio.current_time() + CLOSE_GRACE_S
    while trio.current_time() < deadline and any(
        t is not None and not t.is_closing() for t in list(transports.values())
    ):
        await sleep(_CLOSE_POLL_S)
    for _ in range(_DRAIN_ROUNDS):
        await sleep(0)


def _from_code(code: int, reason: str) -> TransientError | PermanentError:
    if 400 <= code < 500:
        return TransientError(reason)
    return PermanentError(reason, code=code)
