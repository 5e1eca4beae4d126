"""The SMTP email channel against a real local aiosmtpd server."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from notify.capture.smtp_server import SmtpCaptureServer
from notify.channels.email import SmtpEmailChannel
from notify.errors import PermanentError, TransientError
from notify.message import Message, message_id


def mail(to: str = "ana@example.com") -> Message:
    key = f"test:{to}"
    return Message(
        id=message_id(key),
        key=key,
        channel="email",
        to=to,
        trigger="out_for_delivery",
        subject="Your parcel is on its way",
        text="Plain text body",
        html="<p>HTML <b>body</b></p>",
        created=time.time(),
    )


@pytest.fixture
async def tls_smtp(
    nursery: trio.Nursery, tls_files: tuple[Path, Path]
) -> AsyncIterator[SmtpCaptureServer]:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpCaptureServer(
        tls_context=context, require_starttls=True, credentials={"mailer": "s3cret"}
    )
    await nursery.start(server.run)
    yield server


def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


async def test_multipart_message_is_delivered(smtp_server: SmtpCaptureServer) -> None:
    message = mail()
    async with SmtpEmailChannel("127.0.0.1", smtp_server.port, "track@shop.example") as ch:
        result = await ch.send(message)
    [got] = await smtp_server.wait_for_messages(1)
    assert got.mail_from == "track@shop.example"
    assert got.rcpt_tos == ("ana@example.com",)
    assert got.subject == "Your parcel is on its way"
    assert got.message.get_content_type() == "multipart/alternative"
    assert (got.part("text/plain") or "").strip() == "Plain text body"
    assert (got.part("text/html") or "").strip() == "<p>HTML <b>body</b></p>"
    # The Message-ID is derived from the message id, so a repeat is recognisable.
    assert got.message["Message-ID"] == f"<{message.id}@shop.example>"
    assert result.provider_id == got.message["Message-ID"]
    assert not got.tls


async def test_starttls_and_login(
    tls_smtp: SmtpCaptureServer, tls_files: tuple[Path, Path]
) -> None:
    async with SmtpEmailChannel(
        "127.0.0.1",
        tls_smtp.port,
        "track@shop.example",
        username="mailer",
        password="s3cret",
        starttls=True,
        tls_context=client_tls(tls_files),
    ) as ch:
        await ch.send(mail())
    [got] = await tls_smtp.wait_for_messages(1)
    assert got.tls
    assert got.authenticated_as == "mailer"


async def test_wrong_password_is_permanent(
    tls_smtp: SmtpCaptureServer, tls_files: tuple[Path, Path]
) -> None:
    async with SmtpEmailChannel(
        "127.0.0.1",
        tls_smtp.port,
        "track@shop.example",
        username="mailer",
        password="nope",
        starttls=True,
        tls_context=client_tls(tls_files),
    ) as ch:
        with pytest.raises(PermanentError) as info:
            await ch.send(mail())
    assert info.value.code == 535
    assert tls_smtp.messages == []


async def test_untrusted_certificate_is_refused(tls_smtp: SmtpCaptureServer) -> None:
    async with SmtpEmailChannel(
        "127.0.0.1", tls_smtp.port, "track@shop.example", username="mailer", password="s3cret"
    ) as ch:
        with pytest.raises((TransientError, PermanentError)):
            await ch.send(mail())
    assert tls_smtp.messages == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 Try again later", TransientError), ("550 5.1.1 No such user", PermanentError)],
)
async def test_recipient_refusal_maps_by_reply_class(
    smtp_server: SmtpCaptureServer, reply: str, error: type[Exception]
) -> None:
    smtp_server.reject_next(1, reply)
    async with SmtpEmailChannel("127.0.0.1", smtp_server.port, "track@shop.example") as ch:
        with pytest.raises(error) as info:
            await ch.send(mail())
        assert reply[4:] in str(info.value)
        await ch.send(mail())  # the next one goes through
    assert len(await smtp_server.wait_for_messages(1)) == 1


async def test_unreachable_server_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SmtpEmailChannel("127.0.0.1", port, "track@shop.example", timeout_s=2) as ch:
        with pytest.raises(TransientError):
            await ch.send(mail())


async def test_send_outside_the_channel_block_is_an_error() -> None:
    ch = SmtpEmailChannel("127.0.0.1", 25, "track@shop.example")
    with pytest.raises(RuntimeError):
        await ch.send(mail())
