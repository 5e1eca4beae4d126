"""The device WebSocket against a real gateway and a real redis-server."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.gateway.conftest import GatewayHandle, gateway_settings, handshake, start_gateway


def fix(
    seq: int, lat: float = 52.37, lon: float = 4.89, dt: float = 0.0, **kw: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": time.time() - 30 + seq + dt,
        "lat": lat + seq * 1e-5,
        "lon": lon,
        **kw,
    }


def headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


def bytes_of(message: str | bytes) -> bytes:
    """A binary reply (a text one fails the test)."""
    assert isinstance(message, bytes), message
    return message


async def closed_by_gateway(ws: Any) -> int:
    """Read until the gateway closes the connection; return the close code.

    trio-websocket's client never closes its socket after a close the server started (its
    aclose returns early once a close reason is set), so close the socket here."""
    with trio.fail_after(10):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            assert exc.reason is not None
            code = int(exc.reason.code)
    await ws._stream.aclose()
    return code


async def ack_until(ws: Any, seq: int) -> dict[str, Any]:
    """Read replies until an ack reaches ``seq``; return the merged rejections too."""
    rejected: list[dict[str, Any]] = []
    with trio.fail_after(5):
        while True:
            raw = await ws.get_message()
            msg = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)
            if msg["type"] == "ack":
                rejected.extend(msg["rejected"])
                if msg["seq"] >= seq:
                    return {"seq": msg["seq"], "rejected": rejected}


async def test_positions_are_acked_stored_and_readable(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-1")
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps([fix(i, speed=8.0) for i in range(1, 11)]))
        assert (await ack_until(ws, 10)) == {"seq": 10, "rejected": []}
    r = await gateway.http.get("/v1/vehicles/van-1/track", params={"since": time.time() - 120})
    track = r.json()["positions"]
    assert [p["seq"] for p in track] == list(range(1, 11))
    assert track[0]["device"] == "van-1" and track[0]["speed"] == 8.0
    v = (await gateway.http.get("/v1/vehicles/van-1")).json()
    assert (v["seq"], v["status"]) == (10, "moving")


async def test_token_in_query_string_and_msgpack(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-2")
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        await ws.send_message(msgspec.msgpack.encode(fix(1)))
        raw = await ws.get_message()
        assert isinstance(raw, bytes)
        assert msgspec.msgpack.decode(raw) == {"type": "ack", "seq": 1, "rejected": []}


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_bad_token_refused_at_handshake(gateway: GatewayHandle, token: str | None) -> None:
    r = await handshake(gateway.ep.ingest_url, token)
    assert r.status_code == 401
    assert "token" in r.text
    assert "gateway_handshakes_refused_total" in await gateway.metrics()


async def test_revoked_device_is_closed_and_refused(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-3")
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps(fix(1)))
        await ack_until(ws, 1)
        r = await gateway.http.post("/v1/devices/van-3/revoke")
        assert r.json()["revoked"] is True
        assert await closed_by_gateway(ws) == 4003
    assert (await handshake(gateway.ep.ingest_url, token)).status_code == 401


async def test_bad_input_keeps_the_connection_and_other_devices(gateway: GatewayHandle) -> None:
    bad_token = await gateway.register("bad-van")
    good_token = await gateway.register("good-van")
    async with (
        open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(bad_token)) as bad,
        open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(good_token)) as good,
    ):
        await good.send_message(json.dumps(fix(1)))
        await ack_until(good, 1)

        await bad.send_message("{not json")
        err = json.loads(await bad.get_message())
        assert err["type"] == "error" and err["reason"] == "malformed"
        await bad.send_message(b"\xc1\x00garbage")
        err = msgspec.msgpack.decode(bytes_of(await bad.get_message()))
        assert err["reason"] == "malformed"
        await bad.send_message(json.dumps({"seq": "one", "ts": 1, "lat": 1, "lon": 1}))
        assert json.loads(await bad.get_message())["reason"] == "malformed"
        await bad.send_message(msgspec.msgpack.encode(fix(1, lat=math.nan)))
        nan_reply = msgspec.msgpack.decode(bytes_of(await bad.get_message()))
        assert nan_reply["rejected"] == [{"seq": 1, "reason": "out_of_range", "detail": "lat"}]
        batch = [
            fix(2),
            fix(3, lat=95.0),
            {"seq": 4, "ts": "x", "lat": 1, "lon": 1},
            fix(5, dt=3600),
        ]
        await bad.send_message(json.dumps(batch))
        got = await ack_until(bad, 2)
        while len(got["rejected"]) < 3:
            more = await ack_until(bad, 2)
            got["rejected"].extend(more["rejected"])
        assert {(r["seq"], r["reason"]) for r in got["rejected"]} == {
            (3, "out_of_range"),
            (4, "malformed"),
            (5, "future"),
        }
        # The bad device's connection is still usable, and the good one never noticed.
        await bad.send_message(json.dumps(fix(6)))
        assert (await ack_until(bad, 6))["seq"] == 6
        await good.send_message(json.dumps(fix(2)))
        assert (await ack_until(good, 2)) == {"seq": 2, "rejected": []}
    metrics = await gateway.metrics()
    for line in (
        'gateway_frames_rejected_total{reason="malformed"} 3',
        'gateway_positions_rejected_total{reason="out_of_range"} 2',
        'gateway_positions_rejected_total{reason="malformed"} 1',
        'gateway_positions_rejected_total{reason="future"} 1',
    ):
        assert line in metrics


async def test_oversized_frame_closes_with_1009(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, max_frame_bytes=4096))
    token = await gw.register("big-van")
    other = await gw.register("small-van")
    async with open_websocket_url(gw.ep.ingest_url, extra_headers=headers(other)) as ws2:
        async with open_websocket_url(gw.ep.ingest_url, extra_headers=headers(token)) as ws:
            await ws.send_message(json.dumps([fix(i) for i in range(1, 200)]))
            assert await closed_by_gateway(ws) == 1009
        await ws2.send_message(json.dumps(fix(1)))
        assert (await ack_until(ws2, 1))["seq"] == 1
    assert 'gateway_frames_rejected_total{reason="too_big"} 1' in await gw.metrics()
    await gw.http.aclose()
    gw.scope.cancel()


async def test_resent_backlog_is_not_counted_twice(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-4")
    batch = [fix(i) for i in range(1, 21)]
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps(batch[:12]))
        await ack_until(ws, 12)
    # Reconnect and resend everything, as a device does that missed the ack.
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps(batch))
        got = await ack_until(ws, 20)
    assert got["seq"] == 20
    assert sorted(r["seq"] for r in got["rejected"]) == list(range(1, 13))
    assert {r["reason"] for r in got["rejected"]} == {"duplicate"}
    r = await gateway.http.get("/v1/vehicles/van-4/track", params={"since": time.time() - 120})
    assert [p["seq"] for p in r.json()["positions"]] == list(range(1, 21))
    assert "gateway_positions_accepted_total 20" in await gateway.metrics()


async def test_flooding_device_is_slowed_then_closed_others_unaffected(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(
        nursery,
        gateway_settings(
            redis_url, data_dir, device_rate_per_s=20.0, device_burst=20, flood_close_after_s=0.5
        ),
    )
    flood = await gw.register("flood-van")
    calm = await gw.register("calm-van")
    async with (
        open_websocket_url(gw.ep.ingest_url, extra_headers=headers(flood)) as fws,
        open_websocket_url(gw.ep.ingest_url, extra_headers=headers(calm)) as cws,
    ):
        closed = trio.Event()

        async def flood_it() -> None:
            seq = 0
            try:
                while True:
                    seq += 10
                    await fws.send_message(json.dumps([fix(s) for s in range(seq - 9, seq + 1)]))
                    await trio.lowlevel.checkpoint()
            except ConnectionClosed:
                pass

        async def read_flood() -> None:
            assert await closed_by_gateway(fws) == 1008
            closed.set()

        async with trio.open_nursery() as n:
            n.start_soon(flood_it)
            n.start_soon(read_flood)
            for i in range(1, 6):
                await cws.send_message(json.dumps(fix(i)))
                assert (await ack_until(cws, i))["seq"] == i
                await trio.sleep(0.05)
            with trio.fail_after(10):
                await closed.wait()
            n.cancel_scope.cancel()
    metrics = await gw.metrics()
    assert 'gateway_connections_closed_total{code="1008"} 1' in metrics
    assert "gateway_device_throttled_total" in metrics
    await gw.http.aclose()
    gw.scope.cancel()


async def test_third_connection_replaces_the_oldest(gateway: GatewayHandle) -> None:
    token = await gateway.register("van-5")
    url, h = gateway.ep.ingest_url, headers(token)
    async with (
        open_websocket_url(url, extra_headers=h) as first,
        open_websocket_url(url, extra_headers=h),
        open_websocket_url(url, extra_headers=h) as third,
    ):
        assert await closed_by_gateway(first) == 4001
        await third.send_message(json.dumps(fix(1)))
        assert (await ack_until(third, 1))["seq"] == 1


async def test_state_survives_a_gateway_restart(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    settings = gateway_settings(redis_url, data_dir)
    gw = await start_gateway(nursery, settings)
    token = await gw.register("van-6")
    async with open_websocket_url(gw.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps([fix(i, speed=5.0) for i in range(1, 6)]))
        await ack_until(ws, 5)
    await gw.http.aclose()
    gw.scope.cancel()
    await trio.sleep(0.1)

    gw2 = await start_gateway(nursery, settings)
    v = (await gw2.http.get("/v1/vehicles/van-6")).json()
    assert v["seq"] == 5
    async with open_websocket_url(gw2.ep.ingest_url, extra_headers=headers(token)) as ws:
        await ws.send_message(json.dumps([fix(i) for i in range(4, 8)]))
        got = await ack_until(ws, 7)
    assert sorted((r["seq"], r["reason"]) for r in got["rejected"]) == [
        (4, "duplicate"),
        (5, "duplicate"),
    ]
    await gw2.http.aclose()
    gw2.scope.cancel()


async def test_per_address_limits(redis_url: str, data_dir: Path, nursery: trio.Nursery) -> None:
    gw = await start_gateway(
        nursery,
        gateway_settings(redis_url, data_dir, max_connections_per_ip=2, bad_auth_burst=3),
    )
    tokens = [await gw.register(f"ip-van-{i}") for i in range(3)]
    url = gw.ep.ingest_url
    async with (
        open_websocket_url(url, extra_headers=headers(tokens[0])),
        open_websocket_url(url, extra_headers=headers(tokens[1])),
    ):
        r = await handshake(url, tokens[2])
        assert r.status_code == 429 and "connections" in r.text
    # The two connections are closed: the address has room again.
    with trio.fail_after(5):
        while (await handshake(url, "wrong-1")).status_code != 401:  # noqa: ASYNC110
            await trio.sleep(0.05)
    # Guessing tokens: after the burst of failures the address is refused outright,
    # even with a good token.
    codes = [(await handshake(url, f"wrong-{i}")).status_code for i in range(2, 5)]
    assert codes == [401, 401, 429]
    assert (await handshake(url, tokens[2])).status_code == 429
    metrics = await gw.metrics()
    assert 'gateway_handshakes_refused_total{reason="ip_blocked"}' in metrics
    assert 'gateway_handshakes_refused_total{reason="ip_connections"} 1' in metrics
    await gw.http.aclose()
    gw.scope.cancel()
