"""Zones in Redis, and the change feed that keeps every gateway process's engine current.

A zone is stored as its GeoJSON Feature at ``zone:{zones}:<id>``, listed in the set
``zones:{zones}``; the shared hash tag keeps them in one Redis Cluster slot, so a change is
one MULTI/EXEC there too. Every change is published on the channel ``zones:changed`` (the
zone id), so each process reloads that zone and applies it to live traffic within a moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
import trio

from geofence import Zone
from notify.redis_client import RedisClient, publish

from .pubsub import follow_channel

ZONES: Final = "zones:{zones}"
CHANNEL: Final = "zones:changed"

_json: Final = msgspec.json.Encoder()


def zone_key(zone_id: str) -> str:
    return f"zone:{{zones}}:{zone_id}"


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

    async def load_all(self) -> list[Zone]:
        ids = sorted(
            m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(ZONES)
        )
        zones = []
        for zid in ids:
            feature = await self.get(zid)
            if feature is not None:
                zones.append(Zone.from_geojson(feature))
        return zones

    async def follow_changes(
        self,
        apply: Callable[[str, Zone | None], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``apply(id, zone or None)`` for every change made by any process."""

        async def changed(data: bytes) -> None:
            zid = data.decode()
            feature = await self.get(zid)
            apply(zid, None if feature is None else Zone.from_geojson(feature))

        await follow_channel(self.redis, CHANNEL, changed, task_status=task_status)
