"""Devices: registration, their secret tokens (kept only as hashes), rotation and revocation.

A device is a hash at ``dev:{<id>}`` (vehicle, name, token_hash, revoked, created), found
from a token through ``devtok:<hash>``. The token index only points at a device; the
device's own ``token_hash`` decides, so an index entry left by an interrupted rotation opens
nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from gateway.core import keys
from notify.redis_client import RedisClient, is_cluster

TOKEN_BYTES: Final = 24


def hash_token(token: str) -> str:
    # Tokens are 192 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    vehicle: str
    name: str
    revoked: bool
    created: float

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vehicle": self.vehicle,
            "name": self.name,
            "revoked": self.revoked,
            "created": self.created,
        }


def _device_record(device_id: str, h: dict[bytes, bytes]) -> DeviceRecord | None:
    if not h:
        return None
    return DeviceRecord(
        id=device_id,
        vehicle=h[b"vehicle"].decode(),
        name=h.get(b"name", b"").decode(),
        revoked=h.get(b"revoked") == b"1",
        created=float(h.get(b"created", b"0")),
    )


class DeviceExists(Exception):
    pass


class UnknownDevice(Exception):
    pass


class Filtered(msgspec.Struct, frozen=True):
    """The latest fix of a device that was not stored, and why (a device app is answered
    with a success all the same: this is where an agent sees it)."""

    reason: str
    at: float  # when, epoch seconds
    seq: int | None = None
    detail: str | None = None


class Devices:
    """The device registry in Redis."""

    def __init__(self, redis: RedisClient[bytes]) -> None:
        self.redis = redis
        # On a Redis Cluster a device's keys are in different slots: no transaction.
        self.cluster = is_cluster(redis)

    async def create_device(self, device_id: str, vehicle: str, name: str) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        th = hash_token(token)
        created = await self.redis.hsetnx(keys.device(device_id), "vehicle", vehicle)
        if not created:
            raise DeviceExists(device_id)
        async with self.redis.pipeline(transaction=False) as p:
            p.hset(
                keys.device(device_id),
                {"name": name, "token_hash": th, "revoked": "0", "created": repr(time.time())},
            )
            p.set(keys.device_token(th), device_id)
            p.sadd(keys.DEVICES, [device_id])
            p.sadd(keys.VEHICLES, [vehicle])
        return token

    async def rotate_token(self, device_id: str) -> str:
        old = await self.redis.hget(keys.device(device_id), "token_hash")
        if old is None:
            raise UnknownDevice(device_id)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        th = hash_token(token)
        # On a cluster the three keys are in different slots, so no transaction; what is
        # left of an interrupted change is harmless, as a token only counts when it matches
        # the device's token_hash (see device_for_token).
        async with self.redis.pipeline(transaction=not self.cluster) as p:
            p.set(keys.device_token(th), device_id)
            p.hset(keys.device(device_id), {"token_hash": th, "revoked": "0"})
            p.delete([keys.device_token(old.decode())])
        return token

    async def revoke_device(self, device_id: str) -> None:
        old = await self.redis.hget(keys.device(device_id), "token_hash")
        if old is None:
            raise UnknownDevice(device_id)
        async with self.redis.pipeline(transaction=not self.cluster) as p:
            p.hset(keys.device(device_id), {"revoked": "1"})
            p.delete([keys.device_token(old.decode())])

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        return _device_record(device_id, await self.redis.hgetall(keys.device(device_id)))

    async def device_for_token(self, token: str) -> DeviceRecord | None:
        """The device a token belongs to, or None for an unknown or revoked token.

        The token index only points at a device; the device's own ``token_hash`` decides,
        so an index entry left by an interrupted rotation opens nothing."""
        th = hash_token(token)
        dev_id = await self.redis.get(keys.device_token(th))
        if dev_id is None:
            return None
        h = await self.redis.hgetall(keys.device(dev_id.decode()))
        rec = _device_record(dev_id.decode(), h)
        if rec is None or rec.revoked or h.get(b"token_hash") != th.encode():
            return None
        return rec

    async def list_devices(self) -> list[DeviceRecord]:
        ids = sorted(m.decode() for m in await self.redis.smembers(keys.DEVICES))
        out = []
        for d in ids:
            rec = await self.get_device(d)
            if rec is not None:
                out.append(rec)
        return out

    async def note_filtered(self, device_id: str, filtered: Filtered) -> None:
        """Keep ``filtered`` as the device's latest fix not stored (field ``filtered``)."""
        await self.redis.hset(keys.device(device_id), {"filtered": msgspec.json.encode(filtered)})

    async def last_filtered(self, device_id: str) -> Filtered | None:
        raw = await self.redis.hget(keys.device(device_id), "filtered")
        return None if raw is None else msgspec.json.decode(raw, type=Filtered)
