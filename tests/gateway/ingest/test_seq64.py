"""Sequence numbers are unsigned 64-bit integers end to end: validated at the edge, compared
exactly by the write script (never as Lua doubles), encodable in every ack."""

from __future__ import annotations

import json
import time

import coredis
import msgspec
import pytest
from trio_websocket import open_websocket_url

from gateway.fleet.position import Position
from gateway.fleet.store import Store, VehicleWrite
from tests.gateway.conftest import GatewayHandle, stored_seqs
from tests.gateway.ingest.test_websocket import ack_until, fix, headers

TOP = 2**64 - 1
# Runs of consecutive seqs that a double cannot tell apart (above 2^53 neighbours round
# to the same double; at 2^63 and 2^64 - 1 the Lua number would overflow int64 too).
EDGES = [2**53 - 2, 2**62, 2**63 - 3, TOP - 9]


def positions(seqs: list[int], now: float) -> list[Position]:
    return [Position(seq=s, ts=now - 100 + i, lat=52.0, lon=4.0) for i, s in enumerate(seqs)]


@pytest.mark.parametrize("start", EDGES)
async def test_write_script_keeps_every_seq_once(redis_url: str, start: int) -> None:
    """Ten consecutive seqs written one batch at a time are all stored; each batch written
    again (a retried batch) is dropped whole; one overlapping the stored ones keeps only
    what is new."""
    async with coredis.Redis.from_url(redis_url) as redis:
        store = Store(redis, track_retention_s=3600)
        now = time.time()
        seqs = [start + i for i in range(10)]
        ps = positions(seqs, now)
        batches = [ps[i : i + 1] for i in range(5)] + [ps[5:8]]
        for b in batches:
            assert await store.write_batch([VehicleWrite.of("v64", "d64", b"s", b)], now) == 0
        for b in batches:
            assert await store.write_batch([VehicleWrite.of("v64", "d64", b"s", b)], now) == len(b)
        overlap = ps[6:10]  # 6 and 7 are stored, 8 and 9 are not
        assert await store.write_batch([VehicleWrite.of("v64", "d64", b"s", overlap)], now) == 2
        assert await stored_seqs(redis, "v64") == seqs
        cursor = await store.load_cursor("v64", "d64")
        assert cursor is not None and cursor[0] == seqs[-1]


@pytest.mark.parametrize("binary", [False, True])
async def test_device_seqs_at_the_edges_are_acked_and_stored_once(
    gateway: GatewayHandle, redis_url: str, binary: bool
) -> None:
    """Over the WebSocket, ten fixes a frame at each edge: every ack names the exact seq,
    each fix is stored once, a resend comes back as duplicates; 2^64 is refused as
    out of range (its rejection carries no seq, so the ack still encodes)."""
    token = await gateway.register("van-64")
    sent: list[int] = []
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(token)) as ws:

        async def send(frame: object) -> None:
            await ws.send_message(msgspec.msgpack.encode(frame) if binary else json.dumps(frame))

        for k, start in enumerate(EDGES):
            seqs = [start + i for i in range(10)]
            frames = [fix(1, dt=10 * k + i) | {"seq": s} for i, s in enumerate(seqs)]
            for f in frames:
                await send(f)
            assert await ack_until(ws, seqs[-1]) == {"seq": seqs[-1], "rejected": []}
            sent += seqs
            await send(frames[-3:])  # resent
            reply = await ack_until(ws, seqs[-1])
            assert reply["rejected"] == [{"seq": s, "reason": "duplicate"} for s in seqs[-3:]]
        if not binary:  # MessagePack cannot carry an integer this large
            await send(fix(1, dt=60) | {"seq": 2**64})
            reply = await ack_until(ws, TOP)
            assert reply["rejected"] == [{"seq": None, "reason": "out_of_range", "detail": "seq"}]
            # Another binary frame after it: the next ack is MessagePack and still encodes.
            await ws.send_message(msgspec.msgpack.encode(fix(1, dt=61) | {"seq": 5}))
            reply = await ack_until(ws, TOP)
            assert reply["rejected"] == [{"seq": 5, "reason": "duplicate"}]
    async with coredis.Redis.from_url(redis_url) as redis:
        assert await stored_seqs(redis, "van-64") == sent
    v = (await gateway.http.get("/v1/vehicles/van-64")).json()
    assert v["seq"] == TOP
