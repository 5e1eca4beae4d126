"""Following a Redis pub/sub channel for as long as the gateway runs.

On one Redis server this is classic SUBSCRIBE; on a Redis Cluster, sharded pub/sub
(SSUBSCRIBE, matching the SPUBLISH of :func:`notify.redis_client.publish`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import coredis
import trio
from coredis.patterns.pubsub import PubSub, ShardedPubSub

from notify.redis_client import RedisClient

log = logging.getLogger(__name__)

RESUBSCRIBE_S: Final = 1.0
_MESSAGE_TYPES: Final = frozenset({"message", "smessage"})


def _subscribe(redis: RedisClient[Any], channel: str) -> PubSub[Any] | ShardedPubSub[Any]:
    if isinstance(redis, coredis.RedisCluster):
        return redis.sharded_pubsub(channels=[channel])
    return redis.pubsub(channels=[channel])


async def follow_channel(
    redis: RedisClient[Any],
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
            async with _subscribe(redis, channel) as ps:
                if not started:
                    started = True
                    task_status.started()
                async for message in ps:
                    if message["type"] in _MESSAGE_TYPES:
                        data = message["data"]
                        await handle(data if isinstance(data, bytes) else str(data).encode())
        except* Exception as group:
            # Being cancelled, the cluster client's pub/sub may fail to unsubscribe from a
            # connection already closed: not worth a warning.
            if trio.current_effective_deadline() != -math.inf:
                log.warning("%s feed interrupted, resubscribing: %r", channel, group.exceptions)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(RESUBSCRIBE_S)
