"""Claims for damaged or missing items: agent cases with a resolution.

A claim is opened on a delivery (``type``: damaged, missing, wrong_item, late, other;
``description``) and resolved with a ``resolution`` (refund, redelivery, rejected, other)
and a ``note``; the time to resolve is recorded. Each change is stored with its event
(``claim.opened``, ``claim.resolved``) in one MULTI/EXEC: the record at
``claim:{dispatch}:<id>``, indexed in ``claims:{dispatch}`` (a sorted set by opening time).
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Final, Literal

import coredis
import msgspec

from gateway.core.events import EventLog, event
from gateway.core.keys import CLAIMS as INDEX
from gateway.core.keys import claim_key
from gateway.dispatch.store import DispatchStore
from notify.redis_client import RedisClient

ClaimType = Literal["damaged", "missing", "wrong_item", "late", "other"]
Resolution = Literal["refund", "redelivery", "rejected", "other"]
MAX_TEXT: Final = 2000

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class ClaimOpen(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A claim to open."""

    type: ClaimType
    description: Annotated[
        str,
        msgspec.Meta(max_length=MAX_TEXT, pattern=r"\S", description="what happened; not blank"),
    ]
    by: Annotated[str, msgspec.Meta(max_length=MAX_TEXT, description="default: agent")] = ""


class ClaimResolve(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How a claim is resolved."""

    resolution: Resolution
    note: Text = ""


class Claim(msgspec.Struct, kw_only=True):
    """A claim, open or resolved."""

    id: str
    delivery: str
    type: ClaimType
    description: str
    status: Literal["open", "resolved"]
    opened: float
    opened_by: str
    resolved: float | None = None
    resolution: Resolution | None = None
    note: str | None = None
    time_to_resolve_s: float | None = None


class Claims(msgspec.Struct):
    """Claims, newest first."""

    claims: list[Claim]


class ClaimsQuery(msgspec.Struct):
    status: Literal["open", "resolved"] | msgspec.UnsetType = msgspec.UNSET
    delivery: (
        Annotated[str, msgspec.Meta(description="one delivery's (its internal id)")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class UnknownClaim(LookupError):
    pass


class AlreadyResolved(Exception):
    pass


class ClaimsService:
    """Opens, lists and resolves claims."""

    def __init__(
        self, redis: RedisClient[bytes], dispatch: DispatchStore, events: EventLog
    ) -> None:
        self.redis = redis
        self.dispatch = dispatch
        self.events = events

    async def load(self, claim_id: str) -> Claim | None:
        raw = await self.redis.get(claim_key(claim_id))
        return None if raw is None else msgspec.json.decode(raw, type=Claim)

    async def open(self, ident: str, b: ClaimOpen) -> Claim | None:
        """A new claim on delivery ``ident`` (internal or external id); None if there is no
        such delivery."""
        delivery = await self.dispatch.resolve_delivery(ident)
        if delivery is None:
            return None
        claim = Claim(
            id="c_" + secrets.token_hex(6),
            delivery=delivery,
            type=b.type,
            description=b.description.strip(),
            status="open",
            opened=time.time(),
            opened_by=b.by.strip() or "agent",
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            self._queue(pipe, claim, "claim.opened")
        return claim

    async def list(self, status: str | None, delivery: str | None) -> list[Claim]:
        """Claims, newest first, of that status and delivery where given."""
        ids = await self.redis.zrange(INDEX, 0, -1, rev=True)
        out = []
        for cid in ids:
            claim = await self.load(cid.decode() if isinstance(cid, bytes) else str(cid))
            if claim is None:  # indexed, then deleted: nothing to list
                continue
            if status in (None, claim.status) and delivery in (None, claim.delivery):
                out.append(claim)
        return out

    async def resolve(self, claim_id: str, b: ClaimResolve) -> Claim:
        """Resolve an open claim; UnknownClaim, or AlreadyResolved (also when another
        request resolves it meanwhile)."""
        key = claim_key(claim_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe, pipe.watch(key):
                claim = await self.load(claim_id)
                if claim is None:
                    raise UnknownClaim(claim_id)
                if claim.status == "resolved":
                    raise AlreadyResolved(claim_id)
                now = time.time()
                claim.status = "resolved"
                claim.resolved = now
                claim.resolution = b.resolution
                claim.note = b.note.strip() or None
                claim.time_to_resolve_s = now - claim.opened
                self._queue(pipe, claim, "claim.resolved")
        except coredis.exceptions.WatchError:
            raise AlreadyResolved(claim_id) from None
        return claim

    def _queue(self, pipe: Any, claim: Claim, etype: str) -> None:
        pipe.set(claim_key(claim.id), msgspec.json.encode(claim))
        pipe.zadd(INDEX, {claim.id: claim.opened})
        data = {"claim": claim.id, "claim_type": claim.type, "resolution": claim.resolution}
        self.events.queue(pipe, [event(etype, time.time(), delivery=claim.delivery, data=data)])
