"""The consumer-group helpers both the event consumer and the outbox read with, on a real
Redis."""

from __future__ import annotations

from typing import Any

import coredis
import trio

from notify.redis_client import claim_idle_entries, read_group, text

STREAM = "test:stream"
GROUP = "test-group"


async def test_read_group_reads_new_entries_then_its_own_pending_ones(
    redis: coredis.Redis[bytes],
) -> None:
    await redis.xgroup_create(STREAM, GROUP, "0", mkstream=True)
    ids = [text(await redis.xadd(STREAM, {"n": str(i)})) for i in range(3)]
    new = await read_group(redis, STREAM, GROUP, "a", ">", 10, 100)
    assert [text(e.identifier) for e in new] == ids
    # Not acknowledged: read again from "0", and from after the first one.
    again = await read_group(redis, STREAM, GROUP, "a", "0", 10, 100)
    assert [text(e.identifier) for e in again] == ids
    after = await read_group(redis, STREAM, GROUP, "a", ids[0], 10, 100)
    assert [text(e.identifier) for e in after] == ids[1:]
    # Another consumer has nothing pending, and nothing new arrives while it waits.
    with trio.fail_after(2):
        assert await read_group(redis, STREAM, GROUP, "b", "0", 10, 100) == []
        assert await read_group(redis, STREAM, GROUP, "b", ">", 10, 100) == []


async def test_claim_idle_entries_takes_over_idle_entries_a_page_at_a_time(
    redis: coredis.Redis[bytes],
) -> None:
    await redis.xgroup_create(STREAM, GROUP, "0", mkstream=True)
    ids = [text(await redis.xadd(STREAM, {"n": str(i)})) for i in range(5)]
    assert len(await read_group(redis, STREAM, GROUP, "dead", ">", 10, 100)) == 5
    await redis.xdel(STREAM, [ids[1]])  # trimmed while pending
    handled: list[str] = []

    async def handle(entry: Any) -> None:
        handled.append(text(entry.identifier))

    async def two() -> int:
        return 2  # pages of two: the claim goes on until the whole list is done

    await claim_idle_entries(redis, STREAM, GROUP, "alive", 60_000, two, handle)
    assert handled == []  # not idle long enough
    await trio.sleep(0.2)
    await claim_idle_entries(redis, STREAM, GROUP, "alive", 100, two, handle)
    assert handled == [ids[0], *ids[2:]]
    pending = await redis.xpending(STREAM, GROUP, "-", "+", 10)
    # The trimmed entry is pending no more (Redis 7 drops it from the list itself; an older
    # server needs the acknowledgement); the others are pending under the new consumer.
    assert [(text(p.identifier), text(p.consumer)) for p in pending] == [  # type: ignore[union-attr]
        (i, "alive") for i in handled
    ]
