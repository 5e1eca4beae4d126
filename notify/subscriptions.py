"""Webhook subscriptions of shippers' systems, stored in Redis.

A subscription is a URL, a secret that signs every request to it, and the event types it
wants: exact names ("delivery.delivered"), a family ("delivery.*") or everything ("*").
The secret is shown once, when the subscription is created or its secret rotated.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec

from . import keys
from .errors import NotifyError
from .redis_client import RedisClient

SECRET_BYTES: Final = 32
MAX_URL_LEN: Final = 2048


class UnknownSubscription(NotifyError, KeyError):
    """No subscription has this id."""


class InvalidSubscription(NotifyError, ValueError):
    """A subscription field is not acceptable; the message says which and why."""


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    url: str
    secret: str
    events: tuple[str, ...] = ("*",)
    active: bool = True
    description: str = ""
    created: float = 0.0

    def wants(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` is sent to this subscription."""
        if not self.active:
            return False
        for pattern in self.events:
            if pattern == "*" or pattern == event_type:
                return True
            if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
                return True
        return False

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The subscription as the API shows it; the secret only when asked."""
        out = msgspec.structs.asdict(self)
        out["events"] = list(self.events)
        if not with_secret:
            del out["secret"]
        return out


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Subscription)


def validate_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else ``InvalidSubscription``."""
    if not isinstance(url, str) or len(url) > MAX_URL_LEN:
        raise InvalidSubscription(f"url must be a string of at most {MAX_URL_LEN} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:  # a malformed bracketed host, a bad port
        raise InvalidSubscription(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSubscription("url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidSubscription("url must not contain credentials; the signature is the auth")
    return url


def validate_events(events: Iterable[str]) -> tuple[str, ...]:
    out = tuple(events)
    if not out:
        raise InvalidSubscription("events must name at least one event type, or '*'")
    for pattern in out:
        if not isinstance(pattern, str) or not pattern or " " in pattern:
            raise InvalidSubscription(f"event pattern {pattern!r} is not valid")
        if (
            "*" in pattern
            and pattern != "*"
            and not (pattern.endswith(".*") and pattern.count("*") == 1)
        ):
            raise InvalidSubscription(f"event pattern {pattern!r}: '*' only alone or as 'x.*'")
    return out


async def create_subscription(
    redis: RedisClient[Any],
    url: str,
    events: Iterable[str] = ("*",),
    *,
    secret: str | None = None,
    description: str = "",
    clock: Callable[[], float] = time.time,
) -> Subscription:
    """Store a new subscription; its secret is generated unless given."""
    sub = Subscription(
        id="wh_" + secrets.token_hex(8),
        url=validate_url(url),
        secret=secret or secrets.token_urlsafe(SECRET_BYTES),
        events=validate_events(events),
        description=description,
        created=clock(),
    )
    await redis.hset(keys.WEBHOOKS, {sub.id: _encoder.encode(sub)})
    return sub


async def get_subscription(redis: RedisClient[Any], subscription_id: str) -> Subscription | None:
    raw = await redis.hget(keys.WEBHOOKS, subscription_id)
    return None if raw is None else _decoder.decode(raw)


async def list_subscriptions(redis: RedisClient[Any]) -> list[Subscription]:
    """All subscriptions, oldest first."""
    raw = await redis.hgetall(keys.WEBHOOKS)
    subs = [_decoder.decode(v) for v in raw.values()]
    return sorted(subs, key=lambda s: (s.created, s.id))


async def update_subscription(
    redis: RedisClient[Any],
    subscription_id: str,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    active: bool | None = None,
    description: str | None = None,
    rotate_secret: bool = False,
) -> Subscription:
    """Change the given fields; ``rotate_secret`` issues a new secret (returned once)."""
    sub = await get_subscription(redis, subscription_id)
    if sub is None:
        raise UnknownSubscription(subscription_id)
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = validate_url(url)
    if events is not None:
        changes["events"] = validate_events(events)
    if active is not None:
        changes["active"] = bool(active)
    if description is not None:
        changes["description"] = description
    if rotate_secret:
        changes["secret"] = secrets.token_urlsafe(SECRET_BYTES)
    sub = msgspec.structs.replace(sub, **changes)
    await redis.hset(keys.WEBHOOKS, {sub.id: _encoder.encode(sub)})
    return sub


async def delete_subscription(redis: RedisClient[Any], subscription_id: str) -> bool:
    """Remove a subscription; ``False`` if there was none. Queued requests to it are dropped."""
    return bool(await redis.hdel(keys.WEBHOOKS, [subscription_id]))
