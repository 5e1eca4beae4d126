"""The device client against a real trio-websocket server speaking the ingest contract."""

from collections.abc import Callable

import msgspec
import pytest
import trio
from trio_websocket import serve_websocket

from simulator.device import CLOSE_TOO_BIG, DeviceClient, DeviceConfig
from simulator.vehicle import Fix
from simulator.wire import Encoding

from .servers import IngestServer

TOKEN = "secret-token"


def _fix(n: int) -> Fix:
    return Fix(
        ts=1_700_000_000.0 + n,
        lat=52.37 + n * 1e-5,
        lon=4.89,
        speed=8.0,
        heading=90.0,
        accuracy=5.0,
        alt=3.0,
        battery=80.0,
        odometer=1000.0 + n * 8,
    )


async def _serve(nursery: trio.Nursery, server: IngestServer) -> str:
    listener = await nursery.start(serve_websocket, server.handler, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{listener.port}/v1/ingest"


def _config(url: str, **kw: object) -> DeviceConfig:
    base: dict[str, object] = {"url": url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    base.update(kw)
    return DeviceConfig(**base)  # type: ignore[arg-type]


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    # Polling: the counters under test have no events of their own to wait on.
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


async def test_acks_rejections_and_resend_after_a_drop(nursery: trio.Nursery) -> None:
    server = IngestServer(reject={5: "implausible_jump"}, drop_after_frame=3)
    dev = server.add("van-001", TOKEN)
    client = DeviceClient("van-001", TOKEN, _config(await _serve(nursery, server)), seed=1)
    nursery.start_soon(client.run)
    for n in (1, 2):
        client.submit(_fix(n))
        await _until(lambda: not client.backlog)
    client.submit(_fix(3))  # stored by the server, which then drops the connection unacked
    await _until(lambda: server.connections == 1 and not client.stats.connected)
    for n in range(4, 11):
        client.submit(_fix(n))
    await _until(lambda: not client.backlog)

    assert sorted(dev.stored) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    stats = client.stats
    assert stats.acked == 9
    assert stats.duplicates == 1  # seq 3, resent after the drop
    assert dict(stats.rejected) == {"implausible_jump": 1}
    assert stats.reconnects == 1
    assert stats.closes[1011] == 1
    assert stats.sent == 10 and stats.resent == 1
    # The backlog went out again as one batch on the new connection, oldest first.
    second = [body for conn, _, body in server.frames if conn == 2]
    assert isinstance(second[0], list)
    assert [p["seq"] for p in second[0]] == list(range(3, 11))
    client.stop()


async def test_msgpack_batches(nursery: trio.Nursery) -> None:
    server = IngestServer()
    dev = server.add("van-002", TOKEN)
    cfg = _config(await _serve(nursery, server), encoding=Encoding.MSGPACK, batch=3)
    client = DeviceClient("van-002", TOKEN, cfg)
    nursery.start_soon(client.run)
    await _until(lambda: client.stats.connected)
    for n in range(1, 8):
        client.submit(_fix(n))
        await trio.sleep(0.01)
    await _until(lambda: client.stats.acked == 6)
    assert [[p["seq"] for p in body] for _, _, body in server.frames] == [[1, 2, 3], [4, 5, 6]]
    assert [p.seq for p in client.backlog] == [7]  # waits for a full batch
    with trio.fail_after(5):
        client.stop()
        await _until(lambda: not client.stats.connected)
    assert sorted(dev.stored) == list(range(1, 8))  # stop() flushes the partial batch
    first = server.frames[0][2][0]
    assert first["ts"] == 1_700_000_001.0 and "temp_c" not in first  # None fields left out


async def test_gateway_with_history_from_an_earlier_run(nursery: trio.Nursery) -> None:
    server = IngestServer()
    dev = server.add("van-003", TOKEN)
    dev.highest = 500
    client = DeviceClient("van-003", TOKEN, _config(await _serve(nursery, server)))
    nursery.start_soon(client.run)
    for n in range(1, 4):
        client.submit(_fix(n))
    await _until(lambda: len(dev.stored) == 3 and not client.backlog)
    assert sorted(dev.stored) == [501, 502, 503]
    assert client.stats.resyncs == 1
    assert client.submit(_fix(4)) == 504
    client.stop()


async def test_bad_token_is_refused_then_refreshed(nursery: trio.Nursery) -> None:
    server = IngestServer()
    dev = server.add("van-004", "the-real-token")
    asked: list[str] = []

    async def refresh(device_id: str) -> str:
        asked.append(device_id)
        return "the-real-token"

    cfg = _config(await _serve(nursery, server), token_in_query=True)
    client = DeviceClient("van-004", "stale", cfg, refresh_token=refresh)
    nursery.start_soon(client.run)
    client.submit(_fix(1))
    await _until(lambda: 1 in dev.stored and not client.backlog)
    assert asked == ["van-004"]
    assert client.stats.auth_failures == 1 and server.refused == 1
    client.stop()


async def test_frame_too_big_halves_the_batches(nursery: trio.Nursery) -> None:
    server = IngestServer(drop_after_frame=1, drop_code=CLOSE_TOO_BIG)
    dev = server.add("van-005", TOKEN)
    cfg = _config(await _serve(nursery, server), batch=4, resend_batch=8)
    client = DeviceClient("van-005", TOKEN, cfg)
    for n in range(1, 9):
        client.submit(_fix(n))
    nursery.start_soon(client.run)
    await _until(lambda: not client.backlog)
    sizes = [len(body) for _, _, body in server.frames]
    assert sizes[0] == 8  # the whole backlog at first ...
    assert max(sizes[1:]) == 4  # ... then at most half of it per frame
    assert sorted(dev.stored) == list(range(1, 9))
    client.stop()


async def test_backoff_while_the_gateway_is_down(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DeviceClient("van-006", TOKEN, _config(f"ws://127.0.0.1:{port}/v1/ingest"))
    nursery.start_soon(client.run)
    client.submit(_fix(1))
    await _until(lambda: client.stats.handshake_failures >= 3)
    assert client.stats.connects == 0
    assert [p.seq for p in client.backlog] == [1]
    client.stop()


async def test_simulated_disconnects_lose_nothing(nursery: trio.Nursery) -> None:
    server = IngestServer()
    dev = server.add("van-007", TOKEN)
    cfg = _config(await _serve(nursery, server), disconnect_probability=0.3, offline_s=(0, 0.02))
    client = DeviceClient("van-007", TOKEN, cfg, seed=3)
    nursery.start_soon(client.run)
    for n in range(1, 61):
        client.submit(_fix(n))
        await trio.sleep(0.002)
    await _until(lambda: not client.backlog and len(dev.stored) == 60)
    assert client.stats.simulated_disconnects >= 3
    assert client.stats.reconnects >= 3
    assert client.stats.acked == 60
    assert sorted(dev.stored) == list(range(1, 61))
    client.stop()


def test_backlog_is_bounded_and_drops_the_oldest() -> None:
    cfg = DeviceConfig(url="ws://unused/v1/ingest", max_backlog=5)
    client = DeviceClient("van-008", TOKEN, cfg)
    for n in range(1, 9):
        client.submit(_fix(n))
    assert [p.seq for p in client.backlog] == [4, 5, 6, 7, 8]
    assert client.stats.dropped == 3
    assert client.stats.unacked == 5


def test_replies_are_applied_to_the_backlog() -> None:
    client = DeviceClient("van-009", TOKEN, DeviceConfig(url="ws://unused/v1/ingest"))
    for n in range(1, 7):
        client.submit(_fix(n))
    ack = {"type": "ack", "seq": 3, "rejected": [{"seq": 2, "reason": "too_old"}]}
    client.handle_reply(msgspec.json.encode(ack).decode())
    assert [p.seq for p in client.backlog] == [4, 5, 6]
    assert client.stats.acked == 2 and client.stats.rejected["too_old"] == 1
    # A coalesced binary ack with a duplicate among the rejections.
    ack = {"type": "ack", "seq": 6, "rejected": [{"seq": 5, "reason": "duplicate"}]}
    client.handle_reply(msgspec.msgpack.encode(ack))
    assert client.backlog == []
    assert client.stats.acked == 5 and client.stats.duplicates == 1
    # Replies about positions already settled change nothing.
    settled = {"type": "ack", "seq": 6, "rejected": [{"seq": 4, "reason": "duplicate"}]}
    client.handle_reply(msgspec.json.encode(settled).decode())
    assert client.stats.acked == 5
    client.handle_reply('{"type": "error", "reason": "malformed", "detail": "not JSON"}')
    client.handle_reply(b"\xc1")
    client.handle_reply('{"type": "hello"}')
    assert client.stats.errors["malformed"] == 1
    assert client.stats.bad_replies == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"batch": 0},
        {"max_backlog": 0},
        {"disconnect_probability": 2},
        {"url": "http://127.0.0.1:8081/v1/ingest"},
    ],
)
def test_config_is_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DeviceConfig(**{"url": "ws://x/v1/ingest", **bad})  # type: ignore[arg-type]
