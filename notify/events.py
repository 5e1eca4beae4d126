"""The event log entry as the notification side reads and writes it.

Every entry of the Redis Stream ``EVENTS_STREAM`` has one field ``e`` holding this object as
JSON. The stream's name carries the ``{dispatch}`` hash tag of the gateway's route and delivery
records: on a Redis Cluster it shares their slot, so a change of a delivery and its events are
written in one MULTI/EXEC.
Unknown fields are kept out of the Struct but tolerated, so the gateway can add to events
without breaking the notifier.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

EVENTS_STREAM: Final = "events:{dispatch}"
EVENT_FIELD: Final = "e"

# The notifier's own records; they are never turned into customer messages or alerts, so
# a notification can not trigger another notification.
NOTIFICATION_SENT: Final = "notification.sent"
NOTIFICATION_FAILED: Final = "notification.failed"
NOTIFICATION_DELIVERED: Final = "notification.delivered"
NOTIFICATION_PREFIX: Final = "notification."


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the event log."""

    type: str
    ts: float
    id: str | None = None
    vehicle: str | None = None
    route: str | None = None
    stop: str | None = None
    delivery: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def is_notification(self) -> bool:
        return self.type.startswith(NOTIFICATION_PREFIX)


_decoder: Final = msgspec.json.Decoder(Event)
_encoder: Final = msgspec.json.Encoder()


def decode_event(raw: bytes | str) -> Event:
    """Decode the ``e`` field of an ``events`` entry; raises ``msgspec.ValidationError``."""
    return _decoder.decode(raw)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)
