"""Following a Redis pub/sub channel for as long as the gateway runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import coredis
import trio

log = logging.getLogger(__name__)

RESUBSCRIBE_S: Final = 1.0


async def follow_channel(
    redis: coredis.Redis[Any],
    channel: str,
    handle: Callable[[bytes], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Await ``handle(data)`` for every message on ``channel``, resubscribing after a lost
    connection. Reports started once first subscribed, or after a first failure (the
    gateway must not wait for Redis pub/sub to start)."""
    started = False
    while True:
        # except*: a cancellation travelling with a connection error still cancels.
        try:
            async with redis.pubsub(channels=[channel]) as ps:
                if not started:
                    started = True
                    task_status.started()
                async for message in ps:
                    if message["type"] == "message":
                        data = message["data"]
                        await handle(data if isinstance(data, bytes) else str(data).encode())
        except* Exception as group:
            log.warning("%s feed interrupted, resubscribing: %r", channel, group.exceptions)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(RESUBSCRIBE_S)
