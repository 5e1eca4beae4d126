"""The outbox against real Redis and the Twilio capture server.

Timing tests run on virtual time (``virtual_clock``): the outbox's wall clock is derived from
trio's clock, so retry and hold times are asserted exactly. Claim tests run on real time,
because the idle time XAUTOCLAIM looks at is measured by Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import coredis
import pytest
import trio
from trio.testing import MockClock

from notify import keys
from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.channels.sms import TwilioSmsChannel
from notify.message import Message, message_id
from notify.optouts import is_opted_out, opt_out
from notify.outbox import Attempt, NotificationRecord, Outbox, OutboxConfig, RateLimit

from .conftest import clock_from

EPOCH = 1_750_000_000.0
PHONE = "+447700900123"
# The scheduler sleeps until the next due message, so virtual time jumps straight there.
FAST = OutboxConfig(
    jitter=0.0,
    backoff_base_s=2.0,
    backoff_factor=2.0,
    max_attempts=5,
    scheduler_max_sleep_s=3600.0,
    claim_interval_s=3600.0,
)


class Watch:
    """Outcome hook for an outbox: wait for a message's outcome without polling."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Attempt]] = []
        self._changed = trio.Event()

    async def hook(self, message: Message, attempt: Attempt) -> None:
        self.seen.append((message.id, attempt))
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, mid: str, outcome: str) -> None:
        while not any(m == mid and a.outcome == outcome for m, a in self.seen):
            await self._changed.wait()


def sms(
    n: int = 0,
    *,
    to: str = PHONE,
    created: float = EPOCH,
    delivery: str | None = "d1",
    **kw: object,
) -> Message:
    key = f"dlv:{delivery}:test:{n}"
    return Message(
        id=message_id(key),
        key=key,
        channel="sms",
        to=to,
        trigger="test",
        text=f"message {n}",
        created=created,
        delivery=delivery,
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def sms_channel(server: TwilioCaptureServer) -> AsyncIterator[TwilioSmsChannel]:
    async with TwilioSmsChannel(
        DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, "+15005550006", api_base_url=server.base_url
    ) as channel:
        yield channel


async def wait_record(
    outbox: Outbox, mid: str, statuses: set[str], tries: int = 2000
) -> NotificationRecord:
    """Poll until the message's record has one of ``statuses``."""
    for _ in range(tries):
        record = await outbox.get_record(mid)
        if record is not None and record.status in statuses:
            return record
        await trio.sleep(0.01)
    raise AssertionError(f"{mid} never reached {statuses}: {await outbox.get_record(mid)}")


def outcomes(record: NotificationRecord) -> list[str]:
    return [a.outcome for a in record.attempts]


async def test_each_trigger_is_queued_and_sent_once(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST)
        statuses: list[str] = []

        async def enqueue(message: Message) -> None:
            statuses.append(await outbox.enqueue(message))

        async with trio.open_nursery() as n:
            for _ in range(10):
                n.start_soon(enqueue, sms(1))
        assert sorted(statuses) == ["duplicate"] * 9 + ["queued"]
        assert await outbox.enqueue(sms(2)) == "queued"

        await nursery.start(outbox.run)
        await wait_record(outbox, sms(1).id, {"sent"})
        await wait_record(outbox, sms(2).id, {"sent"})
        # Nothing is left anywhere that could send again.
        assert await redis.xlen(keys.OUTBOX) == 0
        assert await redis.zcard(keys.SCHEDULED) == 0
        assert await outbox.pending_count() == 0
        assert await outbox.enqueue(sms(1)) == "duplicate"
        assert sorted(m.body for m in twilio_server.messages) == ["message 1", "message 2"]
        nursery.cancel_scope.cancel()


async def test_retries_on_500_with_exponential_backoff(
    virtual_clock: MockClock,
    redis: coredis.Redis[bytes],
    twilio_server: TwilioCaptureServer,
    nursery: trio.Nursery,
) -> None:
    clock = clock_from(trio.current_time, EPOCH)
    twilio_server.fail_next(2, 500)
    async with sms_channel(twilio_server) as channel:
        watch = Watch()
        outbox = Outbox(redis, {"sms": channel}, FAST, clock=clock, on_outcome=watch.hook)
        t0 = clock()
        await outbox.enqueue(sms(created=t0))
        await nursery.start(outbox.run)
        await watch.wait(sms().id, "sent")
        record = await wait_record(outbox, sms().id, {"sent"})
        nursery.cancel_scope.cancel()
    assert outcomes(record) == ["retry", "retry", "sent"]
    times = [a.ts - t0 for a in record.attempts]
    assert times == pytest.approx([0.0, 2.0, 6.0], abs=1e-6)
    assert [a.retry_at for a in record.attempts[:2]] == pytest.approx([t0 + 2, t0 + 6])
    assert "500" in (record.attempts[0].error or "")
    assert len(twilio_server.requests) == 3 and len(twilio_server.messages) == 1


async def test_429_waits_for_retry_after(
    virtual_clock: MockClock,
    redis: coredis.Redis[bytes],
    twilio_server: TwilioCaptureServer,
    nursery: trio.Nursery,
) -> None:
    clock = clock_from(trio.current_time, EPOCH)
    twilio_server.fail_next(1, 429, code=20429, retry_after=30)
    async with sms_channel(twilio_server) as channel:
        watch = Watch()
        outbox = Outbox(redis, {"sms": channel}, FAST, clock=clock, on_outcome=watch.hook)
        t0 = clock()
        await outbox.enqueue(sms(created=t0))
        await nursery.start(outbox.run)
        await trio.sleep(29.5)
        assert len(twilio_server.requests) == 1
        await watch.wait(sms().id, "sent")
        record = await wait_record(outbox, sms().id, {"sent"})
        nursery.cancel_scope.cancel()
    assert [a.ts - t0 for a in record.attempts] == pytest.approx([0.0, 30.0], abs=1e-6)


async def test_jitter_spreads_retries_within_bounds() -> None:
    import random

    config = OutboxConfig(backoff_base_s=10.0, jitter=0.25)
    rng = random.Random(7)
    delays = [config.retry_delay(1, rng) for _ in range(200)]
    assert min(delays) >= 7.5 and max(delays) <= 12.5
    assert len({round(d, 3) for d in delays}) > 100
    assert config.retry_delay(30, rng) <= config.backoff_max_s * 1.25


async def test_invalid_number_is_dead_lettered_with_reason(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    seen: list[Attempt] = []

    async def on_outcome(message: Message, attempt: Attempt) -> None:
        seen.append(attempt)

    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST, on_outcome=on_outcome)
        message = sms(to="+1555")  # too short for E.164: the provider refuses it
        await outbox.enqueue(message)
        await nursery.start(outbox.run)
        record = await wait_record(outbox, message.id, {"dead"})
        nursery.cancel_scope.cancel()
    [dead] = await outbox.dead_letters()
    assert dead.message == message
    assert dead.code == 21211 and "21211" in dead.reason
    assert outcomes(record) == ["dead"] and record.error == dead.reason
    assert [a.outcome for a in seen] == ["dead"]
    assert outbox.counters == {"dead": 1}
    assert twilio_server.messages == [] and len(twilio_server.requests) == 1


async def test_exhausted_retries_are_dead_lettered(
    virtual_clock: MockClock,
    redis: coredis.Redis[bytes],
    twilio_server: TwilioCaptureServer,
    nursery: trio.Nursery,
) -> None:
    clock = clock_from(trio.current_time, EPOCH)
    twilio_server.fail_next(10, 503)
    config = replace(FAST, max_attempts=3)
    async with sms_channel(twilio_server) as channel:
        watch = Watch()
        outbox = Outbox(redis, {"sms": channel}, config, clock=clock, on_outcome=watch.hook)
        t0 = clock()
        await outbox.enqueue(sms())
        await nursery.start(outbox.run)
        await watch.wait(sms().id, "dead")
        record = await wait_record(outbox, sms().id, {"dead"})
        nursery.cancel_scope.cancel()
    assert outcomes(record) == ["retry", "retry", "dead"]
    assert [a.ts - t0 for a in record.attempts] == pytest.approx([0, 2, 6], abs=1e-6)
    [dead] = await outbox.dead_letters()
    assert dead.reason.startswith("gave up after 3 attempts")
    assert len(twilio_server.requests) == 3


async def test_opted_out_number_is_never_attempted(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    await opt_out(redis, PHONE)
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST)
        await outbox.enqueue(sms(1))
        await outbox.enqueue(sms(2, to="+447700900999"))
        await nursery.start(outbox.run)
        record = await wait_record(outbox, sms(1).id, {"suppressed"})
        await wait_record(outbox, sms(2, to="+447700900999").id, {"sent"})
        nursery.cancel_scope.cancel()
    assert record.attempts[0].error == "recipient opted out of SMS"
    assert [r.form["To"] for r in twilio_server.requests] == ["+447700900999"]


async def test_unsubscribed_error_records_an_opt_out(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    twilio_server.fail_next(1, 400, code=21610)
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST)
        await outbox.enqueue(sms(1))
        await nursery.start(outbox.run)
        await wait_record(outbox, sms(1).id, {"dead"})
        assert await is_opted_out(redis, PHONE)
        await outbox.enqueue(sms(2))
        await wait_record(outbox, sms(2).id, {"suppressed"})
        nursery.cancel_scope.cancel()
    assert len(twilio_server.requests) == 1


async def test_held_message_is_sent_when_the_hold_ends(
    virtual_clock: MockClock,
    redis: coredis.Redis[bytes],
    twilio_server: TwilioCaptureServer,
    nursery: trio.Nursery,
) -> None:
    clock = clock_from(trio.current_time, EPOCH)
    async with sms_channel(twilio_server) as channel:
        watch = Watch()
        outbox = Outbox(redis, {"sms": channel}, FAST, clock=clock, on_outcome=watch.hook)
        await nursery.start(outbox.run)
        t0 = clock()
        assert await outbox.enqueue(sms(not_before=t0 + 100)) == "held"
        await trio.sleep(99)
        assert twilio_server.requests == []
        assert (await wait_record(outbox, sms().id, {"held"})).status == "held"
        await watch.wait(sms().id, "sent")
        record = await wait_record(outbox, sms().id, {"sent"})
        nursery.cancel_scope.cancel()
    assert record.attempts[0].ts - t0 == pytest.approx(100, abs=1e-6)


async def test_expired_message_is_dropped(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST, clock=lambda: EPOCH)
        await outbox.enqueue(sms(expires_at=EPOCH - 1))
        await nursery.start(outbox.run)
        record = await wait_record(outbox, sms().id, {"expired"})
        nursery.cancel_scope.cancel()
    assert outcomes(record) == ["expired"]
    assert twilio_server.requests == []


async def test_rate_limit_per_recipient(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer
) -> None:
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, FAST)
        limit = RateLimit(key=f"sms:{PHONE}:0", limit=2, window_s=3600)
        got = [await outbox.enqueue(sms(i), rate=limit) for i in range(3)]
        assert got == ["queued", "queued", "rate_limited"]
        other = RateLimit(key="sms:+447700900999:0", limit=2, window_s=3600)
        assert await outbox.enqueue(sms(9, to="+447700900999"), rate=other) == "queued"
        record = await outbox.get_record(sms(2).id)
    assert record is not None and record.status == "rate_limited"


async def test_attempts_are_listed_by_delivery(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    twilio_server.fail_next(1, 500)
    config = OutboxConfig(jitter=0.0, backoff_base_s=0.05)
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, config)
        await outbox.enqueue(sms(1))
        await nursery.start(outbox.run)
        await wait_record(outbox, sms(1).id, {"sent"})
        await outbox.enqueue(sms(2))
        await outbox.enqueue(sms(3, delivery="other"))
        await wait_record(outbox, sms(2).id, {"sent"})
        records = await outbox.list_notifications("d1")
        nursery.cancel_scope.cancel()
    assert [r.id for r in records] == [sms(1).id, sms(2).id]
    assert [outcomes(r) for r in records] == [["retry", "sent"], ["sent"]]
    sids = {m.sid for m in twilio_server.messages}
    assert all(r.provider_id in sids for r in records)
    assert await outbox.list_notifications("nobody") == []


def claim_config() -> OutboxConfig:
    # Real time: short idle so the tests stay fast; longer than any local send.
    return OutboxConfig(
        jitter=0.0, send_timeout_s=1.0, claim_idle_s=1.2, claim_interval_s=0.2, concurrency=4
    )


async def test_pending_message_of_a_crashed_worker_is_claimed(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    async with sms_channel(twilio_server) as channel:
        outbox = Outbox(redis, {"sms": channel}, claim_config(), consumer="survivor")
        await outbox.ensure_group()
        await outbox.enqueue(sms())
        # A worker that read the message and died before doing anything with it.
        taken = await redis.xreadgroup(
            keys.OUTBOX_GROUP, "crashed", streams={keys.OUTBOX: ">"}, count=10
        )
        assert taken
        await nursery.start(outbox.run_worker)
        async with trio.open_nursery() as claims:
            assert await outbox.claim_idle(claims) == 0  # not idle long enough yet
            await trio.sleep(1.3)
            assert await outbox.claim_idle(claims) == 1
        record = await wait_record(outbox, sms().id, {"sent"})
        nursery.cancel_scope.cancel()
    assert await outbox.pending_count() == 0
    assert [m.body for m in twilio_server.messages] == ["message 0"]
    assert not record.attempts[0].resumed


async def test_worker_cancelled_mid_flight_loses_nothing(
    redis_url: str, twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> None:
    """Kill a worker with sends in flight, start another: all sent, repeats only in flight."""
    total = 24
    twilio_server.response_delay_s = 0.05  # keeps several sends in flight at any moment
    config = claim_config()
    async with (
        sms_channel(twilio_server) as channel,
        coredis.Redis.from_url(redis_url) as redis_a,
        coredis.Redis.from_url(redis_url) as redis_b,
    ):
        first = Outbox(redis_a, {"sms": channel}, config, consumer="first")
        for i in range(total):
            await first.enqueue(sms(i))
        with trio.CancelScope() as crash:
            async with trio.open_nursery() as worker:
                await worker.start(first.run_worker)
                await twilio_server.wait_for_messages(total // 3)
                crash.cancel()
        in_flight = {r.id for r in await first.list_notifications("d1") if r.status == "sending"}
        assert 0 < len(in_flight) <= config.concurrency

        second = Outbox(redis_b, {"sms": channel}, config, consumer="second")
        await nursery.start(second.run)
        for i in range(total):
            await wait_record(second, sms(i).id, {"sent"})
        records = {r.id: r for r in await second.list_notifications("d1")}
        assert await second.pending_count() == 0
        nursery.cancel_scope.cancel()

    bodies = [m.body for m in twilio_server.messages]
    assert set(bodies) == {f"message {i}" for i in range(total)}
    repeated = {b for b in bodies if bodies.count(b) > 1}
    repeated_ids = {sms(int(b.split()[1])).id for b in repeated}
    assert repeated_ids <= in_flight  # only the in-flight window can repeat
    assert all(bodies.count(b) == 2 for b in repeated)
    for mid in in_flight:
        assert records[mid].attempts[-1].resumed
