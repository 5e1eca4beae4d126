"""Redis key names of the notification side, in one place.

The outbox keys share the hash tag ``{notify}``: on a Redis Cluster they live in one slot,
so enqueueing (idempotency check, rate limit, stream append), rescheduling and
dead-lettering are each one atomic script or transaction. The outbox carries customer
messages, orders of magnitude fewer than positions, so one slot is not a bottleneck.
"""

from __future__ import annotations

from typing import Final

_P: Final = "notify:{notify}:"

OUTBOX: Final = _P + "outbox"  # stream, field "m": JSON Message
OUTBOX_GROUP: Final = "notify-outbox"
SCHEDULED: Final = _P + "scheduled"  # zset: JSON Message -> due epoch s (retries, holds)
DEAD: Final = _P + "dead"  # stream, fields m (JSON Message), reason, code, ts
OPTOUT_SMS: Final = _P + "optout:sms"  # set of E.164 numbers
EVENTS_GROUP: Final = "notify"  # consumer group of the notifier on the ``events`` stream
# string: id of the newest event the group has handled; a group Redis lost is recreated there
EVENTS_POSITION: Final = "notify:events:position"
WEBHOOKS: Final = "notify:webhooks"  # hash: subscription id -> JSON Subscription
ALERTS_CHANNEL: Final = "notify:alerts"  # pub/sub: JSON Alert on every change


def idempotency(key: str) -> str:
    return f"{_P}idem:{key}"  # string: message id, set once (SET NX)


def rate(bucket: str) -> str:
    return f"{_P}rate:{bucket}"  # counter of messages to one recipient in one window


def record(message_id: str) -> str:
    return f"{_P}msg:{message_id}"  # hash: m, status, provider_id, updated, error


def attempts(message_id: str) -> str:
    return f"{_P}att:{message_id}"  # list of JSON Attempt, oldest first


def by_delivery(delivery_id: str) -> str:
    return f"{_P}dlv:{delivery_id}"  # list of message ids, oldest first


def provider_id(sid: str) -> str:
    return f"{_P}sid:{sid}"  # string: message id of a provider's message id


def phone_delivery(phone: str) -> str:
    return f"{_P}phone:{phone}"  # string: latest delivery id texted at this number


def alert(alert_id: str) -> str:
    return f"notify:{{alerts}}:alert:{alert_id}"  # string: JSON Alert


ALERTS_BY_TIME: Final = "notify:{alerts}:all"  # zset: alert id -> created
ALERTS_OPEN: Final = "notify:{alerts}:open"  # zset: alert id -> created (open or acknowledged)
# zset: alert id -> time of its latest change (raised, bumped, acknowledged, resolved); a
# process whose subscription to ALERTS_CHANNEL had a gap reads back what changed meanwhile
ALERTS_CHANGED: Final = "notify:{alerts}:changed"


def alert_dedupe(key: str) -> str:
    return f"notify:{{alerts}}:key:{key}"  # string: id of the unresolved alert for this key
