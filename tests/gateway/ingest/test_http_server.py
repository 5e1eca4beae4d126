"""The lean device HTTP server, spoken to over a raw socket: keep-alive, pipelining, and what
it does with bytes that are not a request it answers."""

from __future__ import annotations

import time
import urllib.parse

import trio

from tests.gateway.conftest import GatewayHandle, metric


async def connect(gateway: GatewayHandle) -> trio.SocketStream:
    url = urllib.parse.urlsplit(gateway.ep.device_http_url)
    assert url.hostname is not None and url.port is not None
    return await trio.open_tcp_stream(url.hostname, url.port)


async def read_responses(stream: trio.SocketStream, n: int) -> list[tuple[int, bytes, bytes]]:
    """``n`` responses: (status, head, body), read until each body is complete."""
    buf = b""
    out: list[tuple[int, bytes, bytes]] = []
    with trio.fail_after(10):
        while len(out) < n:
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed after {len(out)} responses: {buf!r}"
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                chunk = await stream.receive_some(65536)
                assert chunk
                rest += chunk
            out.append((int(head.split(b" ")[1]), head, rest[:length]))
            buf = rest[length:]
    return out


def osmand_get(token: str, ts: int, lat: float, path: str = "/") -> bytes:
    q = urllib.parse.urlencode({"id": token, "timestamp": ts, "lat": lat, "lon": 4.0})
    return f"GET {path}?{q} HTTP/1.1\r\nHost: gw\r\n\r\n".encode()


async def test_one_connection_many_requests_pipelined_answered_in_order(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("lean-1")
    ts = int(time.time()) - 100
    stream = await connect(gateway)
    async with stream:
        # Ten fixes sent at once (pipelined), the third a duplicate of the second.
        fixes = [osmand_get(token, ts + i, 52.0 + i * 1e-4) for i in range(10)]
        fixes.insert(2, fixes[1])
        await stream.send_all(b"".join(fixes))
        answers = await read_responses(stream, len(fixes))
        assert [a[0] for a in answers] == [200] * len(fixes)
        assert answers[0][2] == b"" and b'"duplicate"' in answers[2][2]
        # The connection is still open for more.
        await stream.send_all(osmand_get(token, ts + 20, 52.002, path="/v1/osmand"))
        [(status, _, _)] = await read_responses(stream, 1)
        assert status == 200
    track = (await gateway.http.get("/v1/vehicles/lean-1/track",
                                    params={"since": ts - 10})).json()["positions"]  # fmt: skip
    assert [round(p["ts"]) - ts for p in track] == [*range(10), 20]


async def test_what_is_not_a_request_it_answers_is_refused_and_closed(
    gateway: GatewayHandle,
) -> None:
    token = await gateway.register("lean-2")
    cases = [
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400),  # a TLS hello, say
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400),
        (b"POST /v1/owntracks HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
         + b"{" * 1_100_000, 413),
        (b"GET /v1/ingest HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
         b"\r\n", 400),
    ]  # fmt: skip
    for request, status in cases:
        stream = await connect(gateway)
        async with stream:
            await stream.send_all(request)
            [(got, head, body)] = await read_responses(stream, 1)
            assert (got, b"connection: close" in head.lower()) == (status, True), request[:40]
            assert body.startswith(b'{"error":')
            with trio.fail_after(5):
                while await stream.receive_some(65536):
                    pass  # the server closes the connection
    stream = await connect(gateway)
    async with stream:
        await stream.send_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.send_all(b"DELETE /v1/owntracks HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.send_all(osmand_get("not-a-token", 1, 1.0))
        await stream.send_all(osmand_get(token, int(time.time()), 52.0))
        answers = await read_responses(stream, 4)
        assert [a[0] for a in answers] == [404, 405, 401, 200]  # and the connection stays
    metrics = await gateway.metrics()
    assert metric(metrics, 'gateway_device_http_refused_total{reason="413"}') == 1
    assert metric(metrics, 'gateway_handler_errors_total{proto="device_http"}') == 0
