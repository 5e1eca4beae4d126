"""Signed, expiring customer tracking links, scoped to one delivery.

A token is ``<payload>.<signature>``, both base64url: the payload names the delivery, the
expiry and the issue time (ms); the signature is HMAC-SHA256 over the payload with the
gateway's link secret. Issuing needs no storage. Revoking a delivery's links records the
revocation time in Redis (``trk:{delivery}``): every token issued before it stops working.
Verification answers only "valid" or "not": a tampered, expired or revoked token is
indistinguishable from a token of a delivery that does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Final

import msgspec

from notify.redis_client import RedisClient

DEFAULT_TTL_S: Final = 7 * 86_400.0
MAX_TOKEN_CHARS: Final = 512


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


def revoked_key(delivery_id: str) -> str:
    return f"trk:{{{delivery_id}}}"


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
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
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
        self.signer = signer
        self.ttl_s = ttl_s

    def issue(self, delivery_id: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return self.signer.issue(delivery_id, int(now * 1000), now + self.ttl_s)

    async def check(self, token: str) -> str | None:
        """The delivery id the token opens, or None."""
        claims = self.signer.verify(token)
        if claims is None:
            return None
        raw = await self.redis.get(revoked_key(claims.delivery))
        revoked_ms = int(raw) if raw is not None else -1
        return claims.delivery if claims.issued_ms > revoked_ms else None

    async def revoke(self, delivery_id: str, now: float | None = None) -> None:
        """Every link issued until now stops working; later ones work."""
        now_ms = int((time.time() if now is None else now) * 1000)
        await self.redis.set(revoked_key(delivery_id), str(now_ms))
