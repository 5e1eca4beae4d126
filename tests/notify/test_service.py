"""The Notifier end to end: events in, SMS, email and webhooks out, outcomes back in the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import coredis
import trio

from notify import keys
from notify.alerts import AlertStore
from notify.capture.smtp_server import SmtpCaptureServer
from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.channels.email import SmtpEmailChannel
from notify.channels.sms import TwilioSmsChannel
from notify.channels.webhook import WebhookChannel
from notify.deliveries import delivery_key
from notify.events import EVENTS_STREAM, Event
from notify.redis_client import RedisClient
from notify.service import Notifier
from notify.subscriptions import create_subscription

from .receiver import WebhookReceiver

NOON = datetime(2025, 6, 16, 12, 0, tzinfo=UTC).timestamp()
PHONE = "+447700900123"

DELIVERY = {
    "id": "d1",
    "external_id": "ORD-1",
    "route": "r1",
    "stop": "s3",
    "status": "out_for_delivery",
    "address": "1 High St",
    "window": {"start": NOON + 3600, "end": NOON + 3 * 3600},
    "brand": "default",
    "recipient": {
        "name": "Ana",
        "phone": PHONE,
        "email": "ana@example.com",
        "language": "en",
        "timezone": "Europe/London",
        "channels": ["sms", "email"],
    },
}


async def add_event(redis: coredis.Redis[bytes], **event: Any) -> None:
    await redis.xadd(EVENTS_STREAM, {"e": json.dumps(event)})


async def log_events(redis: RedisClient[Any]) -> list[dict[str, Any]]:
    return [json.loads(e.field_values[b"e"]) for e in await redis.xrange(EVENTS_STREAM)]


async def wait_for_events(redis: RedisClient[Any], kind: str, count: int) -> list[Any]:
    for _ in range(500):
        found = [e for e in await log_events(redis) if e["type"] == kind]
        if len(found) >= count:
            return found
        await trio.sleep(0.01)
    raise AssertionError(f"fewer than {count} {kind} events")


async def test_events_become_messages_alerts_and_webhooks(
    redis: coredis.Redis[bytes],
    twilio_server: TwilioCaptureServer,
    smtp_server: SmtpCaptureServer,
    receiver: WebhookReceiver,
    nursery: trio.Nursery,
) -> None:
    twilio_server.status_callbacks = False
    await redis.set(delivery_key("d1"), json.dumps(DELIVERY))
    sub = await create_subscription(redis, receiver.url, ["delivery.*", "notification.*"])
    receiver.secret = sub.secret
    start = trio.current_time()

    def clock() -> float:
        return NOON + (trio.current_time() - start)

    async with (
        TwilioSmsChannel(
            DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, "+15005550006",
            api_base_url=twilio_server.base_url,
        ) as sms,
        SmtpEmailChannel("127.0.0.1", smtp_server.port, "track@shop.example") as email,
        WebhookChannel(redis) as webhook,
    ):  # fmt: skip
        changed: list[str] = []

        async def on_alert(alert: Any) -> None:
            changed.append(alert.status)

        notifier = Notifier(
            redis,
            {"sms": sms, "email": email, "webhook": webhook},
            link_for=lambda d: f"https://gw.example/t/{d}?token=abc",
            alerts=AlertStore(redis, on_alert, clock=clock),
            clock=clock,
        )
        await notifier.ensure_group()
        ofd = {"type": "delivery.out_for_delivery", "ts": NOON, "id": "ev1", "vehicle": "v1",
               "route": "r1", "stop": "s3", "delivery": "d1", "data": {}}  # fmt: skip
        await add_event(redis, **ofd)
        await add_event(redis, **ofd)  # replayed: must not send anything twice
        await add_event(redis, **{**ofd, "id": None, "type": "delivery.eta_changed",
                                   "data": {"eta": NOON + 2 * 3600, "delta_s": 60}})  # fmt: skip
        await add_event(redis, type="vehicle.offline", ts=NOON, vehicle="v1", data={})
        await nursery.start(notifier.run)

        [text] = await twilio_server.wait_for_messages(1)
        [mail] = await smtp_server.wait_for_messages(1)
        sent = await wait_for_events(redis, "notification.sent", 2)
        hooks = await receiver.wait_for(4)
        nursery.cancel_scope.cancel()

    # 13:00-15:00 UTC is 14:00-16:00 in London in June.
    assert text.to == PHONE
    assert "between 2:00 PM and 4:00 PM" in text.body
    assert text.body.endswith("https://gw.example/t/d1?token=abc")
    assert mail.subject == "Your Fleetgate parcel is out for delivery"
    assert "https://gw.example/t/d1?token=abc" in (mail.part("text/html") or "")
    assert {e["data"]["channel"] for e in sent} == {"sms", "email"}
    assert all(e["delivery"] == "d1" for e in sent)

    assert all(h.signature_ok for h in hooks)
    kinds = sorted(json.loads(h.body)["type"] for h in hooks)
    assert kinds == [
        "delivery.eta_changed",
        "delivery.out_for_delivery",
        "notification.sent",
        "notification.sent",
    ]
    # The replayed event queued nothing new, and webhooks wrote no events of their own.
    assert len(twilio_server.requests) == 1 and len(smtp_server.messages) == 1
    assert len([e for e in await log_events(redis) if e["type"].startswith("notification.")]) == 2

    [alert] = await notifier.alerts.list_alerts()
    assert alert.kind == "vehicle.offline" and alert.vehicle == "v1"
    assert changed == ["open"]
    records = await notifier.outbox.list_notifications("d1")
    assert sorted(r.channel for r in records) == ["email", "sms", "webhook", "webhook"]
    assert await redis.get(keys.phone_delivery(PHONE)) == b"d1"


async def test_quiet_hours_hold_customer_messages_until_morning(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer
) -> None:
    late = datetime(2025, 6, 16, 22, 30, tzinfo=UTC).timestamp()
    await redis.set(delivery_key("d1"), json.dumps(DELIVERY))
    async with TwilioSmsChannel(
        DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, "+15005550006", api_base_url=twilio_server.base_url
    ) as sms:
        notifier = Notifier(redis, {"sms": sms}, clock=lambda: late)
        delivered = Event(type="delivery.delivered", ts=late, delivery="d1", id="ev9")
        [(message, status)] = await notifier.handle_event(delivered)
    assert status == "held"
    # 22:30 UTC is 23:30 in London; held until 08:00 London (07:00 UTC).
    assert message.not_before == datetime(2025, 6, 17, 7, 0, tzinfo=UTC).timestamp()
    assert await redis.zcard(keys.SCHEDULED) == 1
