"""Webhook subscriptions and the signed webhook channel, against a local receiver."""

from __future__ import annotations

import json
import time

import coredis
import pytest

from notify.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    sign,
    verify_signature,
)
from notify.errors import PermanentError, TransientError
from notify.message import Message, message_id
from notify.subscriptions import (
    InvalidSubscription,
    UnknownSubscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    update_subscription,
)

from .receiver import WebhookReceiver

BODY = json.dumps({"type": "delivery.delivered", "ts": 1.0, "delivery": "d1", "data": {}})


def hook(sub_id: str) -> Message:
    key = f"wh:{sub_id}:1-0"
    return Message(
        id=message_id(key), key=key, channel="webhook", to=sub_id,
        trigger="delivery.delivered", text=BODY, created=time.time(),
    )  # fmt: skip


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"a":1}'
    sig = sign("s3cret", 1000, body)
    assert sig.startswith("v1=")
    assert verify_signature("s3cret", "1000", body, sig, now=1000)
    assert not verify_signature("s3cret", "1000", b'{"a":2}', sig, now=1000)
    assert not verify_signature("other", "1000", body, sig, now=1000)
    assert not verify_signature("s3cret", "1001", body, sig, now=1000)  # timestamp is signed
    assert not verify_signature("s3cret", "1000", body, sig, tolerance_s=300, now=1301)  # replay
    assert verify_signature("s3cret", "1000", body, f"v1=00ff, {sig}", now=1000)  # rotation
    assert not verify_signature("s3cret", "soon", body, sig, now=1000)


async def test_delivery_is_signed_and_verified_by_the_receiver(
    redis: coredis.Redis[bytes], receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(redis, receiver.url, ["delivery.*"])
    receiver.secret = sub.secret
    async with WebhookChannel(redis) as channel:
        result = await channel.send(hook(sub.id))
    [got] = await receiver.wait_for(1)
    assert result.status == "204"
    assert got.signature_ok
    assert got.body == BODY.encode()
    assert got.headers["idempotency-key"] == hook(sub.id).id
    assert got.headers["fleetgate-event"] == "delivery.delivered"
    assert abs(int(got.headers[TIMESTAMP_HEADER.lower()]) - time.time()) < 5
    assert got.headers[SIGNATURE_HEADER.lower()].startswith("v1=")


async def test_wrong_secret_fails_verification(
    redis: coredis.Redis[bytes], receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(redis, receiver.url)
    receiver.secret = "not-the-secret"
    async with WebhookChannel(redis) as channel:
        await channel.send(hook(sub.id))
    [got] = await receiver.wait_for(1)
    assert not got.signature_ok


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (500, {}, TransientError, None),
        (503, {"Retry-After": "12"}, TransientError, 12.0),
        (429, {"Retry-After": "7"}, TransientError, 7.0),
        (410, {}, PermanentError, None),
        (400, {}, PermanentError, None),
        (301, {"Location": "http://elsewhere.example/"}, PermanentError, None),
    ],
)
async def test_receiver_answers_map_to_errors(
    redis: coredis.Redis[bytes],
    receiver: WebhookReceiver,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    sub = await create_subscription(redis, receiver.url)
    receiver.answer_next(1, status, headers)
    async with WebhookChannel(redis) as channel:
        with pytest.raises(error) as info:
            await channel.send(hook(sub.id))
    if isinstance(info.value, TransientError):
        assert info.value.retry_after_s == retry_after
    else:
        assert isinstance(info.value, PermanentError) and info.value.code == status


async def test_deleted_or_disabled_subscription_is_permanent(
    redis: coredis.Redis[bytes], receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(redis, receiver.url)
    async with WebhookChannel(redis) as channel:
        await update_subscription(redis, sub.id, active=False)
        with pytest.raises(PermanentError, match="disabled"):
            await channel.send(hook(sub.id))
        await delete_subscription(redis, sub.id)
        with pytest.raises(PermanentError, match="deleted"):
            await channel.send(hook(sub.id))
    assert receiver.received == []


async def test_subscription_crud(redis: coredis.Redis[bytes]) -> None:
    a = await create_subscription(redis, "https://a.example/hook", ["delivery.*"], clock=lambda: 1)
    b = await create_subscription(redis, "https://b.example/hook", ["*"], clock=lambda: 2)
    assert [s.id for s in await list_subscriptions(redis)] == [a.id, b.id]
    assert "secret" not in a.public() and a.public(with_secret=True)["secret"] == a.secret
    assert a.wants("delivery.delivered") and not a.wants("vehicle.offline")
    assert b.wants("vehicle.offline")
    rotated = await update_subscription(redis, a.id, events=["delivery.failed"], rotate_secret=True)
    assert rotated.secret != a.secret and rotated.events == ("delivery.failed",)
    assert await get_subscription(redis, a.id) == rotated
    assert await delete_subscription(redis, a.id)
    assert not await delete_subscription(redis, a.id)
    with pytest.raises(UnknownSubscription):
        await update_subscription(redis, a.id, active=False)


@pytest.mark.parametrize(
    ("url", "events"),
    [("ftp://a.example/", ["*"]), ("https:///nohost", ["*"]), ("https://u:p@a.example/", ["*"]),
     ("https://a.example/", []), ("https://a.example/", ["deli*ery"]), ("http://[1:2]/", ["*"]),
     ("http://[::1/", ["*"]), ("https://a.example:99999/", ["*"]), ("https://a.example:x/", ["*"])],
)  # fmt: skip
async def test_invalid_subscriptions_are_refused(
    redis: coredis.Redis[bytes], url: str, events: list[str]
) -> None:
    with pytest.raises(InvalidSubscription):
        await create_subscription(redis, url, events)
