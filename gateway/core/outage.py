"""What counts as Redis being away: worth waiting for, unlike any other error (a wrong
command, a bug), which is not retried.

notify's ``REDIS_DOWN`` (unreachable, restarting, loading its data, a connection closing), and
what a Redis Cluster answers while a replica takes over from a failed master: the cluster is
down, try again, or a write met a node that has just become a replica.
"""

from __future__ import annotations

from typing import Final

from coredis.exceptions import ClusterDownError, ReadOnlyError, TryAgainError

from notify.redis_client import REDIS_DOWN

REDIS_OUTAGE: Final = (*REDIS_DOWN, ClusterDownError, TryAgainError, ReadOnlyError)
