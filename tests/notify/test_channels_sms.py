"""The Twilio SMS channel against the local Twilio-compatible server."""

from __future__ import annotations

import socket
import time

import pytest

from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.channels.sms import TwilioSmsChannel
from notify.errors import PermanentError, RecipientOptedOut, TransientError
from notify.message import Message, message_id

FROM = "+15005550006"


def sms(to: str = "+447700900123", text: str = "Your parcel is on its way") -> Message:
    key = f"test:{to}:{text}"
    return Message(
        id=message_id(key), key=key, channel="sms", to=to, trigger="test", text=text,
        created=time.time(),
    )  # fmt: skip


def channel(server: TwilioCaptureServer, **kw: object) -> TwilioSmsChannel:
    return TwilioSmsChannel(
        DEFAULT_ACCOUNT_SID,
        DEFAULT_AUTH_TOKEN,
        FROM,
        api_base_url=server.base_url,
        **kw,  # type: ignore[arg-type]
    )


async def test_send_reaches_server_with_status_callback(twilio_server: TwilioCaptureServer) -> None:
    twilio_server.status_callbacks = False
    async with channel(twilio_server, status_callback_url="http://example.test/cb") as ch:
        result = await ch.send(sms())
    [got] = twilio_server.messages
    assert result.provider_id == got.sid and got.sid.startswith("SM")
    assert result.status == "queued"
    assert (got.to, got.from_, got.body) == ("+447700900123", FROM, "Your parcel is on its way")
    assert got.status_callback == "http://example.test/cb"


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(twilio_server: TwilioCaptureServer, status: int) -> None:
    twilio_server.fail_next(1, status)
    async with channel(twilio_server) as ch:
        with pytest.raises(TransientError) as info:
            await ch.send(sms())
    assert str(status) in info.value.reason
    assert twilio_server.messages == []


async def test_429_is_transient_with_retry_after(twilio_server: TwilioCaptureServer) -> None:
    twilio_server.fail_next(1, 429, code=20429, retry_after=17)
    async with channel(twilio_server) as ch:
        with pytest.raises(TransientError) as info:
            await ch.send(sms())
    assert info.value.retry_after_s == 17


async def test_invalid_number_is_permanent_with_code(twilio_server: TwilioCaptureServer) -> None:
    async with channel(twilio_server) as ch:
        with pytest.raises(PermanentError) as info:
            await ch.send(sms(to="12345"))
    assert info.value.code == 21211
    assert not isinstance(info.value, RecipientOptedOut)


async def test_unsubscribed_recipient_is_an_opt_out(twilio_server: TwilioCaptureServer) -> None:
    twilio_server.fail_next(1, 400, code=21610)
    async with channel(twilio_server) as ch:
        with pytest.raises(RecipientOptedOut) as info:
            await ch.send(sms())
    assert info.value.code == 21610


async def test_bad_credentials_are_permanent(twilio_server: TwilioCaptureServer) -> None:
    ch = TwilioSmsChannel(DEFAULT_ACCOUNT_SID, "wrong", FROM, api_base_url=twilio_server.base_url)
    async with ch:
        with pytest.raises(PermanentError) as info:
            await ch.send(sms())
    assert info.value.code == 20003


async def test_unreachable_provider_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with TwilioSmsChannel(
        DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FROM, api_base_url=f"http://127.0.0.1:{port}"
    ) as ch:
        with pytest.raises(TransientError):
            await ch.send(sms())
