"""Two gateway processes against one, on one Redis, on the same machine.

Each gateway runs as its own process (``python -m gateway serve``); the same number of
devices streams single-position frames from a separate load-generating process
(``bench/wsload.py``), all to the one process, or half to each of the two. Accepted
positions per second are read from each process's ``/metrics``. Prints both rates and the
ratio; the last line is one JSON object with the figures.

    python bench/processes.py [--connections 50] [--duration 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.redisproc import free_port, start_redis

LOADGEN = Path(__file__).with_name("wsload.py")
WARMUP_S = 1.5
KEY = "bench"


async def start_gateway(redis_url: str, data_dir: Path, nursery: trio.Nursery) -> tuple[str, int]:
    http, ingest = free_port(), free_port()
    env = os.environ | {
        "REDIS_URL": redis_url, "DATA_DIR": str(data_dir), "HTTP_PORT": str(http),
        "INGEST_PORT": str(ingest), "DEVICE_HTTP_PORT": "0", "API_KEYS": KEY, "NOTIFY": "false",
        "DEVICE_RATE_PER_S": "1e9", "DEVICE_BURST": "1000000000",
    }  # fmt: skip
    nursery.start_soon(
        partial(
            trio.run_process,
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    )
    base = f"http://127.0.0.1:{http}"
    async with httpx.AsyncClient() as client:
        with trio.fail_after(30):
            while True:
                try:
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.1)
    return base, ingest


async def accepted(client: httpx.AsyncClient, base: str) -> float:
    for line in (await client.get(f"{base}/metrics")).text.splitlines():
        if line.startswith("gateway_positions_accepted_total "):
            return float(line.split()[1])
    return 0.0


async def measure(
    n_procs: int, redis_url: str, tmp: Path, connections: int, duration: float
) -> float:
    async with trio.open_nursery() as nursery:
        gws = [
            await start_gateway(redis_url, tmp / f"gw{n_procs}", nursery) for _ in range(n_procs)
        ]
        headers = {"X-API-Key": KEY}
        async with httpx.AsyncClient(headers=headers, timeout=10) as client:
            tokens: list[list[str]] = [[] for _ in gws]
            for i in range(connections):
                dev = f"p{n_procs}-{i}-{time.monotonic_ns()}"
                r = await client.post(f"{gws[0][0]}/v1/devices", json={"id": dev})
                tokens[i % n_procs].append(r.json()["token"])
            done = trio.Event()
            remaining = [len(gws)]

            async def load(idx: int) -> None:
                cfg = {"host": "127.0.0.1", "port": gws[idx][1], "path": "/v1/ingest",
                       "tokens": tokens[idx], "connections": len(tokens[idx]), "batch": 1,
                       "duration": duration}  # fmt: skip
                await trio.run_process([sys.executable, str(LOADGEN), json.dumps(cfg)],
                                       stdout=subprocess.DEVNULL)  # fmt: skip
                remaining[0] -= 1
                if not remaining[0]:
                    done.set()

            async with trio.open_nursery() as loads:
                for idx in range(len(gws)):
                    loads.start_soon(load, idx)
                await trio.sleep(WARMUP_S)
                c0 = sum([await accepted(client, base) for base, _ in gws])
                t0 = time.perf_counter()
                await trio.sleep(duration - WARMUP_S - 0.5)
                c1 = sum([await accepted(client, base) for base, _ in gws])
                t1 = time.perf_counter()
                await done.wait()
        nursery.cancel_scope.cancel()
    return (c1 - c0) / (t1 - t0)


async def main(args: argparse.Namespace) -> None:
    ones, twos, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", appendonly=True)
        try:
            # Alternate the two in several rounds: other load on the machine then hits both
            # alike, and the median ratio is what is reported.
            for _ in range(args.rounds):
                one = await measure(1, redis.url, Path(tmp), args.connections, args.duration)
                two = await measure(2, redis.url, Path(tmp), args.connections, args.duration)
                ones.append(one)
                twos.append(two)
                ratios.append(two / one if one else 0.0)
                print(f"one process {one:>10,.0f} positions/s   two processes {two:>10,.0f} "
                      f"positions/s   ratio {ratios[-1]:.2f}", flush=True)  # fmt: skip
        finally:
            redis.stop()
    figures: dict[str, Any] = {
        "connections": args.connections, "rounds": args.rounds,
        "one_pps": round(statistics.median(ones)), "two_pps": round(statistics.median(twos)),
        "ratio": round(statistics.median(ratios), 3),
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    trio.run(main, p.parse_args())
