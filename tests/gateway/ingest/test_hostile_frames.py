"""Frames an attacker with a valid device token can send, against a running gateway while
another device streams: each is refused cleanly, the attacker's budget pays for it, and
the other device's acks keep coming."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from tests.gateway.conftest import GatewayHandle, gateway_settings, metric, start_gateway
from tests.gateway.ingest.test_websocket import ack_until, closed_by_gateway, fix, headers


class Steady:
    """A device sending one fix at a time and counting its acks: the bystander."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seq = 0

    async def one_more(self) -> None:
        """Send the next fix and wait for its ack (fails the test after 5 s)."""
        self.seq += 1
        await self.ws.send_message(json.dumps(fix(self.seq, dt=-100)))
        assert (await ack_until(self.ws, self.seq))["seq"] == self.seq


async def reply(ws: Any) -> dict[str, Any]:
    with trio.fail_after(5):
        raw = await ws.get_message()
    return msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # fixarray of one, nested, ending in nil


async def test_hostile_frames_are_refused_and_the_bystander_is_served(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    # A budget large enough for all of them (a megabyte costs 8,192 positions' worth).
    gateway = await start_gateway(
        nursery, gateway_settings(redis_url, data_dir, device_burst=200_000)
    )
    attacker = await gateway.register("attacker")
    steady_token = await gateway.register("steady")
    async with (
        open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(attacker)) as bad,
        open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(steady_token)) as good,
    ):
        steady = Steady(good)
        await steady.one_more()
        errors: list[tuple[str, str]] = []
        for frame in (
            deep_json(1000),
            '{"a":' * 1000 + "1" + "}" * 1000,
            deep_msgpack(1000),
            deep_json(100_000),
            b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\xc0" * 1_000_000,  # 1 MiB of nils
            "[" + ",".join(["0"] * 500_000) + "]",  # 1 MB of zeros
            b"\xdd\xff\xff\xff\xff",  # an array header claiming 4 billion items, truncated
            "[" + ",".join([json.dumps(fix(1))] * 10_001) + "]",  # one over the batch limit
        ):
            await bad.send_message(frame)
            got = await reply(bad)
            errors.append((got["type"], got["reason"]))
            await steady.one_more()
        assert errors == [
            ("error", "malformed"),
            ("error", "malformed"),
            ("error", "malformed"),
            ("error", "malformed"),
            ("error", "batch_too_large"),
            ("error", "batch_too_large"),
            ("error", "batch_too_large"),  # the header is read first
            ("error", "batch_too_large"),
        ]
        # A seq of 2^64 in JSON: refused as out of range, the rejection without its seq; a
        # binary frame after it gets a MessagePack ack that encodes.
        await bad.send_message(json.dumps(fix(1) | {"seq": 2**64}))
        assert (await reply(bad))["rejected"] == [
            {"seq": None, "reason": "out_of_range", "detail": "seq"}
        ]
        await bad.send_message(msgspec.msgpack.encode(fix(2)))
        assert await reply(bad) == {"type": "ack", "seq": 2, "rejected": []}
        await steady.one_more()
    assert (await gateway.http.get("/healthz")).status_code == 200
    metrics = await gateway.metrics()
    assert metric(metrics, 'gateway_frames_rejected_total{reason="batch_too_large"}') == 4
    assert metric(metrics, 'gateway_frames_rejected_total{reason="malformed"}') == 4
    await gateway.http.aclose()
    gateway.scope.cancel()


async def raw_connect(url: str, token: str) -> tuple[trio.SocketStream, WSConnection]:
    """A WebSocket client made of wsproto alone, to send what a well-behaved client
    library refuses to (a text frame that is not UTF-8)."""
    host, _, port = url.removeprefix("ws://").partition("/")[0].partition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)
    target = "/" + url.removeprefix("ws://").partition("/")[2]
    await stream.send_all(
        ws.send(
            Request(
                host=host,
                target=target,
                extra_headers=[(b"authorization", f"Bearer {token}".encode())],
            )
        )
    )
    with trio.fail_after(5):
        while True:
            ws.receive_data(await stream.receive_some())
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                return stream, ws


async def test_a_text_frame_that_is_not_utf8_is_closed_with_1007(gateway: GatewayHandle) -> None:
    token = await gateway.register("bad-text")
    stream, ws = await raw_connect(gateway.ep.ingest_url, token)
    # A masked text frame whose payload is not UTF-8, written by hand: FIN + opcode 1,
    # mask bit + length 4, a zero mask (so the payload goes as it is).
    await stream.send_all(b"\x81\x84\x00\x00\x00\x00" + b"\xff\xfe\xfd\xfc")
    codes: list[int] = []
    with trio.fail_after(5):
        while not codes:
            data = await stream.receive_some()
            assert data, "the connection was dropped without a close frame"
            ws.receive_data(data)
            codes += [e.code for e in ws.events() if isinstance(e, CloseConnection)]
    await stream.aclose()
    assert codes == [1007]
    steady = await gateway.register("after-bad-text")
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=headers(steady)) as ok:
        await Steady(ok).one_more()


async def test_garbage_is_charged_then_throttled_then_closed(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """Malformed frames cost budget like positions: a device that keeps sending them is
    slowed, then closed with 1008 (counted), and the bystander is served throughout."""
    gw = await start_gateway(
        nursery,
        gateway_settings(
            redis_url, data_dir, device_rate_per_s=20.0, device_burst=50, flood_close_after_s=1.0
        ),
    )
    attacker = await gw.register("garbage")
    steady_token = await gw.register("bystander")
    async with (
        open_websocket_url(gw.ep.ingest_url, extra_headers=headers(attacker)) as bad,
        open_websocket_url(gw.ep.ingest_url, extra_headers=headers(steady_token)) as good,
    ):
        steady = Steady(good)
        sent = 0

        async def flood() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionClosed):
                for _ in range(100_000):
                    await bad.send_message("{oops")
                    sent += 1

        async with trio.open_nursery() as n:
            n.start_soon(flood)
            code = await closed_by_gateway(bad)
            n.cancel_scope.cancel()
        assert code == 1008
        await steady.one_more()
    metrics = await gw.metrics()
    handled = metric(metrics, 'gateway_frames_total{proto="ws",enc="json"}')
    # 50 at once, then 20 a second for at most the second it was throttled, then the
    # connection was closed: far fewer than were sent.
    assert handled <= 50 + 20 * 1.5 + 2  # + the bystander's two frames
    assert metric(metrics, "gateway_device_throttled_total") >= 1
    assert metric(metrics, 'gateway_connections_closed_total{code="1008"}') == 1
    await gw.http.aclose()
    gw.scope.cancel()


async def test_reconnecting_does_not_refill_the_budget(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """Large batches and a reconnect after every 1008 close store no more than the budget:
    the burst, then the rate; a batch whose wait would outlast the flood limit is refused
    unacknowledged (the device resends it later)."""
    gw = await start_gateway(
        nursery,
        gateway_settings(
            redis_url,
            data_dir,
            device_rate_per_s=50.0,
            device_burst=400,
            flood_close_after_s=1.0,
            max_batch_positions=400,
        ),
    )
    token = await gw.register("dodger")
    start = time.monotonic()
    seq = 0
    for _ in range(6):
        async with open_websocket_url(gw.ep.ingest_url, extra_headers=headers(token)) as ws:
            try:
                while True:
                    t0 = time.time() - 600
                    batch = [
                        {"seq": seq + i, "ts": t0 + (seq + i) / 100, "lat": 52.0, "lon": 4.0}
                        for i in range(1, 401)
                    ]
                    seq += 400
                    await ws.send_message(json.dumps(batch))
                    await ack_until(ws, seq)
            except Exception:
                pass  # closed by the gateway (1008)
        await ws._stream.aclose()
    elapsed = time.monotonic() - start
    stored = metric(await gw.metrics(), "gateway_writer_positions_total")
    assert 400 <= stored <= 400 + 50 * elapsed
    assert metric(await gw.metrics(), 'gateway_connections_closed_total{code="1008"}') >= 5
    await gw.http.aclose()
    gw.scope.cancel()
