"""Delivery records as the notifier needs them, and how it finds them.

The gateway keeps one JSON object per delivery at ``dlv:{dispatch}:<id>``.
``DeliveryLookup`` is the one method the notifier needs from that store, so the gateway may
hand in its own (cached) implementation; ``RedisDeliveryLookup`` reads the key directly.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal, Protocol

import msgspec

from .redis_client import RedisClient

log = logging.getLogger(__name__)

ChannelName = Literal["sms", "email", "webhook"]
CUSTOMER_CHANNELS: Final = ("sms", "email")


class Window(msgspec.Struct, frozen=True):
    """Promised delivery window, epoch seconds."""

    start: float
    end: float


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    phone: str | None = None
    email: str | None = None
    language: str = "en"
    timezone: str = "UTC"
    channels: tuple[str, ...] = ()


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    external_id: str | None = None
    route: str | None = None
    stop: str | None = None
    status: str = "pending"
    address: Any = None
    window: Window | None = None
    brand: str = "default"
    recipient: Recipient = msgspec.field(default_factory=Recipient)


class DeliveryLookup(Protocol):
    """Where the notifier reads delivery records from."""

    async def get(self, delivery_id: str) -> Delivery | None:
        """The delivery, or ``None`` if it does not exist."""
        ...


def delivery_key(delivery_id: str) -> str:
    # The gateway's dispatch store writes it; the braces are literal: every dispatch key
    # shares the Redis Cluster hash tag {dispatch}, so a change is one single-slot MULTI/EXEC.
    return f"dlv:{{dispatch}}:{delivery_id}"


_decoder: Final = msgspec.json.Decoder(Delivery)


def decode_delivery(raw: bytes | str) -> Delivery:
    return _decoder.decode(raw)


class RedisDeliveryLookup:
    """Reads ``dlv:{dispatch}:<id>`` on every call (no cache)."""

    def __init__(self, redis: RedisClient[Any]) -> None:
        self.redis = redis

    async def get(self, delivery_id: str) -> Delivery | None:
        raw = await self.redis.get(delivery_key(delivery_id))
        if raw is None:
            return None
        try:
            return decode_delivery(raw)
        except msgspec.ValidationError as exc:
            log.warning("delivery %s has an unreadable record: %s", delivery_id, exc)
            return None
