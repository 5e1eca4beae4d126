"""The fleet-shaped benchmark: thousands of devices at one fix a second, pages watching.

Each step starts a fresh Redis (append-only, as the gateway's own) and a gateway
(``python -m gateway serve --processes P``: process i on the base ports + 10 i, devices and
pages spread over them as a load balancer would), registers N devices, gives R of their vans
(``--routes``: a number or ``all``; by default the C with a customer page) a started route of
``--stops`` stops (20) along the van's way, and C of them a tracking link for the stop the
van drives to, then runs load generators in
their own processes (``bench/fleetload.py``): one for the devices (every device its own
WebSocket, one position a second, the devices spread over the second) and one for the pages
(C customer tracking streams, each following its own van; O ops streams, the whole fleet).

Measured between warm-up and the end: positions sent and acked per second, ack latency
(send to the first ack that covers it), page latency (receive time minus fix time) for each
kind of page, the gap between two ops updates, the share of positions the pages saw, the
CPU of the gateway processes, Redis and the load generators, resident memory (gateway and
Redis), and the writer's queue depth over time. Afterwards every acknowledged position is
looked for in the stored tracks (``acked_but_not_stored``).

``--devices 1000,2000,5000`` runs one step each and reports the knee: the most devices at
which ack p99 stays under 100 ms. ``--duration 600`` is the soak. The last line is one JSON
object: the last step's figures, the steps, and the knee.

    python bench/fleet.py [--devices 1000] [--customers 0] [--ops 0] [--processes 1]
                          [--routes N|all] [--stops 20] [--duration 30] [--warmup 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.connect import connect_redis
from gateway.core.redisproc import RedisProcess, free_port, start_redis
from gateway.fleet.devices import Devices
from gateway.fleet.store import Store

LOADGEN = Path(__file__).with_name("fleetload.py")
KEY = "bench-fleet"
CENTRE = (52.37, 4.89)
STRIDE = 10  # gateway process i listens on the base ports + STRIDE * i
ACK_P99_TARGET_MS = 100.0
DEG_PER_M = 1 / 111_320.0


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(t) for t in text)
    return out


def gateway_pids(main: int) -> list[int]:
    """The gateway's processes: the first one and the ``--processes`` it started."""
    pids = [main]
    for c in children(main):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gateway" in cmd:
            pids.append(c)
    return pids


def percentile(values: array[float] | list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q / 100.0 * len(s)))])


def load_series(out: Path, name: str) -> array[float]:
    a = array("f")
    path = Path(f"{out}.{name}.f32")
    if path.exists():
        with path.open("rb") as f:
            a.frombytes(f.read())
    return a


async def metric(http: httpx.AsyncClient, name: str) -> float:
    total = 0.0
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd)


def start_gateway(
    redis: RedisProcess, data_dir: Path, processes: int, http: int, ingest: int, log: Path
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "REDIS_URL": redis.url,
        "DATA_DIR": str(data_dir),
        "API_KEYS": KEY,
        "HTTP_PORT": str(http),
        "INGEST_PORT": str(ingest),
        "DEVICE_HTTP_PORT": "0",
        "NOTIFY": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--processes", str(processes)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[1],
    )


def tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def wait_ready(urls: list[str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        for url in urls:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the gateway exited: {tail(log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the gateway did not start: {tail(log)}")
                await trio.sleep(0.2)


def place(rng: random.Random) -> tuple[float, float, float]:
    """A start point within 15 km of the centre and a heading."""
    r = 15_000 * math.sqrt(rng.random())
    a = rng.random() * 2 * math.pi
    lat = CENTRE[0] + r * math.cos(a) * DEG_PER_M
    lon = CENTRE[1] + r * math.sin(a) * DEG_PER_M / math.cos(math.radians(CENTRE[0]))
    return lat, lon, rng.random() * 360


def ahead(lat: float, lon: float, heading: float, m: float) -> tuple[float, float]:
    h = math.radians(heading)
    return (
        lat + math.cos(h) * m * DEG_PER_M,
        lon + math.sin(h) * m * DEG_PER_M / math.cos(math.radians(lat)),
    )


async def routes_and_links(
    api: str, devices: list[list[Any]], routed: int, customers: int, stops: int, run: str
) -> list[str]:
    """A started route of ``stops`` stops for each of the first ``routed`` vans, along its way
    from 8 km ahead, 400 m apart; a tracking link for the first stop's delivery of each of the
    first ``customers`` (the stop the van drives to); the links' tokens."""
    now = time.time()
    today = datetime.now(UTC).date().isoformat()
    tokens: list[str] = []
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ) as http:
        for first in range(0, routed, 100):
            batch = []
            for i in range(first, min(routed, first + 100)):
                vehicle, _, _, lat, lon, heading = devices[i]
                plan = []
                for k in range(stops):
                    slat, slon = ahead(lat, lon, heading, 8000 + 400 * k)
                    plan.append({
                        "external_id": f"s{k}", "location": {"lat": slat, "lon": slon},
                        "address": f"{i}-{k} Bench Street",
                        "window": {"start": now, "end": now + 3 * 3600 + 600 * k},
                        "deliveries": [{"external_id": f"{run}-d{i}-{k}",
                                        "recipient": {"name": f"Customer {i}-{k}"}}],
                    })  # fmt: skip
                batch.append({"external_id": f"{run}-r{i}", "vehicle": vehicle,
                              "driver": {"name": f"Driver {i}"}, "date": today,
                              "stops": plan})  # fmt: skip
            r = await http.put("/v1/routes", json={"routes": batch})
            r.raise_for_status()
            ids = [x["id"] for x in r.json()["routes"]]
            for rid in ids:
                (await http.post(f"/v1/routes/{rid}/start")).raise_for_status()
        for i in range(customers):
            r = await http.post(f"/v1/deliveries/{run}-d{i}-0/link")
            r.raise_for_status()
            tokens.append(r.json()["token"])
    return tokens


async def not_stored(redis_url: str, acked: list[int], devices: list[tuple[str, str]]) -> int:
    """Acknowledged positions missing from the stored tracks (``acked``: each device's
    highest acknowledged seq; ``devices``: (vehicle, device) by index)."""
    missing = 0
    async with connect_redis(redis_url) as redis:
        store = Store(redis, 86_400)
        for (vehicle, device), top in zip(devices, acked, strict=True):
            if top <= 0:
                continue
            got = {
                p.seq for d, p in await store.read_track(vehicle, 0, math.inf, 10**7, 0)
                if d == device
            }  # fmt: skip
            missing += sum(1 for s in range(1, top + 1) if s not in got)
    return missing


async def step(args: argparse.Namespace, n: int, tmp: Path) -> dict[str, Any]:
    run = f"fb{int(time.time())}"
    data_dir = tmp / f"step-{n}"
    data_dir.mkdir()
    redis = start_redis(data_dir / "redis", appendonly=True)
    http_base, ingest_base = free_port(), free_port()
    log = data_dir / "gateway.log"
    gw = start_gateway(redis, data_dir, args.processes, http_base, ingest_base, log)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        targets = [
            {"host": "127.0.0.1", "http_port": http_base + STRIDE * i,
             "ingest_port": ingest_base + STRIDE * i}
            for i in range(args.processes)
        ]  # fmt: skip
        await wait_ready([f"http://127.0.0.1:{t['http_port']}" for t in targets], gw, log)
        rng = random.Random(n)
        devices: list[list[Any]] = []
        async with connect_redis(redis.url) as r:
            registry = Devices(r)
            for i in range(n):
                vehicle = f"{run}-v{i}"
                token = await registry.create_device(f"{run}-dev{i}", vehicle, "")
                devices.append([vehicle, token, i % args.processes, *place(rng)])
        customers = min(args.customers, n)
        api = f"http://127.0.0.1:{targets[0]['http_port']}"
        routed = n if args.routes == "all" else max(customers, min(n, int(args.routes or 0)))
        tokens = await routes_and_links(api, devices, routed, customers, args.stops, run)
        start_at = time.time() + 3 + n / 2000 + customers / 500 + args.ops * 0.05
        common = {"targets": targets, "start_at": start_at, "warmup": args.warmup,
                  "duration": args.warmup + args.duration, "key": KEY}  # fmt: skip
        cfgs = {
            "devices": common | {"role": "devices", "devices": devices},
            "pages": common
            | {
                "role": "pages",
                "customers": [[tokens[i], devices[i][2]] for i in range(customers)],
                "ops": [i % args.processes for i in range(args.ops)],
            },
        }
        roles = ["devices"] + (["pages"] if customers or args.ops else [])
        outs = {}
        for role in roles:
            path = data_dir / f"{role}.json"
            cfg_path = data_dir / f"{role}.cfg.json"
            cfg_path.write_text(json.dumps(cfgs[role] | {"out": str(path)}))
            outs[role] = path
            procs.append(spawn([sys.executable, str(LOADGEN), str(cfg_path)]))
        pids = gateway_pids(gw.pid)
        https = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{t['http_port']}")
                 for t in targets]  # fmt: skip
        await trio.sleep(max(0.0, start_at + args.warmup - time.time()))
        t0 = time.time()
        cpu0 = {p: cpu_s(p) for p in [*pids, redis.process.pid]}
        depths: list[float] = []
        rss_peak = 0.0
        end = start_at + args.warmup + args.duration
        while time.time() < end - 0.5:
            await trio.sleep(min(args.sample_s, max(0.0, end - 0.5 - time.time())))
            depths.append(sum([await metric(h, "gateway_writer_queue_depth") for h in https]))
            rss_peak = max(rss_peak, sum(rss_mb(p) for p in [*pids, redis.process.pid]))
        elapsed = time.time() - t0
        cpu = {p: cpu_s(p) - c for p, c in cpu0.items()}
        rss_gw = sum(rss_mb(p) for p in pids)
        rss_redis = rss_mb(redis.process.pid)
        for h in https:
            await h.aclose()
        for p in procs:
            await trio.to_thread.run_sync(p.wait)
        results = {role: json.loads(path.read_text()) for role, path in outs.items()}
        dev = results["devices"]
        ids = [(d[0], f"{run}-dev{i}") for i, d in enumerate(devices)]
        lost = await not_stored(redis.url, dev["acked_seq"], ids)
        ack = load_series(outs["devices"], "ack_ms")
        pages = results.get("pages", {"counts": {}, "cpu_s": 0.0, "errors": []})
        cust = load_series(outs["pages"], "customer_ms") if "pages" in outs else array("f")
        ops = load_series(outs["pages"], "ops_ms") if "pages" in outs else array("f")
        gaps = load_series(outs["pages"], "ops_gap_ms") if "pages" in outs else array("f")
        sent = dev["sent_in_window"]
        gw_cpu = sum(cpu[p] for p in pids)
        loadgen_s = args.warmup + args.duration + 5  # about their whole life
        figures = {
            "devices": n, "customers": customers, "ops": args.ops, "routes": routed,
            "stops": args.stops,
            "processes": args.processes, "duration_s": round(elapsed, 1),
            "sent_per_s": round(sent / args.duration),
            "acked_per_s": round(len(ack) / args.duration),
            "ack_p50_ms": round(percentile(ack, 50), 1),
            "ack_p99_ms": round(percentile(ack, 99), 1),
            "ack_max_ms": round(max(ack, default=0.0), 1),
            "customer_p50_ms": round(percentile(cust, 50), 1),
            "customer_p99_ms": round(percentile(cust, 99), 1),
            "customer_updates_per_s": round(len(cust) / args.duration, 1),
            "ops_age_p50_ms": round(percentile(ops, 50), 1),
            "ops_age_p99_ms": round(percentile(ops, 99), 1),
            "ops_gap_p99_ms": round(percentile(gaps, 99), 1),
            "ops_share_seen": round(len(ops) / max(1, sent * args.ops), 3) if args.ops else None,
            "page_p99_ms": round(max(percentile(cust, 99), percentile(ops, 99)), 1),
            "rss_mb": round(rss_gw + rss_redis), "rss_gateway_mb": round(rss_gw),
            "rss_redis_mb": round(rss_redis), "rss_peak_mb": round(rss_peak),
            "gateway_cpu": round(gw_cpu / elapsed, 2),
            "gateway_cpu_us_per_position": round(gw_cpu / max(1, len(ack)) * 1e6, 1),
            "redis_cpu": round(cpu[redis.process.pid] / elapsed, 2),
            "loadgen_cpu": round((dev["cpu_s"] + pages["cpu_s"]) / loadgen_s, 2),
            "queue_depth_max": max(depths, default=0.0),
            "queue_depth_last": depths[-1] if depths else 0.0,
            "unacked_at_end": dev["unacked"],
            "acked_but_not_stored": lost,
            "device_closed": dev["counts"].get("device_closed", 0),
            "customer_views_without_vehicle":
                pages["counts"].get("customer_views_without_vehicle", 0),
            "errors": (dev["errors"] + pages["errors"])[:5],
        }  # fmt: skip
        return figures
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        gw.terminate()
        try:
            await trio.to_thread.run_sync(lambda: gw.wait(60))
        except subprocess.TimeoutExpired:
            gw.kill()
        redis.stop()
        if args.log_dir:
            keep_log(log, Path(args.log_dir), n)


def keep_log(log: Path, folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(log, folder / f"gateway-{n}.log")


def show(f: dict[str, Any]) -> None:
    print(
        f"{f['devices']:>6} devices {f['customers']:>5} customers {f['ops']:>3} ops "
        f"x{f['processes']}: acked {f['acked_per_s']:>6}/s (sent {f['sent_per_s']}/s), "
        f"ack p50/p99 {f['ack_p50_ms']}/{f['ack_p99_ms']} ms, customer p50/p99 "
        f"{f['customer_p50_ms']}/{f['customer_p99_ms']} ms, ops age p50/p99 "
        f"{f['ops_age_p50_ms']}/{f['ops_age_p99_ms']} ms gap p99 {f['ops_gap_p99_ms']} ms, "
        f"RSS {f['rss_mb']} MB, CPU gateway {f['gateway_cpu']} redis {f['redis_cpu']} "
        f"loadgen {f['loadgen_cpu']} ({f['gateway_cpu_us_per_position']} us/position), "
        f"queue max {f['queue_depth_max']:.0f}, not stored {f['acked_but_not_stored']}",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    hard = raise_nofile()
    counts = [int(x) for x in args.devices.split(",")]
    if max(counts) * 1.1 + args.customers + args.ops + 100 > hard:
        print(f"note: the open-files limit is {hard}", file=sys.stderr)
    steps = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            f = await step(args, n, Path(tmp))
            show(f)
            steps.append(f)
    ok = [f["devices"] for f in steps if f["ack_p99_ms"] < ACK_P99_TARGET_MS]
    last = steps[-1]
    summary = {k: v for k, v in last.items() if k != "errors"}
    summary["knee_devices"] = max(ok, default=0)
    summary["steps"] = [
        {k: f[k] for k in ("devices", "acked_per_s", "ack_p99_ms", "page_p99_ms", "rss_mb")}
        for f in steps
    ]
    print(json.dumps(summary))


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", default="1000", help="one count, or several: 1000,2000,5000")
    p.add_argument("--customers", type=int, default=0, help="customer tracking streams")
    p.add_argument("--ops", type=int, default=0, help="ops page streams")
    p.add_argument(
        "--routes",
        default="",
        help="vans with a started route: a number or 'all' (default: those with a customer page)",
    )
    p.add_argument("--stops", type=int, default=20, help="stops per route")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--sample-s", type=float, default=5.0, help="queue depth sampling")
    p.add_argument("--log-dir", help="keep each step's gateway log here")
    trio.run(main, p.parse_args())
