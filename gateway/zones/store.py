"""Zones in Redis, and the change feed that keeps every gateway process's engine current.

A zone is stored as its GeoJSON Feature at ``zone:{zones}:<id>``, listed in the set
``zones:{zones}``; the shared hash tag keeps them in one Redis Cluster slot, so a change is
one MULTI/EXEC there too. Every change is published on the channel ``zones:changed`` (the
zone id), so each process reloads that zone and applies it to live traffic within a moment.
A process that was not listening (its subscription lost to a Redis restart, a failover, a
network blip) compares every stored zone with its own on subscribing again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import trio

from gateway.core.keys import ZONES, zone_key
from gateway.core.keys import ZONES_CHANGED as CHANNEL
from gateway.core.pubsub import follow_channel
from geofence import Zone
from notify.redis_client import RedisClient, publish

READ_CHUNK: Final = 1000  # zones per MGET when reading them all

_json: Final = msgspec.json.Encoder()


def decode_zone(raw: bytes) -> Zone:
    """A zone from its stored Feature."""
    return Zone.from_geojson(msgspec.json.decode(raw))


def feature_digest(raw: bytes) -> bytes:
    """A short fingerprint of a stored Feature: equal for the same zone, as stored."""
    return hashlib.blake2b(raw, digest_size=16).digest()


class ZoneStore:
    def __init__(self, redis: RedisClient[bytes]) -> None:
        self.redis = redis

    async def put(self, zone: Zone) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.set(zone_key(zone.id), _json.encode(zone.to_geojson()))
            p.sadd(ZONES, [zone.id])
        await publish(self.redis, CHANNEL, zone.id)

    async def delete(self, zone_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as p:
            removed = p.delete([zone_key(zone_id)])
            p.srem(ZONES, [zone_id])
        await publish(self.redis, CHANNEL, zone_id)
        return bool(await removed)

    async def get(self, zone_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(zone_key(zone_id))
        return None if raw is None else msgspec.json.decode(raw)

    async def load_features(self) -> dict[str, bytes]:
        """Every stored zone's GeoJSON Feature as stored (decode it with ``decode_zone``),
        by zone id."""
        members = await self.redis.smembers(ZONES)
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        out: dict[str, bytes] = {}
        for i in range(0, len(ids), READ_CHUNK):
            chunk = ids[i : i + READ_CHUNK]
            raws = await self.redis.mget([zone_key(zid) for zid in chunk])
            out.update((zid, raw) for zid, raw in zip(chunk, raws, strict=True) if raw is not None)
        return out

    async def follow_changes(
        self,
        apply: Callable[[str, Zone | None], None],
        *,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``apply(id, zone or None)`` for every change made by any process.
        ``on_subscribed`` catches up with the changes made while not subscribed (see
        :func:`~gateway.core.pubsub.follow_channel`)."""

        async def changed(data: bytes) -> None:
            zid = data.decode()
            raw = await self.redis.get(zone_key(zid))
            apply(zid, None if raw is None else decode_zone(raw))

        await follow_channel(
            self.redis, CHANNEL, changed, on_subscribed=on_subscribed, task_status=task_status
        )
