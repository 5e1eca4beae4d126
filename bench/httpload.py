"""A lean HTTP load generator for ``bench/http_ingest.py``, run as its own process.

Each connection is one device, as a phone running the Traccar Client is: one keep-alive
connection, one request at a time (the next only once the answer came): the app's JSON body
POSTed to the server URL (``shape`` "json", the default), or the older OsmAnd query form
(``shape`` "query"). Requests are built from a template, so the client costs far less CPU
than the server it measures.

Modes (the JSON config's ``mode``):
  ``max``: every connection sends its next fix as soon as the last was answered, for
      ``duration`` seconds: the most the server answers;
  ``fleet``: every device sends one fix a second (each at its own phase), for ``duration``
      seconds: the fleet's shape; each request's latency is recorded.

Prints one JSON line: requests answered (by status), requests/s, and for ``fleet`` the
latency percentiles in milliseconds (after ``warmup`` seconds).

Usage: python bench/httpload.py '<json config>'
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import trio


async def read_answer(stream: trio.SocketStream, buf: bytearray) -> int:
    """Read one response from ``stream`` (``buf`` holds what came after the last one);
    its status."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end])
            cl = head.lower().find(b"content-length: ")
            length = int(head[cl + 16 :].split(b"\r\n", 1)[0]) if cl >= 0 else 0
            total = end + 4 + length
            while len(buf) < total:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            del buf[:total]
            return int(head[9:12])
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        buf += chunk


async def device(
    cfg: dict[str, Any], token: str, t_end: float, statuses: Counter[int], lat_ms: list[float]
) -> None:
    stream = await trio.open_tcp_stream(cfg["host"], cfg["port"])
    # Fix times one millisecond apart from an hour ago: each is a new position (seq = ms).
    fix = time.time() - 3600.0
    lat = 48.85 + random.random() * 0.1
    json_body = cfg.get("shape", "json") == "json"
    if json_body:
        # The Traccar Client's own request: its JSON location template, POSTed to the server URL.
        head = b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: "
        body_head = (
            '{"location":{"timestamp":"%s","coords":{"latitude":'
            + f"{lat:.6f}"
            + ',"longitude":2.35,"accuracy":8,"speed":3,"heading":90,"altitude":35},'
            '"is_moving":true,"odometer":1200.5,"event":"","battery":{"level":0.77,'
            '"is_charging":false},"activity":{"type":"in_vehicle"},"extras":{}},'
            '"device_id":"' + token + '"}'
        )
    else:
        # The OsmAnd query form (the Traccar Client's older Android app).
        head = (f"GET /?id={token}&lat={lat:.6f}&lon=2.35&speed=3&bearing=90&accuracy=8"
                "&batt=77&timestamp=").encode()  # fmt: skip
        tail = b" HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n\r\n"
    buf = bytearray()
    fleet = cfg["mode"] == "fleet"
    warm_until = time.perf_counter() + cfg.get("warmup", 0.0)
    if fleet:
        await trio.sleep(random.random())  # its own phase within the second
    next_at = time.perf_counter()
    async with stream:
        while True:
            now = time.perf_counter()
            if now >= t_end:
                return
            if fleet and next_at > now:
                await trio.sleep(next_at - now)
            fix += 0.001 if not fleet else 1.0
            sent = time.perf_counter()
            if json_body:
                stamp = datetime.fromtimestamp(fix, UTC).isoformat(timespec="milliseconds")
                body = (body_head % stamp.replace("+00:00", "Z")).encode()
                request = head + str(len(body)).encode() + b"\r\n\r\n" + body
            else:
                request = head + f"{fix:.3f}".encode() + tail
            await stream.send_all(request)
            status = await read_answer(stream, buf)
            done = time.perf_counter()
            statuses[status] += 1
            if fleet:
                if sent >= warm_until:
                    lat_ms.append((done - sent) * 1000.0)
                next_at += 1.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main(cfg: dict[str, Any]) -> None:
    statuses: Counter[int] = Counter()
    lat_ms: list[float] = []
    t0 = time.perf_counter()
    t_end = t0 + cfg["duration"]
    async with trio.open_nursery() as nursery:
        for token in cfg["tokens"]:
            nursery.start_soon(device, cfg, token, t_end, statuses, lat_ms)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {
        "statuses": {str(k): v for k, v in statuses.items()},
        "requests_per_s": sum(statuses.values()) / elapsed,
    }
    if lat_ms:
        out |= {"p50_ms": percentile(lat_ms, 0.5), "p99_ms": percentile(lat_ms, 0.99),
                "max_ms": max(lat_ms), "measured": len(lat_ms)}  # fmt: skip
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
