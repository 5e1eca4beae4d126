"""The Redis client of both sides: one server or a Redis Cluster, and pub/sub that works on both.

On a cluster every script call and every MULTI/EXEC must touch keys of one hash slot; the
key names of each side carry the ``{hash tags}`` that make this so. Channels are published
with SPUBLISH (sharded pub/sub: a channel lives on the shard that owns its slot, so messages
do not travel across the whole cluster bus) and read with SSUBSCRIBE.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeAlias, TypeVar

import coredis
from coredis.connection import TCPLocation
from coredis.pool import ClusterConnectionPool

T = TypeVar("T", str, bytes)

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
