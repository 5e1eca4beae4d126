"""Signed, expiring customer tracking links, scoped to one delivery.

A token is ``<payload>.<signature>``, both base64url: the payload names the delivery, the
expiry and the issue time (ms); the signature is HMAC-SHA256 over the payload with the
gateway's link secret. Issuing needs no storage. Revoking a delivery's links records the
revocation time in Redis (``trk:{delivery}``): every token issued before it stops working.
Verification answers only "valid" or "not": a tampered, expired or revoked token is
indistinguishable from a token of a delivery that does not exist.

A link stops working while a page streams from it too: :meth:`Links.wait_invalid` returns
at the token's expiry, or as soon as its revocation is known. A revocation is also appended
to one stream (``trk:revocations``) that each process follows with one blocking read
(:meth:`Links.follow_revocations`), which wakes only the streams of that delivery; each of
them then reads the revocation time once. Every ``REVOCATION_POLL_S`` a stream reads it
anyway, for what the follower missed (Redis away, a process not following).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Final

import coredis
import msgspec
import trio

from gateway.core.keys import REVOCATIONS, revoked_key
from notify.redis_client import RedisClient

log = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 7 * 86_400.0
MAX_TOKEN_CHARS: Final = 512
REVOCATION_POLL_S: Final = 10.0  # an open stream reads its revocation time at least this often
REVOCATIONS_MAX_LEN: Final = 10_000
FOLLOW_BLOCK_MS: Final = 5_000
FOLLOW_RETRY_MAX_S: Final = 5.0


class _Claims(msgspec.Struct, array_like=True, frozen=True):
    delivery: str
    exp: int
    iat_ms: int


@dataclass(frozen=True)
class LinkClaims:
    delivery: str
    expires: float
    issued_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 characters")
        self._key = secret.encode()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, delivery_id: str, issued_ms: int, expires: float) -> str:
        payload = _b64(msgspec.msgpack.encode(_Claims(delivery_id, int(expires), issued_ms)))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now: float | None = None) -> LinkClaims | None:
        """The claims of a well-signed, unexpired token, else None (revocation unchecked)."""
        # Tokens are ASCII (base64url); anything else cannot be compared as one.
        if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 1:
            return None
        payload, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            claims = msgspec.msgpack.decode(_unb64(payload), type=_Claims)
        except (ValueError, msgspec.DecodeError):
            return None
        if claims.exp < (time.time() if now is None else now):
            return None
        return LinkClaims(claims.delivery, float(claims.exp), claims.iat_ms)


class Links:
    """Issue links, and check and revoke them against the revocation times in Redis."""

    def __init__(self, redis: RedisClient[bytes], signer: LinkSigner, ttl_s: float) -> None:
        self.redis = redis
        # Per delivery with an open stream: set (and dropped) when its links are revoked.
        self._revoked_events: dict[str, trio.Event] = {}
        self.signer = signer
        self.ttl_s = ttl_s

    def issue(self, delivery_id: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return self.signer.issue(delivery_id, int(now * 1000), now + self.ttl_s)

    def expiry(self, token: str) -> float:
        """When a token this gateway issued stops working (epoch seconds)."""
        claims = self.signer.verify(token, now=0.0)
        if claims is None:
            raise ValueError("not a token of this gateway")
        return claims.expires

    async def claims(self, token: str) -> LinkClaims | None:
        """The claims of a token that works now (well signed, unexpired, not revoked)."""
        claims = self.signer.verify(token)
        if claims is None or await self.revoked(claims):
            return None
        return claims

    async def check(self, token: str) -> str | None:
        """The delivery id the token opens, or None."""
        claims = await self.claims(token)
        return None if claims is None else claims.delivery

    async def revoked(self, claims: LinkClaims) -> bool:
        """Whether the delivery's links were revoked since this one was issued."""
        raw = await self.redis.get(revoked_key(claims.delivery))
        return raw is not None and claims.issued_ms <= int(raw)

    async def wait_invalid(self, claims: LinkClaims, poll_s: float = REVOCATION_POLL_S) -> None:
        """Return once the link stops working: at its expiry, or once its revocation is
        known (told by ``follow_revocations``, or read every ``poll_s``)."""
        events = self._revoked_events
        try:
            with trio.move_on_after(max(0.0, claims.expires - time.time())):
                while True:
                    event = events.setdefault(claims.delivery, trio.Event())
                    with trio.move_on_after(poll_s):
                        await event.wait()
                    if await self.revoked(claims):
                        return
        finally:
            left = events.get(claims.delivery)
            if left is not None and left.statistics().tasks_waiting == 0:
                del events[claims.delivery]  # no stream of it is open any more

    async def follow_revocations(self) -> None:
        """Wake the streams of every delivery whose links are revoked, through any process,
        until cancelled; waits out a Redis outage (retried with backoff, warned once)."""
        last = "$"
        delay = 0.1
        while True:
            try:
                reply = await self.redis.xread(
                    {REVOCATIONS: last}, count=1000, block=FOLLOW_BLOCK_MS
                )
            except Exception as exc:  # an outage: the streams' own reads cover it meanwhile
                if delay == 0.1:
                    log.warning("cannot follow link revocations (%r); retrying", exc)
                await trio.sleep(delay)
                delay = min(FOLLOW_RETRY_MAX_S, delay * 2)
                continue
            delay = 0.1
            for _, entries in (reply or {}).items():
                for entry in entries:
                    last = _text(entry.identifier)
                    delivery = _text(entry.field_values.get(b"d", b""))
                    event = self._revoked_events.pop(delivery, None)
                    if event is not None:
                        event.set()

    async def revoke(self, delivery_id: str, now: float | None = None) -> None:
        """Every link issued until now stops working; later ones work."""
        now_ms = int((time.time() if now is None else now) * 1000)
        await self.redis.set(revoked_key(delivery_id), str(now_ms))
        # Then told, so a stream woken by it reads the new revocation time.
        await self.redis.xadd(
            REVOCATIONS, {"d": delivery_id}, trim_strategy=coredis.PureToken.MAXLEN,
            threshold=REVOCATIONS_MAX_LEN, trim_operator=coredis.PureToken.APPROXIMATELY,
        )  # fmt: skip


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
