"""The Redis client of both sides: one server or a Redis Cluster, and pub/sub that works on both.

On a cluster every script call and every MULTI/EXEC must touch keys of one hash slot; the
key names of each side carry the ``{hash tags}`` that make this so. Channels are published
with SPUBLISH (sharded pub/sub: a channel lives on the shard that owns its slot, so messages
do not travel across the whole cluster bus) and read with SSUBSCRIBE.
"""

from __future__ import annotations

from typing import Any, TypeAlias, TypeVar

import coredis

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
