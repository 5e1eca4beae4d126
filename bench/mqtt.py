"""MQTT ingest: the gateway's full pipeline against a bare subscribe-and-decode loop on the
same client library (moat-lib-mqtt), same broker (a Mosquitto this script starts), same
publishers (``mosquitto_pub -l`` processes, one per device topic), same run; with
``mosquitto_sub``'s raw receive rate beside them as the ceiling. Rates are counted over a
window while the publishers run. The last line is one JSON object with the figures.

    python bench/mqtt.py [--devices 20] [--messages 20000] [--window 6]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moat.lib.mqtt import QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.app import Endpoints, run_gateway
from gateway.config import load_settings
from gateway.redisproc import free_port, start_redis
from gateway.wire import Position

WARMUP_S = 1.0
_dec = msgspec.json.Decoder(Position | list[Position])


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\n"
    )
    proc = subprocess.Popen([shutil.which("mosquitto") or "mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return proc, port


def write_feeds(folder: Path, devices: list[str], messages: int) -> list[Path]:
    t0 = time.time() - 3600
    files = []
    for d in devices:
        f = folder / f"{d}.jsonl"
        with f.open("w") as out:
            for seq in range(1, messages + 1):
                out.write(json.dumps({"seq": seq, "ts": t0 + seq * 0.1, "lat": 52.0 + seq * 1e-6,
                                      "lon": 4.0, "speed": 3.0}) + "\n")  # fmt: skip
        files.append(f)
    return files


async def publish(port: int, devices: list[str], files: list[Path]) -> None:
    async def one(device: str, feed: Path) -> None:
        await trio.run_process(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", f"fleet/{device}/pos",
             "-l", "-q", "0"],
            stdin=await trio.Path(feed).read_bytes(),
        )  # fmt: skip

    async with trio.open_nursery() as nursery:
        for d, f in zip(devices, files, strict=True):
            nursery.start_soon(one, d, f)


async def windowed(sample: Any, window: float) -> float:
    await trio.sleep(WARMUP_S)
    c0, t0 = await sample(), time.perf_counter()
    await trio.sleep(window)
    c1, t1 = await sample(), time.perf_counter()
    return (c1 - c0) / (t1 - t0)


async def bare(port: int, devices: list[str], files: list[Path], window: float) -> float:
    count = [0]
    async with trio.open_nursery() as nursery:
        ready = trio.Event()

        async def consume() -> None:
            async with (
                AsyncMQTTClient("127.0.0.1", port, client_id="bench-bare") as client,
                client.subscribe("fleet/+/pos", qos=QoS.AT_MOST_ONCE) as messages,
            ):
                ready.set()
                async for packet in messages:
                    payload = packet.payload
                    frame = _dec.decode(payload.encode() if isinstance(payload, str)
                                        else bytes(payload))  # fmt: skip
                    count[0] += len(frame) if isinstance(frame, list) else 1

        nursery.start_soon(consume)
        await ready.wait()
        nursery.start_soon(publish, port, devices, files)

        async def sample() -> float:
            return float(count[0])

        rate = await windowed(sample, window)
        nursery.cancel_scope.cancel()
    return rate


async def gateway(redis_url: str, tmp: Path, port: int, devices: list[str], files: list[Path],
                  window: float) -> float:  # fmt: skip
    settings = load_settings(
        env={}, redis_url=redis_url, data_dir=str(tmp / "gw"), http_port=0, ingest_port=0,
        api_keys="bench", mqtt_url=f"mqtt://127.0.0.1:{port}", notify=False, tile_url="",
        max_speed_mps=1000.0,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        ep: Endpoints = await nursery.start(run_gateway, settings)
        async with httpx.AsyncClient(base_url=ep.http_url, headers={"X-API-Key": "bench"}) as http:
            for d in devices:
                await http.post("/v1/devices", json={"id": d})
            with trio.fail_after(20):
                while (await http.get("/healthz")).json().get("mqtt") != "connected":  # noqa: ASYNC110
                    await trio.sleep(0.05)
            nursery.start_soon(publish, port, devices, files)

            async def sample() -> float:
                for line in (await http.get("/metrics")).text.splitlines():
                    if line.startswith("gateway_positions_accepted_total "):
                        return float(line.split()[1])
                return 0.0

            rate = await windowed(sample, window)
        nursery.cancel_scope.cancel()
    return rate


async def raw(port: int, devices: list[str], files: list[Path], window: float) -> float:
    proc = await trio.lowlevel.open_process(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "fleet/+/pos"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    count = [0]
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            assert proc.stdout is not None
            while data := await proc.stdout.receive_some(1 << 16):
                count[0] += data.count(b"\n")

        nursery.start_soon(read)
        await trio.sleep(0.3)
        nursery.start_soon(publish, port, devices, files)

        async def sample() -> float:
            return float(count[0])

        rate = await windowed(sample, window)
        proc.kill()
        nursery.cancel_scope.cancel()
    await proc.wait()
    await proc.stdout.aclose()
    return rate


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker, port = start_broker(tmp)
        redis = start_redis(tmp / "redis", appendonly=True)
        try:
            devices = [f"mq-{i}" for i in range(args.devices)]
            files = write_feeds(tmp, devices, args.messages)
            r = await raw(port, devices, files, args.window)
            print(f"mosquitto_sub raw      : {r:>10,.0f} messages/s", flush=True)
            b = await bare(port, devices, files, args.window)
            print(f"bare moat-lib-mqtt loop: {b:>10,.0f} messages/s", flush=True)
            g = await gateway(redis.url, tmp, port, devices, files, args.window)
            print(f"gateway MQTT ingest    : {g:>10,.0f} positions/s   ratio to bare {g / b:.2f}",
                  flush=True)  # fmt: skip
        finally:
            redis.stop()
            broker.terminate()
            broker.wait()
    print(json.dumps({"devices": args.devices, "raw_mps": round(r), "bare_mps": round(b),
                      "gateway_pps": round(g), "ratio": round(g / b, 3)}))  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--messages", type=int, default=20_000, help="per device")
    p.add_argument("--window", type=float, default=6.0)
    trio.run(main, p.parse_args())
