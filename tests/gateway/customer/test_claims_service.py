"""A claim and its event are written together, and a claim is resolved once however many
agents press the button at the same moment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from gateway.core import keys
from gateway.core.events import EventLog
from gateway.customer.claims import AlreadyResolved, ClaimOpen, ClaimResolve, ClaimsService
from gateway.dispatch.records import delivery_id, route_id
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import DispatchStore
from tests.gateway.dispatch.test_validate import T0, batch, route_payload


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_url) as r:
        await r.sadd(keys.VEHICLES, ["van-1"])
        yield r


async def test_claims_are_stored_with_their_events_and_resolved_once(
    redis: coredis.Redis[bytes],
) -> None:
    log = EventLog(redis, 10_000)
    dispatch = Dispatch(DispatchStore(redis, log))
    await dispatch.import_routes(batch(route_payload("C1")), T0)
    await dispatch.start(route_id("C1"), T0 + 1)
    claims = ClaimsService(redis, dispatch.store, log)
    assert await claims.open("no-such-delivery", ClaimOpen(type="damaged", description="x")) is None

    claim = await claims.open("C1-D0", ClaimOpen(type="damaged", description=" box crushed "))
    assert claim is not None and claim.delivery == delivery_id("C1-D0")
    assert claim.description == "box crushed" and claim.opened_by == "agent"
    assert [c.id for c in await claims.list("open", None)] == [claim.id]

    outcomes: list[str] = []

    async def resolve(note: str) -> None:
        try:
            await claims.resolve(claim.id, ClaimResolve(resolution="refund", note=note))
            outcomes.append("resolved")
        except AlreadyResolved:
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(resolve, f"agent {i}")
    assert sorted(outcomes) == ["refused"] * 4 + ["resolved"]
    stored = await claims.load(claim.id)
    assert stored is not None and stored.status == "resolved" and stored.resolution == "refund"
    assert await claims.list("open", None) == []

    logged = [e for e in await log.read("-", 1000) if e["data"].get("claim") == claim.id]
    assert [e["type"] for e in logged] == ["claim.opened", "claim.resolved"]
    assert all(e["delivery"] == delivery_id("C1-D0") for e in logged)
