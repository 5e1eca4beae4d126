"""Claims over HTTP: ``POST /v1/deliveries/{id}/claims`` opens one,
``GET /v1/claims?status=&delivery=`` lists them, ``POST /v1/claims/{id}/resolve`` closes one.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from quart import Blueprint, jsonify

from gateway.customer.claims import (
    AlreadyResolved,
    Claim,
    ClaimOpen,
    ClaimResolve,
    Claims,
    ClaimsQuery,
    ClaimsService,
    UnknownClaim,
)
from gateway.http.common import AgentAuth
from gateway.http.errors import ApiError
from gateway.http.spec import Op, read_body, read_query

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("POST", "/v1/deliveries/{id}/claims", "Open a claim", {201: Claim, 404: None},
       body=ClaimOpen, params={"id": "internal id, or the shipper's external id"}),
    Op("GET", "/v1/claims", "Claims, newest first", {200: Claims}, query=ClaimsQuery),
    Op("POST", "/v1/claims/{id}/resolve", "Resolve a claim", {200: Claim, 404: None, 409: None},
       body=ClaimResolve, params={"id": "the claim id"}),
]  # fmt: skip


def claims_blueprint(claims: ClaimsService, agent: AgentAuth) -> Blueprint:
    bp = Blueprint("claims", __name__)

    @bp.post("/v1/deliveries/<ident>/claims")
    @agent
    async def open_claim(ident: str) -> Any:
        claim = await claims.open(ident, await read_body(ClaimOpen))
        if claim is None:
            raise ApiError(404, "no such delivery")
        return jsonify(msgspec.to_builtins(claim)), 201

    @bp.get("/v1/claims")
    @agent
    async def list_claims() -> Any:
        q = read_query(ClaimsQuery)
        status = None if isinstance(q.status, msgspec.UnsetType) else q.status
        delivery = None if isinstance(q.delivery, msgspec.UnsetType) else q.delivery
        found = await claims.list(status, delivery)
        return jsonify({"claims": [msgspec.to_builtins(c) for c in found]})

    @bp.post("/v1/claims/<claim_id>/resolve")
    @agent
    async def resolve(claim_id: str) -> Any:
        b = await read_body(ClaimResolve)
        try:
            claim = await claims.resolve(claim_id, b)
        except UnknownClaim:
            raise ApiError(404, "no such claim") from None
        except AlreadyResolved:
            raise ApiError(409, "the claim is resolved already") from None
        return jsonify(msgspec.to_builtins(claim))

    return bp
