"""The WebSocket server that hands each message to a callback in the connection's reader."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url

from gateway.ingest.ws_direct import DirectConnection, serve_direct
from tests.gateway.ingest.test_websocket import closed_by_gateway


class Recorder:
    """A direct handler that records what each connection's callback received."""

    def __init__(self, *, slow: str | None = None, raises: str | None = None) -> None:
        self.got: dict[str, list[str | bytes]] = {}
        self.raises = raises  # this path's callback raises on the message "boom"
        self.errors: list[Exception] = []
        self.closed: dict[str, int | None] = {}
        self.slow = slow  # this path's callback waits until ``release`` is set
        self.release = trio.Event()
        self.changed = trio.Event()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, pred: Callable[[], bool]) -> None:
        with trio.fail_after(5):
            while not pred():
                await self.changed.wait()

    async def handler(self, request: WebSocketRequest, connection: DirectConnection) -> None:
        path = request.path
        got = self.got.setdefault(path, [])

        async def on_message(message: str | bytes) -> None:
            got.append(message)
            self._changed()
            if path == self.slow:
                await self.release.wait()
            if path == self.raises and message == "boom":
                raise ValueError("a bug in the frame handler")

        connection.on_message = on_message
        connection.on_error = self.errors.append
        ws = await request.accept()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()  # nothing comes this way; raises once the client is gone
        self.closed[path] = ws.closed.code if ws.closed else None
        self._changed()


async def serve(nursery: trio.Nursery, rec: Recorder, max_message_size: int = 2**20) -> int:
    server = await nursery.start(
        lambda task_status: serve_direct(
            rec.handler,
            "127.0.0.1",
            0,
            handler_nursery=nursery,
            max_message_size=max_message_size,
            task_status=task_status,
        )
    )
    return int(server.port)


async def test_messages_reach_the_callback_in_order_whole(nursery: trio.Nursery) -> None:
    rec = Recorder()
    port = await serve(nursery, rec)
    big = bytes(range(256)) * 1024  # 256 KiB: read in several chunks, several wsproto events
    sent: list[str | bytes] = ["one", b"\x01two", big, "three " * 5000, "four"]
    async with open_websocket_url(f"ws://127.0.0.1:{port}/a") as ws:
        for m in sent:
            await ws.send_message(m)
        await rec.wait_for(lambda: len(rec.got.get("/a", [])) == len(sent))
    assert rec.got["/a"] == sent
    assert [type(m) for m in rec.got["/a"]] == [type(m) for m in sent]
    await rec.wait_for(lambda: "/a" in rec.closed)
    assert rec.closed["/a"] == 1000


async def test_an_oversized_message_closes_with_1009_unseen(nursery: trio.Nursery) -> None:
    rec = Recorder()
    port = await serve(nursery, rec, max_message_size=1000)
    async with open_websocket_url(f"ws://127.0.0.1:{port}/big") as ws:
        await ws.send_message("small")
        await ws.send_message("x" * 5000)
        assert await closed_by_gateway(ws) == 1009
    await rec.wait_for(lambda: "/big" in rec.closed)
    assert rec.got["/big"] == ["small"]
    assert rec.closed["/big"] == 1009


async def test_a_waiting_callback_holds_back_only_its_own_connection(
    nursery: trio.Nursery,
) -> None:
    rec = Recorder(slow="/slow")
    port = await serve(nursery, rec)
    async with (
        open_websocket_url(f"ws://127.0.0.1:{port}/slow") as slow,
        open_websocket_url(f"ws://127.0.0.1:{port}/fast") as fast,
    ):
        for i in range(3):
            await slow.send_message(f"s{i}")
        for i in range(50):
            await fast.send_message(f"f{i}")
        await rec.wait_for(lambda: len(rec.got.get("/fast", [])) == 50)
        # The slow connection's reader is parked in its first callback: nothing after it
        # has been read, and nothing was lost or reordered once it is released.
        assert rec.got["/slow"] == ["s0"]
        rec.release.set()
        await rec.wait_for(lambda: len(rec.got["/slow"]) == 3)
    assert rec.got["/slow"] == ["s0", "s1", "s2"]
    assert rec.got["/fast"] == [f"f{i}" for i in range(50)]


async def test_a_raising_callback_closes_only_its_connection_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The callback runs in the reader task: what it raises must end that connection with
    1011 and be reported, not end the server; the traceback is logged once per place."""
    rec = Recorder(raises="/bug")
    port = await serve(nursery, rec)
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ok") as ok:
        for attempt in range(2):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/bug") as bug:
                await bug.send_message("fine")
                await bug.send_message("boom")
                await bug.send_message("never read")
                assert await closed_by_gateway(bug) == 1011
            await rec.wait_for(lambda n=attempt: len(rec.errors) == n + 1)  # type: ignore[misc]
            await ok.send_message(f"still served {attempt}")
        await rec.wait_for(lambda: len(rec.got.get("/ok", [])) == 2)
    assert rec.got["/bug"] == ["fine", "boom", "fine", "boom"]
    assert [str(e) for e in rec.errors] == ["a bug in the frame handler"] * 2
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == "gateway.ingest.ws_direct"]
    assert len(tracebacks) == 1
