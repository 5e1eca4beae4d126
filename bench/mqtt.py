"""MQTT ingest: the gateway's full pipeline against a bare subscribe-and-decode loop on the
same client library (moat-lib-mqtt), same broker (a Mosquitto this script starts), same
publishers (``mosquitto_pub -l`` processes, one per device topic, single-position JSON
messages at QoS 0), same subscription (QoS 1 requested, so QoS 0 delivered), same run; with
``mosquitto_sub``'s raw receive rate beside them as the ceiling.

Rates are counted over a window while the publishers run: the bare loop counts decoded
positions, the gateway the positions written to Redis. Beside each rate, the CPU time this
process spent per message over the same window (the bare loop's, or the whole gateway's:
MQTT client, validation, writer, live stage), which is steadier than the rates on a busy
machine. The three are measured in turn for ``--rounds`` rounds; medians are reported. The
last line is one JSON object with the figures.

    python bench/mqtt.py [--devices 20] [--messages 20000] [--window 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

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


class Rate(msgspec.Struct):
    per_s: float  # messages (positions) per second
    cpu_us: float  # CPU time of this process per message, microseconds (0: not measured)


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


def write_feeds(folder: Path, count: int, messages: int) -> list[Path]:
    """One file per device: ``messages`` single-position JSON lines with rising ``seq``."""
    t0 = time.time() - 3600
    files = []
    for i in range(count):
        f = folder / f"feed-{i}.jsonl"
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


async def windowed(sample: Callable[[], Awaitable[float]], window: float, cpu: bool) -> Rate:
    await trio.sleep(WARMUP_S)
    c0, t0, p0 = await sample(), time.perf_counter(), time.process_time()
    await trio.sleep(window)
    c1, t1, p1 = await sample(), time.perf_counter(), time.process_time()
    n = max(c1 - c0, 1.0)
    return Rate(n / (t1 - t0), (p1 - p0) / n * 1e6 if cpu else 0.0)


async def bare(port: int, devices: list[str], files: list[Path], window: float) -> Rate:
    count = [0]
    async with trio.open_nursery() as nursery:
        ready = trio.Event()

        async def consume() -> None:
            async with (
                AsyncMQTTClient("127.0.0.1", port, client_id="bench-bare") as client,
                client.subscribe("fleet/+/pos", qos=QoS.AT_LEAST_ONCE) as messages,
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

        rate = await windowed(sample, window, cpu=True)
        nursery.cancel_scope.cancel()
    return rate


async def gateway(redis_url: str, data: Path, port: int, devices: list[str], files: list[Path],
                  window: float) -> Rate:  # fmt: skip
    settings = load_settings(
        env={}, redis_url=redis_url, data_dir=str(data), http_port=0, ingest_port=0,
        api_keys="bench", mqtt_url=f"mqtt://127.0.0.1:{port}", notify=False, tile_url="",
        max_speed_mps=1000.0,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        ep: Endpoints = await nursery.start(run_gateway, settings)
        async with httpx.AsyncClient(base_url=ep.http_url, headers={"X-API-Key": "bench"}) as http:
            for d in devices:
                (await http.post("/v1/devices", json={"id": d})).raise_for_status()
            with trio.fail_after(20):
                while (await http.get("/healthz")).json().get("mqtt") != "connected":  # noqa: ASYNC110
                    await trio.sleep(0.05)
            nursery.start_soon(publish, port, devices, files)

            async def sample() -> float:
                for line in (await http.get("/metrics")).text.splitlines():
                    if line.startswith("gateway_writer_positions_total "):
                        return float(line.split()[1])
                return 0.0

            rate = await windowed(sample, window, cpu=True)
        nursery.cancel_scope.cancel()
    return rate


async def raw(port: int, devices: list[str], files: list[Path], window: float) -> Rate:
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

        rate = await windowed(sample, window, cpu=False)
        proc.kill()
        nursery.cancel_scope.cancel()
    await proc.wait()
    await proc.stdout.aclose()
    return rate


async def main(args: argparse.Namespace) -> None:
    raws: list[Rate] = []
    bares: list[Rate] = []
    gws: list[Rate] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker, port = start_broker(tmp)
        redis = start_redis(tmp / "redis", appendonly=True)
        try:
            files = write_feeds(tmp, args.devices, args.messages)
            for r in range(args.rounds):
                # New device names each round: the gateway keeps each device's last seq.
                devices = [f"mq{r}-{i}" for i in range(args.devices)]
                raws.append(await raw(port, devices, files, args.window))
                bares.append(await bare(port, devices, files, args.window))
                gws.append(await gateway(redis.url, tmp / f"gw{r}", port, devices, files,
                                         args.window))  # fmt: skip
                print(f"round {r + 1}: mosquitto_sub {raws[-1].per_s:,.0f} messages/s, bare loop "
                      f"{bares[-1].per_s:,.0f}/s ({bares[-1].cpu_us:.1f} us CPU each), gateway "
                      f"{gws[-1].per_s:,.0f}/s ({gws[-1].cpu_us:.1f} us CPU each): ratio "
                      f"{gws[-1].per_s / bares[-1].per_s:.2f}", flush=True)  # fmt: skip
        finally:
            redis.stop()
            broker.terminate()
            broker.wait()

    def med(rates: list[Rate]) -> float:
        return statistics.median(x.per_s for x in rates)

    def cpu(rates: list[Rate]) -> float:
        return statistics.median(x.cpu_us for x in rates)

    def line(name: str, rates: list[Rate], unit: str) -> str:
        low, high = min(x.per_s for x in rates), max(x.per_s for x in rates)
        text = f"{name:<23}: {med(rates):>10,.0f} {unit}/s ({low:,.0f}-{high:,.0f})"
        return text + (f"; {cpu(rates):.1f} us CPU per message" if rates[0].cpu_us else "")

    ratios = [g.per_s / b.per_s for g, b in zip(gws, bares, strict=True)]
    ratio = statistics.median(ratios)
    cpu_ratio = cpu(bares) / cpu(gws)
    print(line("mosquitto_sub raw", raws, "messages"))
    print(line("bare moat-lib-mqtt loop", bares, "messages"))
    print(line("gateway MQTT ingest", gws, "positions"))
    print(f"ratio to bare: {ratio:.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}); "
          f"CPU per message, bare/gateway: {cpu_ratio:.2f}")  # fmt: skip
    figures = {
        "devices": args.devices,
        "rounds": args.rounds,
        "raw_mps": round(med(raws)),
        "bare_mps": round(med(bares)),
        "gateway_pps": round(med(gws)),
        "ratio": round(ratio, 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "bare_cpu_us": round(cpu(bares), 1),
        "gateway_cpu_us": round(cpu(gws), 1),
        "cpu_ratio": round(cpu_ratio, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--messages", type=int, default=20_000, help="per device")
    p.add_argument("--window", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    trio.run(main, p.parse_args())
