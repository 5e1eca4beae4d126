"""Following a Redis pub/sub channel for as long as the gateway runs.

On one Redis server this is classic SUBSCRIBE; on a Redis Cluster, sharded pub/sub
(SSUBSCRIBE, matching the SPUBLISH of :func:`notify.redis_client.publish`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import coredis
import trio
from coredis.patterns.pubsub import PubSub, ShardedPubSub

from gateway.core.failures import log_once
from gateway.core.outage import REDIS_OUTAGE
from notify.redis_client import RedisClient, RedisOutage, cluster_client_like

log = logging.getLogger(__name__)

RESUBSCRIBE_S: Final = 1.0
_MESSAGE_TYPES: Final = frozenset({"message", "smessage"})


@contextlib.asynccontextmanager
async def _subscribe(
    redis: RedisClient[Any], channel: str
) -> AsyncIterator[PubSub[Any] | ShardedPubSub[Any]]:
    if not isinstance(redis, coredis.RedisCluster):
        # Without retries: coredis would reconnect and resubscribe by itself, and the caller
        # would never hear of the gap, nor catch up with what it missed.
        async with redis.pubsub(channels=[channel], retry_policy=None) as ps:
            yield ps
        return
    # On a cluster each subscription has a client of its own, closed with it. coredis'
    # sharded pub/sub holds a connection to every master, and when one of them dies it
    # leaves the others checked out of its pool: in a shared client they would run the
    # pool dry and stall the writer. It would also retry the dead master for ever, never
    # telling; without retries, a failure ends the subscription here, and the next one
    # maps the cluster afresh, finding the replica promoted meanwhile.
    async with (
        cluster_client_like(redis) as own,
        own.sharded_pubsub(channels=[channel], retry_policy=None) as ps,
    ):
        yield ps


async def follow_channel(
    redis: RedisClient[Any],
    channel: str,
    handle: Callable[[bytes], Awaitable[None]],
    *,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
    on_outage: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Await ``handle(data)`` for every message on ``channel``, resubscribing after a lost
    connection. Reports started once first subscribed, or after a first failure (the
    gateway must not wait for Redis pub/sub to start).

    Pub/sub keeps nothing for a subscriber that is away: what was published while the
    subscription was down (or before the first one) is lost to it. ``on_subscribed()`` is
    awaited after every subscription, the first one included, before any message is
    handled: the caller catches up there from what Redis stores, and the messages that
    follow bring it the changes made meanwhile. An exception from it counts as a lost
    connection: the channel is subscribed to again, and it is called again.

    A lost Redis is waited out as everywhere in the gateway (``RedisOutage``: backoff, one
    warning an outage, ``on_outage(name)`` once); any other failure is a bug, logged with its
    traceback once, and the channel subscribed to again a second later."""
    started = False
    outage = RedisOutage(f"{channel} feed", on_outage)
    while True:
        error: BaseException | None = None
        # except*: a cancellation travelling with a connection error still cancels.
        try:
            async with _subscribe(redis, channel) as ps:
                if on_subscribed is not None:
                    await on_subscribed()
                outage.answered()
                if not started:
                    started = True
                    task_status.started()
                async for message in ps:
                    if message["type"] in _MESSAGE_TYPES:
                        data = message["data"]
                        await handle(data if isinstance(data, bytes) else str(data).encode())
        except* REDIS_OUTAGE as group:
            if trio.current_effective_deadline() != -math.inf:  # not a cancellation's echo
                error = group.exceptions[0]
        except* Exception as group:
            # Being cancelled, the cluster client's pub/sub may fail to unsubscribe from a
            # connection already closed: not worth a warning.
            if trio.current_effective_deadline() != -math.inf:
                log_once(log, f"the {channel} feed failed; resubscribing", group.exceptions[0])
        if not started:
            started = True
            task_status.started()
        if error is not None:
            await outage.pause(error)
        else:
            await trio.sleep(RESUBSCRIBE_S)
