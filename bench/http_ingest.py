"""Device HTTP ingest at a fleet's shape: phones running the Traccar Client, each on its own
keep-alive connection sending the app's requests (its JSON body POSTed, or with ``--shape
query`` the older OsmAnd query form), against the lean device HTTP server
(``gateway.ingest.http_server``), all the way to Redis (append-only persistence on) and back.

In one run, with the load generator (``bench/httpload.py``) in its own process:
  (a) bare: a keep-alive HTTP/1.1 server on the same parser (httptools) and the same socket
      reads and writes that answers 200 to every request and does nothing else;
  (b) gateway, ``max``: every device sends its next fix as soon as the last was answered:
      requests/s answered and positions/s stored, and the ratio to (a);
  (c) gateway, ``fleet``: ``--devices`` devices (2,000 by default) each sending one fix a
      second, for ``--fleet-duration`` seconds: request latency p50/p99/max.
Also prints this process's CPU time per request (the servers run here; Redis and the load
generator do not). The last line is one JSON object with ``requests_per_s`` (stored, from
(b)), ``p99_ms`` (from (c)), ``ratio`` ((b) over (a)) and the rest.

    python bench/http_ingest.py [--connections 200] [--duration 8] [--devices 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import Endpoints, run_gateway
from gateway.config import load_settings
from gateway.core.connect import connect_redis
from gateway.core.redisproc import start_redis
from gateway.fleet.devices import Devices
from gateway.ingest.http_server import RequestParsing, receive, send

LOADGEN = Path(__file__).with_name("httpload.py")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n\r\n"


async def load(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator; its figures, with this process's CPU seconds meanwhile."""
    p0 = time.process_time()
    done = await trio.run_process(
        [sys.executable, str(LOADGEN), json.dumps(cfg)], capture_stdout=True
    )
    out: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    out["cpu_s"] = time.process_time() - p0
    return out


async def bare(connections: int, duration: float, shape: str) -> dict[str, Any]:
    """The bare loop: parse each request, answer 200."""

    async def connection(stream: trio.SocketStream) -> None:
        parsing = RequestParsing(2**20)
        fd = stream.socket.fileno()
        async with stream:
            while data := await receive(fd):
                parsing.parser.feed_data(data)
                while parsing.done:
                    parsing.done.pop(0)
                    await send(fd, OK)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, connection, 0)
        port = listeners[0].socket.getsockname()[1]
        tokens = [f"t{i}" for i in range(connections)]
        cfg = {"host": "127.0.0.1", "port": port, "tokens": tokens, "mode": "max",
               "duration": duration, "shape": shape}  # fmt: skip
        out = await load(cfg)
        nursery.cancel_scope.cancel()
    return out


async def stored(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("gateway_positions_accepted_total "):
            return float(line.split()[1])
    return 0.0


async def gateway(
    redis_url: str, data_dir: Path, mode: str, devices: int, duration: float, shape: str
) -> dict[str, Any]:
    settings = load_settings(
        env={}, redis_url=redis_url, data_dir=str(data_dir), http_port=0, ingest_port=0,
        device_http_port=0, api_keys="bench", device_rate_per_s=1e9, device_burst=10**9,
        notify=False,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        ep: Endpoints = await nursery.start(run_gateway, settings)
        tokens = []
        async with connect_redis(redis_url) as redis:
            registry = Devices(redis)
            stamp = time.monotonic_ns()
            for i in range(devices):
                tokens.append(await registry.create_device(f"http-{stamp}-{i}", f"v-{i}", ""))
        port = int(ep.device_http_url.rsplit(":", 1)[1])
        cfg = {"host": "127.0.0.1", "port": port, "tokens": tokens, "mode": mode,
               "duration": duration, "warmup": 3.0, "shape": shape}  # fmt: skip
        async with httpx.AsyncClient(
            base_url=ep.http_url, headers={"Authorization": "Bearer bench"}
        ) as http:
            s0, t0 = await stored(http), time.perf_counter()
            out = await load(cfg)
            out["stored_per_s"] = (await stored(http) - s0) / (time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    return out


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", appendonly=True)
        try:
            b = await bare(args.connections, args.duration, args.shape)
            g = await gateway(
                redis.url, Path(tmp), "max", args.connections, args.duration, args.shape
            )
            f = await gateway(
                redis.url, Path(tmp), "fleet", args.devices, args.fleet_duration, args.shape
            )
        finally:
            redis.stop()
    b_rps, g_rps = b["requests_per_s"], g["requests_per_s"]
    b_cpu = b["cpu_s"] / max(1.0, b_rps * args.duration) * 1e6
    g_cpu = g["cpu_s"] / max(1.0, g_rps * args.duration) * 1e6
    print(f"bare keep-alive loop: {b_rps:>9,.0f} requests/s ({b_cpu:5.1f} us CPU each)")
    print(f"gateway, max:         {g_rps:>9,.0f} requests/s ({g_cpu:5.1f} us CPU each), "
          f"{g['stored_per_s']:,.0f} positions/s stored, answers {g['statuses']}; "
          f"ratio {g_rps / b_rps:.2f}")  # fmt: skip
    print(f"gateway, fleet:       {args.devices} devices at 1 fix/s: "
          f"{f['requests_per_s']:,.0f} requests/s, p50 {f.get('p50_ms', 0):.1f} ms, "
          f"p99 {f.get('p99_ms', 0):.1f} ms, max {f.get('max_ms', 0):.1f} ms, "
          f"answers {f['statuses']}")  # fmt: skip
    figures = {
        "shape": args.shape, "connections": args.connections, "duration_s": args.duration,
        "devices": args.devices,
        "requests_per_s": round(g["stored_per_s"]), "answered_per_s": round(g_rps),
        "bare_per_s": round(b_rps), "ratio": round(g_rps / b_rps, 3),
        "gateway_cpu_us": round(g_cpu, 1), "bare_cpu_us": round(b_cpu, 1),
        "fleet_requests_per_s": round(f["requests_per_s"]),
        "p50_ms": round(f.get("p50_ms", 0.0), 1), "p99_ms": round(f.get("p99_ms", 0.0), 1),
        "max_ms": round(f.get("max_ms", 0.0), 1),
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--fleet-duration", type=float, default=12.0)
    p.add_argument("--shape", choices=("json", "query"), default="json")
    trio.run(main, p.parse_args())
