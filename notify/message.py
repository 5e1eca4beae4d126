"""The message: one rendered notification for one recipient on one channel.

A message is self-contained: a channel sends it without looking anything up (except the
webhook channel, which reads the subscription's current URL and secret). Its ``id`` is
derived from its idempotency key, so the same trigger always names the same message.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

MESSAGE_ID_PREFIX: Final = "ntf_"


def message_id(idempotency_key: str) -> str:
    """Stable id of the message for an idempotency key."""
    return MESSAGE_ID_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """What the outbox stores and a channel sends.

    ``to`` is a phone number (sms), an email address (email) or a subscription id (webhook).
    ``attempt`` counts the attempts already made. ``not_before`` (epoch s, 0 = now) holds a
    message back, for quiet hours; a message still unsent at ``expires_at`` is dropped as
    no longer useful (an "arriving" text an hour late helps nobody).
    """

    id: str
    key: str
    channel: str
    to: str
    trigger: str
    text: str
    created: float
    subject: str = ""
    html: str = ""
    delivery: str | None = None
    event: str | None = None  # id of the event that caused it
    not_before: float = 0.0
    expires_at: float | None = None
    urgent: bool = False
    attempt: int = 0


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider said when it accepted a message."""

    provider_id: str | None = None
    status: str = "sent"
    detail: str = ""


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Message)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(raw: bytes | str) -> Message:
    return _decoder.decode(raw)
