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
from typing import TYPE_CHECKING, Any, Final

import msgspec
from quart import Blueprint, jsonify, request

from .api import ApiError, agent_required
from .api_spec import Op
from .http_errors import json_object

if TYPE_CHECKING:
    from .app import Gateway

CLAIM_TYPES: Final = ("damaged", "missing", "wrong_item", "late", "other")
RESOLUTIONS: Final = ("refund", "redelivery", "rejected", "other")
MAX_TEXT: Final = 2000
INDEX: Final = "claims"

# The operations of this module, for /openapi.json (still described by hand in
# openapi.py while this list is empty).
OPS: Final[list[Op]] = []


class Claim(msgspec.Struct, kw_only=True):
    id: str
    delivery: str
    type: str
    description: str
    status: str  # open | resolved
    opened: float
    opened_by: str
    resolved: float | None = None
    resolution: str | None = None
    note: str | None = None
    time_to_resolve_s: float | None = None


def claim_key(claim_id: str) -> str:
    return f"claim:{{{claim_id}}}"


def _text(body: dict[str, Any], name: str, required: bool) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value.strip()):
        raise ApiError(400, f"{name} must be text of at most {MAX_TEXT} characters", name)
    return value.strip()


def claims_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("claims", __name__)
    agent = agent_required(gw)

    async def body() -> dict[str, Any]:
        return await json_object()

    async def load(claim_id: str) -> Claim:
        raw = await gw.redis.get(claim_key(claim_id))
        if raw is None:
            raise ApiError(404, "no such claim")
        return msgspec.json.decode(raw, type=Claim)

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
        b = await body()
        delivery = await gw.dispatch.store.resolve_delivery(ident)
        if delivery is None:
            raise ApiError(404, "no such delivery")
        ctype = b.get("type")
        if ctype not in CLAIM_TYPES:
            raise ApiError(400, f"type must be one of {', '.join(CLAIM_TYPES)}", "type")
        claim = Claim(
            id="c_" + secrets.token_hex(6),
            delivery=delivery,
            type=ctype,
            description=_text(b, "description", required=True),
            status="open",
            opened=time.time(),
            opened_by=_text(b, "by", required=False) or "agent",
        )
        await save(claim, "claim.opened")
        return jsonify(msgspec.to_builtins(claim)), 201

    @bp.get("/v1/claims")
    @agent
    async def list_claims() -> Any:
        status = request.args.get("status")
        delivery = request.args.get("delivery")
        ids = await gw.redis.zrange(INDEX, 0, -1, rev=True)
        out = []
        for cid in ids:
            claim = await load(cid.decode() if isinstance(cid, bytes) else str(cid))
            if (status is None or claim.status == status) and (
                delivery is None or claim.delivery == delivery
            ):
                out.append(msgspec.to_builtins(claim))
        return jsonify({"claims": out})

    @bp.post("/v1/claims/<claim_id>/resolve")
    @agent
    async def resolve(claim_id: str) -> Any:
        b = await body()
        claim = await load(claim_id)
        if claim.status == "resolved":
            raise ApiError(409, "the claim is resolved already")
        resolution = b.get("resolution")
        if resolution not in RESOLUTIONS:
            raise ApiError(400, f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
        now = time.time()
        claim.status = "resolved"
        claim.resolved = now
        claim.resolution = resolution
        claim.note = _text(b, "note", required=False) or None
        claim.time_to_resolve_s = now - claim.opened
        await save(claim, "claim.resolved")
        return jsonify(msgspec.to_builtins(claim))

    return bp
