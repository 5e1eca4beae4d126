"""A Redis client for a URL: one server, or a Redis Cluster (``redis+cluster://``) whose
commands ride out a failover."""

from __future__ import annotations

import urllib.parse
from typing import Final

import coredis
from anyio import BrokenResourceError, ClosedResourceError
from coredis.connection import TCPLocation
from coredis.exceptions import ClusterDownError
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.retry import ExponentialBackoffRetryPolicy

from gateway.config import split_redis_url
from notify.redis_client import RedisClient

# A Redis Cluster command that meets a dead master, or a cluster down while a replica takes
# over, is tried again for this long: more than a failover takes with Redis' default
# cluster-node-timeout (15 s). Each retry counts towards coredis refreshing its slot map.
CLUSTER_RETRY_S: Final = 30.0
CLUSTER_RETRY_MAX_DELAY_S: Final = 1.0


def connect_redis(url: str) -> RedisClient[bytes]:
    """A client for ``url``: a ``coredis.RedisCluster`` for a ``redis+cluster://`` URL, else a
    ``coredis.Redis``. Enter it with ``async with`` to connect."""
    client_url, cluster = split_redis_url(url)
    if cluster:
        # The startup node given as a TCPLocation: coredis warns (deprecated) when it builds
        # one from the URL itself.
        parsed = urllib.parse.urlsplit(client_url)
        node = TCPLocation(parsed.hostname or "127.0.0.1", parsed.port or 6379)
        retry = ExponentialBackoffRetryPolicy(
            # The anyio errors: a connection that coredis hands out while it is closing.
            (
                RedisConnectionError,
                ClusterDownError,
                TimeoutError,
                ClosedResourceError,
                BrokenResourceError,
            ),
            retries=None,
            base_delay=0.1,
            max_delay=CLUSTER_RETRY_MAX_DELAY_S,
            deadline=CLUSTER_RETRY_S,
        )
        return coredis.RedisCluster.from_url(client_url, startup_nodes=[node], retry_policy=retry)
    return coredis.Redis.from_url(client_url)
