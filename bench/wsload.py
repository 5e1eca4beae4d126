"""A lean WebSocket load generator for the ingest benchmarks, run as its own process.

It speaks just enough of RFC 6455 to blast pre-framed device messages (masked with an all
zero key, which the RFC allows and which leaves the payload as is) over raw TCP, so the
client costs far less CPU than the server it measures. Replies are read and discarded.

Usage: python bench/wsload.py '<json config>'; prints one JSON line with what it sent.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import time
from typing import Any

import msgspec
import trio

CHUNK_FRAMES_SINGLE = 200
CHUNK_FRAMES_BATCH = 4


def ws_frame(payload: bytes, binary: bool, opcode: int | None = None) -> bytes:
    """A client frame (masked with an all-zero key); ``opcode`` overrides text/binary."""
    head = 0x80 | (opcode if opcode is not None else 0x2 if binary else 0x1)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", head, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", head, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", head, 0x80 | 127, n)
    return hdr + b"\x00\x00\x00\x00" + payload


def upgrade_request(host: str, port: int, path: str, token: str | None) -> bytes:
    """The opening handshake's request (``token`` as a bearer token)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handshake(
    stream: trio.SocketStream, host: str, port: int, path: str, token: str | None
) -> None:
    await stream.send_all(upgrade_request(host, port, path, token))
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(4096)
        if not data:
            raise RuntimeError("connection closed during handshake")
        buf += data
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {buf[:200]!r}")


async def one_connection(cfg: dict[str, Any], idx: int, deadline: float, sent: list[int]) -> None:
    host, port, path = cfg["host"], cfg["port"], cfg["path"]
    tokens = cfg.get("tokens") or []
    token = tokens[idx] if tokens else None
    batch = int(cfg["batch"])
    binary = batch > 1
    enc = msgspec.msgpack.encode if binary else msgspec.json.encode
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await handshake(stream, host, port, path, token)

        async def drain() -> None:
            while await stream.receive_some(65536):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            base_ts = time.time() - 1800.0
            # Spread over a 10 x 10 km square around the centre (where the zones are, when the
            # benchmark adds some), one van a kilometre from the next.
            clat, clon = cfg.get("center", (52.0, 4.9))
            lat0 = clat - 0.045 + (idx % 10) * 0.009
            lon0 = clon - 0.07 + (idx // 10 % 10) * 0.014
            seq = 0
            per_chunk = CHUNK_FRAMES_BATCH if binary else CHUNK_FRAMES_SINGLE
            while time.monotonic() < deadline:
                frames = []
                for _ in range(per_chunk):
                    items = []
                    for _ in range(batch):
                        seq += 1
                        items.append(
                            {"seq": seq, "ts": base_ts + seq * 0.01, "lat": lat0 + seq * 1e-7,
                             "lon": lon0, "speed": 10.0, "heading": 0.0, "accuracy": 5.0}
                        )  # fmt: skip
                    frames.append(ws_frame(enc(items if binary else items[0]), binary))
                await stream.send_all(b"".join(frames))
                sent[0] += per_chunk * batch
            nursery.cancel_scope.cancel()


async def main(cfg: dict[str, Any]) -> None:
    deadline = time.monotonic() + float(cfg["duration"])
    sent = [0]
    async with trio.open_nursery() as nursery:
        for i in range(int(cfg["connections"])):
            nursery.start_soon(one_connection, cfg, i, deadline, sent)
    print(json.dumps({"sent_positions": sent[0]}), flush=True)


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
