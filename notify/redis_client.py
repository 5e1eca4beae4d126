"""The Redis client of both sides: one server or a Redis Cluster, and pub/sub that works on both.

On a cluster every script call and every MULTI/EXEC must touch keys of one hash slot; the
key names of each side carry the ``{hash tags}`` that make this so. Channels are published
with SPUBLISH (sharded pub/sub: a channel lives on the shard that owns its slot, so messages
do not travel across the whole cluster bus) and read with SSUBSCRIBE.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn, TypeAlias, TypeVar

import anyio
import coredis
import trio
from coredis.connection import TCPLocation
from coredis.exceptions import StreamConsumerGroupError, StreamDuplicateConsumerGroupError
from coredis.pool import ClusterConnectionPool

log = logging.getLogger(__name__)

T = TypeVar("T", str, bytes)
R = TypeVar("R")
S = TypeVar("S")

#: A client of one Redis server or of a Redis Cluster (``RedisClient[bytes]``).
RedisClient: TypeAlias = coredis.Redis[T] | coredis.RedisCluster[T]


def is_cluster(redis: RedisClient[Any]) -> bool:
    return isinstance(redis, coredis.RedisCluster)


async def publish(redis: RedisClient[Any], channel: str, message: str | bytes) -> int:
    """Publish on ``channel``: PUBLISH on one server, SPUBLISH on a cluster.

    Returns how many subscribers (of that shard, on a cluster) received it.
    """
    if isinstance(redis, coredis.RedisCluster):
        return await redis.spublish(channel, message)
    return await redis.publish(channel, message)


async def refresh_cluster_map(redis: RedisClient[Any]) -> None:
    """On a cluster, ask the nodes again which of them serves which slots (after a failover:
    the promoted replica); nothing on one server. Best effort: while no node answers, the
    old map stays.

    coredis refreshes its map by itself when commands fail, but not when a pipeline cannot
    reach a node: a caller whose pipeline failed says so here before it tries again."""
    if isinstance(redis, coredis.RedisCluster):
        with contextlib.suppress(coredis.exceptions.RedisError):
            await redis.connection_pool.cluster_layout.initialize()


def cluster_client_like(redis: coredis.RedisCluster[Any]) -> coredis.RedisCluster[Any]:
    """A new client of the same cluster, with its own connections, that maps the cluster
    afresh when entered: it starts from every node ``redis`` has known, so it finds the
    cluster while any of them answers. Enter it with ``async with``."""
    pool: ClusterConnectionPool = redis.connection_pool
    known = [TCPLocation(n.host, n.port) for n in pool.cluster_layout.nodes]
    nodes = list(dict.fromkeys([*known, *pool.startup_nodes]))
    return coredis.RedisCluster(
        connection_pool=ClusterConnectionPool(nodes, **pool.connection_kwargs)
    )


# Redis unreachable, restarting, or still loading its data after a restart: worth waiting
# for. Any other error (a wrong command, a bug) is not. coredis may also hand out a
# connection whose anyio stream is closing.
REDIS_DOWN: Final = (
    coredis.exceptions.ConnectionError,  # BusyLoadingError is one
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
REDIS_RETRY_MIN_S: Final = 0.1
REDIS_RETRY_MAX_S: Final = 5.0


OutageHook = Callable[[str], None]


class RedisOutage:
    """How one long-running service of the notifier waits out a lost Redis.

    ``pause(exc)`` after a failed call sleeps 0.1 s, doubling up to 5 s while the failures
    go on; ``answered()`` after a call that worked ends the outage. Its first failure is
    logged as a warning and passed to ``on_outage(name)`` (the gateway counts outages in
    ``/metrics``); its end is logged too. ``call`` repeats one call until Redis answers,
    with a backoff of its own, so concurrent tasks can share one ``RedisOutage`` and warn
    once between them.
    """

    def __init__(self, name: str, on_outage: OutageHook | None = None) -> None:
        self.name = name
        self.on_outage = on_outage
        self.down = False
        self._delay = REDIS_RETRY_MIN_S

    def failed(self, exc: BaseException) -> None:
        if self.down:
            return
        self.down = True
        log.warning("%s: Redis does not answer, retrying until it does: %r", self.name, exc)
        if self.on_outage is not None:
            self.on_outage(self.name)

    def answered(self) -> None:
        if self.down:
            self.down = False
            self._delay = REDIS_RETRY_MIN_S
            log.info("%s: Redis answers again", self.name)

    async def pause(self, exc: BaseException) -> None:
        self.failed(exc)
        await trio.sleep(self._delay)
        self._delay = _longer(self._delay)

    async def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """``await fn(*args)``, repeated while Redis does not answer."""
        delay = REDIS_RETRY_MIN_S
        while True:
            try:
                result = await fn(*args)
            except REDIS_DOWN as exc:
                self.failed(exc)
                await trio.sleep(delay)
                delay = _longer(delay)
            else:
                self.answered()
                return result


def _longer(delay: float) -> float:
    return min(REDIS_RETRY_MAX_S, delay * 2)


async def keep_running(
    step: Callable[[S], Awaitable[S]],
    start: S,
    outage: RedisOutage,
    recreate_group: Callable[[], Awaitable[None]] | None = None,
) -> NoReturn:
    """``state = await step(state)`` for ever, beginning with ``start``.

    When Redis does not answer, waits (``outage.pause``) and goes on from ``start`` again:
    a consumer reading its group from "0" first reads again what it had read and not yet
    acknowledged, so nothing is skipped. When the consumer group is missing (NOGROUP:
    Redis lost it), ``recreate_group`` creates it again before going on from ``start``.
    """
    state = start
    while True:
        try:
            state = await step(state)
        except REDIS_DOWN as exc:
            await outage.pause(exc)
            state = start
        except StreamConsumerGroupError as exc:
            if recreate_group is None or isinstance(exc, StreamDuplicateConsumerGroupError):
                raise
            log.warning("%s: consumer group lost, creating it again: %s", outage.name, exc)
            await outage.call(recreate_group)
            state = start
        else:
            outage.answered()


def text(value: Any) -> str:
    """A Redis reply (bytes or not) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_group(
    redis: RedisClient[Any],
    stream: str,
    group: str,
    consumer: str,
    cursor: str,
    count: int,
    block_ms: int,
) -> list[Any]:
    """One XREADGROUP of ``stream`` as ``consumer``: with ``cursor`` ">", new entries (waiting
    up to ``block_ms`` for the first), otherwise the entries after ``cursor`` this consumer
    read before and has not acknowledged (without waiting)."""
    pending = cursor != ">"
    reply = await redis.xreadgroup(
        group,
        consumer,
        streams={stream: cursor},
        count=count,
        block=None if pending else block_ms,
    )
    return list(next(iter(reply.values()), ())) if reply else []


async def claim_idle_entries(
    redis: RedisClient[Any],
    stream: str,
    group: str,
    consumer: str,
    min_idle_ms: int,
    count: Callable[[], Awaitable[int]],
    handle: Callable[[Any], Awaitable[None]],
) -> None:
    """Take over the entries of ``stream`` idle past ``min_idle_ms`` under other consumers of
    ``group`` (XAUTOCLAIM, ``await count()`` at a time) and ``await handle(entry)`` each.
    Entries trimmed from the stream while pending are acknowledged: nothing is left of them
    to handle, and they would stay pending for ever."""
    start = "0-0"
    while True:
        reply = await redis.xautoclaim(
            stream, group, consumer, min_idle_ms, start, count=await count()
        )
        start = text(reply[0])
        deleted = reply[2] if len(reply) > 2 else ()
        if deleted:
            await redis.xack(stream, group, list(deleted))
        for entry in reply[1]:
            if not isinstance(entry, bytes | str):
                await handle(entry)
        if start == "0-0":
            return
