"""MQTT ingest: the gateway's full pipeline against a bare subscribe-and-decode loop on the
same client library (moat-lib-mqtt), same broker (a Mosquitto this script starts), same
publishers (``mosquitto_pub -l`` processes, one per device topic, single-position JSON
messages at ``--qos``), same subscription (QoS 1 requested, so the publishers' QoS is
delivered), same run; with ``mosquitto_sub``'s raw receive rate beside them as the ceiling.

At ``--qos 1`` every message is acknowledged to the broker: the bare loop (and
``mosquitto_sub``) as it is read, the gateway once its position is in Redis. ``--inflight``
is the broker's ``max_inflight_messages``, how many messages it has out unacknowledged to
one subscriber (Mosquitto's default 20; 0: no limit; the gateway itself asks for at most
4096).

``--bare`` picks the bare loop's client: ``library``, the library's own subscription (one
message at a time through a stream of five; the baseline of the 0.7 target), or
``adapter``, the client the gateway uses (``gateway.ingest.mqtt_ack.AckingClient``: every message
straight into one large stream), so the gateway's pipeline is measured against the same
receive path.

Rates are counted over a window while the publishers run: the bare loop counts decoded
positions, the gateway the positions written to Redis. Beside each rate, the CPU time this
process spent per message over the same window (the bare loop's, or the whole gateway's:
MQTT client, validation, writer, live stage), which is steadier than the rates on a busy
machine. The three are measured in turn for ``--rounds`` rounds; medians are reported. The
last line is one JSON object with the figures.

    python bench/mqtt.py [--devices 20] [--messages 20000] [--window 6] [--rounds 3]
                         [--qos 0] [--inflight 20] [--bare library]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moat.lib.mqtt import MQTTPublishPacket, QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from gateway.app import Endpoints, run_gateway
from gateway.config import load_settings
from gateway.core.redisproc import free_port, start_redis
from gateway.fleet.position import Position
from gateway.ingest.mqtt import INBOX_SIZE
from gateway.ingest.mqtt_ack import AckingClient

WARMUP_S = 1.0
_dec = msgspec.json.Decoder(Position | list[Position])


class Rate(msgspec.Struct):
    per_s: float  # messages (positions) per second
    cpu_us: float  # CPU time of this process per message, microseconds (0: not measured)


def start_broker(folder: Path, inflight: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 100000\nmax_inflight_messages {inflight}\n"
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


async def publish(port: int, devices: list[str], files: list[Path], qos: int) -> None:
    async def one(device: str, feed: Path) -> None:
        await trio.run_process(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", f"fleet/{device}/pos",
             "-l", "-q", str(qos)],
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


def positions(packet: MQTTPublishPacket) -> int:
    payload = packet.payload
    frame = _dec.decode(payload.encode() if isinstance(payload, str) else bytes(payload))
    return len(frame) if isinstance(frame, list) else 1


async def consume_library(port: int, ready: trio.Event, count: list[int]) -> None:
    """The library's own subscription: one message at a time, acknowledged as it is read."""
    async with (
        AsyncMQTTClient("127.0.0.1", port, client_id="bench-bare") as client,
        client.subscribe("fleet/+/pos", qos=QoS.AT_LEAST_ONCE) as messages,
    ):
        ready.set()
        async for packet in messages:
            count[0] += positions(packet)


async def consume_adapter(port: int, ready: trio.Event, count: list[int]) -> None:
    """The gateway's client (``AckingClient``): what has arrived is taken at once, decoded
    and acknowledged together, as the library acknowledges what one read brought."""
    send, recv = anyio.create_memory_object_stream[MQTTPublishPacket](INBOX_SIZE)
    async with (
        AckingClient("127.0.0.1", port, deliveries=send, client_id="bench-bare") as client,
        client.subscribe("fleet/+/pos", qos=QoS.AT_LEAST_ONCE),
    ):
        ready.set()
        while True:
            packets = [await recv.receive()]
            with contextlib.suppress(anyio.WouldBlock):
                while True:
                    packets.append(recv.receive_nowait())
            count[0] += sum(positions(p) for p in packets)
            if ids := [p.packet_id for p in packets if p.packet_id]:
                await client.ack(ids)


async def bare(port: int, devices: list[str], files: list[Path], window: float, qos: int,
               adapter: bool) -> Rate:  # fmt: skip
    count = [0]
    async with trio.open_nursery() as nursery:
        ready = trio.Event()
        nursery.start_soon(consume_adapter if adapter else consume_library, port, ready, count)
        await ready.wait()
        nursery.start_soon(publish, port, devices, files, qos)

        async def sample() -> float:
            return float(count[0])

        rate = await windowed(sample, window, cpu=True)
        nursery.cancel_scope.cancel()
    return rate


async def gateway(redis_url: str, data: Path, port: int, devices: list[str], files: list[Path],
                  window: float, qos: int) -> Rate:  # fmt: skip
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
            nursery.start_soon(publish, port, devices, files, qos)

            async def sample() -> float:
                for line in (await http.get("/metrics")).text.splitlines():
                    if line.startswith("gateway_writer_positions_total "):
                        return float(line.split()[1])
                return 0.0

            rate = await windowed(sample, window, cpu=True)
        nursery.cancel_scope.cancel()
    return rate


async def raw(port: int, devices: list[str], files: list[Path], window: float,
              qos: int) -> Rate:  # fmt: skip
    proc = await trio.lowlevel.open_process(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "fleet/+/pos", "-q", "1"],
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
        nursery.start_soon(publish, port, devices, files, qos)

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
        broker, port = start_broker(tmp, args.inflight)
        redis = start_redis(tmp / "redis", appendonly=True)
        try:
            files = write_feeds(tmp, args.devices, args.messages)
            for r in range(args.rounds):
                # New device names each round: the gateway keeps each device's last seq.
                devices = [f"mq{r}-{i}" for i in range(args.devices)]
                raws.append(await raw(port, devices, files, args.window, args.qos))
                bares.append(await bare(port, devices, files, args.window, args.qos,
                                        args.bare == "adapter"))  # fmt: skip
                gws.append(await gateway(redis.url, tmp / f"gw{r}", port, devices, files,
                                         args.window, args.qos))  # fmt: skip
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
    print(line(f"bare loop ({args.bare})", bares, "messages"))
    print(line("gateway MQTT ingest", gws, "positions"))
    print(f"ratio to bare: {ratio:.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}); "
          f"CPU per message, bare/gateway: {cpu_ratio:.2f}")  # fmt: skip
    figures = {
        "devices": args.devices,
        "rounds": args.rounds,
        "qos": args.qos,
        "inflight": args.inflight,
        "bare": args.bare,
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
    p.add_argument("--qos", type=int, choices=(0, 1), default=0, help="the publishers' QoS")
    p.add_argument("--inflight", type=int, default=20, help="the broker's max_inflight_messages")
    p.add_argument("--bare", choices=("library", "adapter"), default="library",
                   help="the bare loop's client: the library's subscription, or the gateway's "
                        "AckingClient")  # fmt: skip
    trio.run(main, p.parse_args())
