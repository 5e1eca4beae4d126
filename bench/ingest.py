"""Ingest benchmark: the gateway's full WebSocket path against a bare receive-and-decode loop.

In one run, with the same frames over the same number of connections from a separate
load-generating process:
  (a) bare: a trio-websocket server that only receives and decodes (msgspec) each frame;
  (b) gateway: the full path (auth, decode, validation, rate limits, Redis writes with
      append-only persistence, acks, live fan-out).
The gateway takes each frame in the connection's reader task (``gateway.ingest.ws_direct``), which
saves the bare loop's two task switches per frame; so the bare loop is also measured with
that same hook, as a second reference ("vs_direct": what the gateway's own work costs).
Both are measured for single-position JSON frames and 100-position MessagePack batches.
With ``--zones N`` the gateway also runs N zones (the city of ``bench/geofence.py``: customer
stops, blocks, corridors, depots, service areas) and the vans drive among them, as the
design's target states it; without, the geofence stage has nothing to do.
Prints positions/s and the ratio, and this process's CPU time per position for each (the
bare loop and the gateway both run in this process; Redis and the load generator do not):
the CPU ratio holds steadier than the rates when other work shares the machine. The last
line is one JSON object with the figures.

    python bench/ingest.py [--connections 50] [--duration 6] [--rounds 3] [--zones 10000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import Endpoints, connect_redis, run_gateway
from gateway.config import load_settings
from gateway.core.redisproc import start_redis
from gateway.fleet.position import Position
from gateway.ingest.ws_direct import DirectConnection, serve_direct
from gateway.zones.store import ZoneStore

# The zone city of bench/geofence.py (a script, not a module: loaded from its file).
_spec = importlib.util.spec_from_file_location(
    "bench_geofence", Path(__file__).with_name("geofence.py")
)
assert _spec is not None and _spec.loader is not None
city = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(city)

WARMUP_S = 1.5
LOADGEN = Path(__file__).with_name("wsload.py")
_json_dec = msgspec.json.Decoder(Position | list[Position])
_mp_dec = msgspec.msgpack.Decoder(Position | list[Position])


async def run_load(cfg: dict[str, Any], sample: Any) -> tuple[float, float]:
    """Start the load generator, sample the server's counter after warm-up; positions/s and
    this process's CPU microseconds per position."""
    measure_s = cfg["duration"] - WARMUP_S - 0.5
    async with trio.open_nursery() as nursery:
        proc_done = trio.Event()

        async def loadgen() -> None:
            await trio.run_process(
                [sys.executable, str(LOADGEN), json.dumps(cfg)], stdout=subprocess.DEVNULL
            )
            proc_done.set()

        nursery.start_soon(loadgen)
        await trio.sleep(WARMUP_S)
        c0, t0, p0 = await sample(), time.perf_counter(), time.process_time()
        await trio.sleep(measure_s)
        c1, t1, p1 = await sample(), time.perf_counter(), time.process_time()
        await proc_done.wait()
    n = max(c1 - c0, 1.0)
    return n / (t1 - t0), (p1 - p0) / n * 1e6


async def add_zones(redis_url: str, n: int) -> None:
    """Store ``n`` zones for the gateways this run starts (they load them when they start)."""
    zones = city.build_zones(n, city.np.random.default_rng(7))
    async with connect_redis(redis_url) as redis:
        store = ZoneStore(redis)
        for zone in zones:
            await store.put(zone)


async def bare(
    connections: int, batch: int, duration: float, *, direct: bool = False
) -> tuple[float, float]:
    """The bare receive-and-decode loop: a handler task taking each message from
    trio-websocket; with ``direct``, a callback in the reader task instead, the way the
    gateway takes them (``gateway.ingest.ws_direct``)."""
    count = [0]

    def decode(msg: str | bytes) -> None:
        frame = _mp_dec.decode(msg) if isinstance(msg, bytes) else _json_dec.decode(msg)
        count[0] += len(frame) if isinstance(frame, list) else 1

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                decode(await ws.get_message())
        except ConnectionClosed:
            pass

    async def on_message(msg: str | bytes) -> None:
        decode(msg)

    async def direct_handler(request: WebSocketRequest, connection: DirectConnection) -> None:
        connection.on_message = on_message
        ws = await request.accept()
        try:
            await ws.get_message()  # returns (raises) when the connection ends
        except ConnectionClosed:
            pass

    async def sample() -> float:
        return float(count[0])

    async with trio.open_nursery() as nursery:
        if direct:
            server = await nursery.start(
                lambda task_status: serve_direct(
                    direct_handler, "127.0.0.1", 0, max_message_size=2**20,
                    task_status=task_status,
                )
            )  # fmt: skip
        else:
            server = await nursery.start(
                lambda task_status: serve_websocket(
                    handler, "127.0.0.1", 0, None, receive_buffer_size=None,
                    task_status=task_status,
                )
            )  # fmt: skip
        cfg = {"host": "127.0.0.1", "port": server.port, "path": "/", "connections": connections,
               "batch": batch, "duration": duration, "center": city.CENTER}  # fmt: skip
        rate = await run_load(cfg, sample)
        nursery.cancel_scope.cancel()
    return rate


async def gateway(
    redis_url: str, data_dir: Path, connections: int, batch: int, duration: float
) -> tuple[float, float]:
    settings = load_settings(
        env={}, redis_url=redis_url, data_dir=str(data_dir), http_port=0, ingest_port=0,
        api_keys="bench", device_rate_per_s=1e9, device_burst=10**9, writer_max_batch=20_000,
        max_batch_positions=10_000,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        ep: Endpoints = await nursery.start(run_gateway, settings)
        async with httpx.AsyncClient(
            base_url=ep.http_url, headers={"Authorization": "Bearer bench"}
        ) as http:
            tokens = []
            for i in range(connections):
                dev = f"bench-{batch}-{i}-{time.monotonic_ns()}"
                r = await http.post("/v1/devices", json={"id": dev})
                tokens.append(r.json()["token"])

            async def sample() -> float:
                text = (await http.get("/metrics")).text
                for line in text.splitlines():
                    if line.startswith("gateway_positions_accepted_total "):
                        return float(line.split()[1])
                return 0.0

            port = int(ep.ingest_url.rsplit(":", 1)[1].split("/")[0])
            cfg = {"host": "127.0.0.1", "port": port, "path": "/v1/ingest", "tokens": tokens,
                   "connections": connections, "batch": batch, "duration": duration,
                   "center": city.CENTER}  # fmt: skip
            rate = await run_load(cfg, sample)
        nursery.cancel_scope.cancel()
    return rate


async def main(args: argparse.Namespace) -> None:
    figures: dict[str, Any] = {
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "zones": args.zones,
    }
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", appendonly=True)
        try:
            if args.zones:
                await add_zones(redis.url, args.zones)
            for label, batch in (("single", 1), ("batch100", 100)):
                # Alternate the two in several rounds: other load on the machine then hits
                # both alike, and the median ratio is what is reported.
                rows: list[dict[str, float]] = []
                for _ in range(args.rounds):
                    b, bu = await bare(args.connections, batch, args.duration)
                    d, du = await bare(args.connections, batch, args.duration, direct=True)
                    g, gu = await gateway(
                        redis.url, Path(tmp), args.connections, batch, args.duration
                    )
                    row = {
                        "bare_pps": b, "gateway_pps": g, "ratio": g / b if b else 0.0,
                        "bare_cpu_us": bu, "gateway_cpu_us": gu,
                        "cpu_ratio": bu / gu if gu else 0.0,
                        "direct_pps": d, "direct_cpu_us": du,
                        "ratio_vs_direct": g / d if d else 0.0,
                        "cpu_ratio_vs_direct": du / gu if gu else 0.0,
                    }  # fmt: skip
                    rows.append(row)
                    print(
                        f"{label:>9}: bare loop {b:>10,.0f} positions/s ({bu:5.2f} us CPU each)"
                        f"   gateway {g:>10,.0f} positions/s ({gu:5.2f} us)   ratio "
                        f"{row['ratio']:.2f}   CPU ratio {row['cpu_ratio']:.2f}\n"
                        f"{'':>9}  bare loop with the gateway's reader-task hook {d:>10,.0f} "
                        f"positions/s ({du:5.2f} us)   ratio {row['ratio_vs_direct']:.2f}   "
                        f"CPU ratio {row['cpu_ratio_vs_direct']:.2f}",
                        flush=True,
                    )
                figures[label] = {
                    k: round(statistics.median(r[k] for r in rows), 3 if "ratio" in k else 2)
                    for k in rows[0]
                }
        finally:
            redis.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--zones", type=int, default=0, help="zones the gateway runs (default none)")
    trio.run(main, p.parse_args())
