"""SMS opt-outs: numbers that replied STOP (or that Twilio reports as unsubscribed).

Checked by the outbox before every SMS, so an opted-out number is never even attempted.
"""

from __future__ import annotations

from typing import Any

from . import keys
from .redis_client import RedisClient


async def opt_out(redis: RedisClient[Any], phone: str) -> bool:
    """Record ``phone`` as opted out; ``True`` if it was not already."""
    return bool(await redis.sadd(keys.OPTOUT_SMS, [phone]))


async def opt_in(redis: RedisClient[Any], phone: str) -> bool:
    """Remove ``phone`` from the opt-outs; ``True`` if it was opted out."""
    return bool(await redis.srem(keys.OPTOUT_SMS, [phone]))


async def is_opted_out(redis: RedisClient[Any], phone: str) -> bool:
    return bool(await redis.sismember(keys.OPTOUT_SMS, phone))
