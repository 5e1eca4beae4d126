"""Claims for damaged or missing items: agent cases with a resolution.

``POST /v1/deliveries/{id}/claims`` opens one (``type``: damaged, missing, wrong_item,
late, other; ``description``), ``GET /v1/claims?status=&delivery=`` lists them,
``POST /v1/claims/{id}/resolve`` closes one with its ``resolution`` (refund, redelivery,
rejected, other) and ``note``. Each change is an event (``claim.opened``,
``claim.resolved``); the time to resolve is recorded. Stored at ``claim:{id}``, indexed in
``claims`` (a sorted set by opening time).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from quart import Blueprint, jsonify

from gateway.core.keys import CLAIMS as INDEX
from gateway.core.keys import claim_key
from gateway.http.api import ApiError, agent_required
from gateway.http.spec import Op, read_body, read_query

if TYPE_CHECKING:
    from gateway.app import Gateway

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


# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("POST", "/v1/deliveries/{id}/claims", "Open a claim", {201: Claim, 404: None},
       body=ClaimOpen, params={"id": "internal id, or the shipper's external id"}),
    Op("GET", "/v1/claims", "Claims, newest first", {200: Claims}, query=ClaimsQuery),
    Op("POST", "/v1/claims/{id}/resolve", "Resolve a claim", {200: Claim, 404: None, 409: None},
       body=ClaimResolve, params={"id": "the claim id"}),
]  # fmt: skip


def claims_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("claims", __name__)
    agent = agent_required(gw)

    async def load(claim_id: str) -> Claim | None:
        raw = await gw.redis.get(claim_key(claim_id))
        return None if raw is None else msgspec.json.decode(raw, type=Claim)

    async def save(claim: Claim, etype: str) -> None:
        await gw.redis.set(claim_key(claim.id), msgspec.json.encode(claim))
        await gw.redis.zadd(INDEX, {claim.id: claim.opened})
        event = {"type": etype, "ts": time.time(), "vehicle": None, "route": None,
                 "stop": None, "delivery": claim.delivery,
                 "data": {"claim": claim.id, "claim_type": claim.type,
                          "resolution": claim.resolution}}  # fmt: skip
        await gw.store.append_events([event], gw.settings.events_max_len)

    @bp.post("/v1/deliveries/<ident>/claims")
    @agent
    async def open_claim(ident: str) -> Any:
        b = await read_body(ClaimOpen)
        delivery = await gw.dispatch.store.resolve_delivery(ident)
        if delivery is None:
            raise ApiError(404, "no such delivery")
        claim = Claim(
            id="c_" + secrets.token_hex(6),
            delivery=delivery,
            type=b.type,
            description=b.description.strip(),
            status="open",
            opened=time.time(),
            opened_by=b.by.strip() or "agent",
        )
        await save(claim, "claim.opened")
        return jsonify(msgspec.to_builtins(claim)), 201

    @bp.get("/v1/claims")
    @agent
    async def list_claims() -> Any:
        q = read_query(ClaimsQuery)
        ids = await gw.redis.zrange(INDEX, 0, -1, rev=True)
        out = []
        for cid in ids:
            claim = await load(cid.decode() if isinstance(cid, bytes) else str(cid))
            if claim is None:  # indexed, then deleted: nothing to list
                continue
            wanted_status = isinstance(q.status, msgspec.UnsetType) or claim.status == q.status
            wanted_delivery = (
                isinstance(q.delivery, msgspec.UnsetType) or claim.delivery == q.delivery
            )
            if wanted_status and wanted_delivery:
                out.append(msgspec.to_builtins(claim))
        return jsonify({"claims": out})

    @bp.post("/v1/claims/<claim_id>/resolve")
    @agent
    async def resolve(claim_id: str) -> Any:
        b = await read_body(ClaimResolve)
        claim = await load(claim_id)
        if claim is None:
            raise ApiError(404, "no such claim")
        if claim.status == "resolved":
            raise ApiError(409, "the claim is resolved already")
        now = time.time()
        claim.status = "resolved"
        claim.resolved = now
        claim.resolution = b.resolution
        claim.note = b.note.strip() or None
        claim.time_to_resolve_s = now - claim.opened
        await save(claim, "claim.resolved")
        return jsonify(msgspec.to_builtins(claim))

    return bp
