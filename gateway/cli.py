"""Command line: ``python -m gateway serve | demo | device ...``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import trio

from gateway.app import Endpoints, run_gateway
from gateway.config import ConfigError, Settings, load_settings
from gateway.core.listen import ListenError
from gateway.core.runfile import RUN_FILE, read_run_file
from gateway.core.secrets import persistent_secret
from gateway.demo import DemoFleet, run_simulator, simulator_command

log = logging.getLogger("gateway")

NOISY_LOGGERS: Final = ("httpx", "mail.log", "coredis")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "http_port", "ingest_port", "device_http_port", "data_dir", "redis_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    settings = load_settings(args.config, **overrides)
    if args.command == "demo" and "QUIET_HOURS" not in os.environ:
        # The demo shows messages whatever the hour it is run at.
        settings = msgspec.structs.replace(settings, quiet_hours="")
    if args.command == "demo" and "NOTIFY_CAPTURE" not in os.environ:
        # The demo's customers are simulated: their texts and mails go to local capture
        # servers, shown on the ops page, unless a real provider is configured.
        settings = msgspec.structs.replace(settings, notify_capture=True)
    return settings


async def _until_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            log.info("stopping: writing queued positions")
            stop.set()
            return


def _banner(ep: Endpoints, extra: str = "") -> None:
    print(
        "\n"
        f"  Ops page:        {ep.ops_url}\n"
        f"  REST API:        {ep.http_url}/v1  (API key: {ep.api_key})\n"
        f"  OpenAPI:         {ep.http_url}/openapi.json\n"
        f"  Device ingest:   {ep.ingest_url}\n"
        f"  Device HTTP:     {ep.device_http_url} (OsmAnd: the Traccar Client's server URL)\n"
        f"  Metrics:         {ep.http_url}/metrics\n"
        f"{extra}"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )


PORT_STRIDE = 10  # process i listens on the configured ports + 10 * i
OTHERS_STOP_S = 60.0  # on a stop, the first process waits this long for the others


def _port_plus(port: int, i: int) -> str:
    return str(port + PORT_STRIDE * i) if port else "0"


def process_env(settings: Settings, ep: Endpoints, i: int) -> dict[str, str]:
    """What process ``i`` (> 0) of ``--processes`` is told beside the environment: the first
    one's Redis and data folder, its own ports and its own MQTT session."""
    env = {
        "REDIS_URL": ep.redis_url,
        "DATA_DIR": settings.data_dir,
        "HOST": settings.host,
        "HTTP_PORT": _port_plus(settings.http_port, i),
        "INGEST_PORT": _port_plus(settings.ingest_port, i),
        "DEVICE_HTTP_PORT": _port_plus(settings.device_http_port, i),
        # The demo's choices, which the first process made in code, not in the environment.
        "QUIET_HOURS": settings.quiet_hours,
        "NOTIFY_CAPTURE": "true" if settings.notify_capture else "false",
    }
    if settings.mqtt_client_id:
        # One broker session each: two connections of one client id take it in turns.
        env["MQTT_CLIENT_ID"] = f"{settings.mqtt_client_id}-{i}"
    return env


async def _serve(
    settings: Settings, vehicles: int | None, sim_args: list[str], processes: int = 1
) -> None:
    stop = trio.Event()
    own_stop = trio.Event()  # this process's gateway stops after the others have
    others: list[trio.Process] = []
    fleet = DemoFleet(vehicles) if vehicles is not None else None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_until_signal, stop)

        async def gateway(task_status: trio.TaskStatus[Endpoints]) -> None:
            await run_gateway(settings, own_stop, fleet=fleet, task_status=task_status)
            nursery.cancel_scope.cancel()  # the simulator and other processes too

        async def stop_in_order() -> None:
            """The other processes write out their queues into this one's Redis before it
            stops (its private redis-server with it)."""
            await stop.wait()
            for p in others:
                if p.returncode is None:
                    p.terminate()
            with trio.move_on_after(OTHERS_STOP_S):
                for p in others:
                    await p.wait()
            own_stop.set()

        ep: Endpoints = await nursery.start(gateway)
        nursery.start_soon(stop_in_order)
        # Further processes share this one's Redis and data folder (so its API key and
        # link secret), each on ports PORT_STRIDE further; a load balancer goes in front.
        for i in range(1, processes):
            env = os.environ | process_env(settings, ep, i)
            cmd = [sys.executable, "-m", "gateway", "serve"]
            others.append(await nursery.start(partial(trio.run_process, cmd, env=env, check=False)))
        if fleet is None:
            _banner(ep)
            return
        n = fleet.status.vehicles
        _banner(ep, f"  Simulated fleet: {n} vehicles (python -m simulator)\n")
        cmd, sim_env = simulator_command(
            ep.http_url, ep.ingest_url, ep.api_key, n, sim_args, ep.device_http_url
        )
        nursery.start_soon(run_simulator, cmd, os.environ | sim_env, fleet)


def gateway_address(api: str | None, settings: Settings) -> tuple[str, str]:
    """The base URL of the gateway to talk to, and where it came from: ``api`` (``--api``),
    else what the gateway running on the data folder recorded, else the settings."""
    if api:
        return api.rstrip("/"), "--api"
    data_dir = Path(settings.data_dir).resolve()
    running = read_run_file(data_dir)
    if running is not None:
        return running.http_url, f"{data_dir / RUN_FILE}, written by gateway process {running.pid}"
    source = "PUBLIC_URL" if settings.public_url else "HOST and HTTP_PORT"
    no_file = f"no running gateway recorded in {data_dir / RUN_FILE}"
    return settings.resolved_public_url(), f"{source}; {no_file}"


def _api_key(args: argparse.Namespace, settings: Settings) -> str:
    keys = settings.api_key_list()
    key: str = args.api_key or (
        keys[0] if keys else persistent_secret(Path(settings.data_dir).resolve(), "api_key")
    )
    return key


def _device(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    base, source = gateway_address(args.api, settings)
    headers = {"Authorization": f"Bearer {_api_key(args, settings)}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            if args.action == "add":
                body = {
                    "id": args.id, "vehicle": args.vehicle or args.id, "name": args.name or args.id
                }  # fmt: skip
                r = client.post("/v1/devices", json=body)
            elif args.action == "list":
                r = client.get("/v1/devices")
            elif args.action == "revoke":
                r = client.post(f"/v1/devices/{args.id}/revoke")
            else:
                r = client.post(f"/v1/devices/{args.id}/token")
    except httpx.HTTPError as exc:
        print(
            f"cannot reach the gateway at {base} (from {source}): {exc}. Is it running "
            "(./dev.sh run, python -m gateway serve)? Else give its address with --api URL",
            file=sys.stderr,
        )
        return 1
    try:
        answer = r.json()
    except ValueError:
        print(
            f"{base} (from {source}) answered HTTP {r.status_code} without JSON: is it the "
            "gateway? Give the gateway's address with --api URL",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if r.is_success else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    p.add_argument("--config", help="TOML settings file (also GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the gateway"),
        ("demo", "run the gateway and a simulated fleet"),
    ):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
        sp.add_argument(
            "--http-port", type=int, help="API and pages (HTTP_PORT, default 8080; 0: any free)"
        )
        sp.add_argument(
            "--ingest-port", type=int, help="devices (INGEST_PORT, default 8081; 0: any free)"
        )
        sp.add_argument(
            "--device-http-port",
            type=int,
            help="device HTTP: OsmAnd, OwnTracks (DEVICE_HTTP_PORT, default 5055; 0: any free)",
        )
        sp.add_argument("--data-dir", help="API key, private Redis (DATA_DIR, default data)")
        sp.add_argument("--redis-url", help="Redis to use (REDIS_URL; default: a private one)")
        sp.add_argument(
            "--processes", type=int, default=1, help="gateway processes sharing one Redis"
        )
        if name == "demo":
            sp.add_argument("--vehicles", type=int, default=50)
            sp.add_argument(
                "sim_args", nargs=argparse.REMAINDER, help="after --, options for the simulator"
            )
    dp = sub.add_parser("device", help="register, list, revoke devices (through the REST API)")
    dp.add_argument("action", choices=["add", "list", "revoke", "token"])
    dp.add_argument("id", nargs="?")
    dp.add_argument("--vehicle")
    dp.add_argument("--name")
    dp.add_argument(
        "--api",
        help="gateway base URL (default: the gateway running on the data folder, else from "
        "the settings: PUBLIC_URL, or HOST and HTTP_PORT)",
    )
    dp.add_argument("--api-key", help="agent API key (default from the settings or data folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Libraries that log every request, SMTP session or client retry at INFO would bury the
    # gateway's own messages (and the URLs the demo prints) under one line per message sent.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "device":
            if args.action != "list" and not args.id:
                print("a device id is needed", file=sys.stderr)
                return 2
            return _device(args)
        settings = _settings(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    vehicles = args.vehicles if args.command == "demo" else None
    sim_args = [a for a in getattr(args, "sim_args", []) if a != "--"]
    if args.processes < 1:
        print("--processes must be at least 1", file=sys.stderr)
        return 2
    try:
        trio.run(
            _serve,
            settings,
            vehicles,
            sim_args,
            args.processes,
            restrict_keyboard_interrupt_to_checkpoints=True,
        )
    except ListenError as err:
        return _busy(err)
    except BaseExceptionGroup as group:
        # A busy port: one line that names it, not the nurseries' traceback.
        unbound = group.subgroup(ListenError)
        if unbound is None:
            raise
        return _busy(_leaf(unbound))
    return 0


def _busy(err: ListenError) -> int:
    option = "--" + err.setting.lower().replace("_", "-")  # HTTP_PORT: --http-port
    print(f"{err}; choose another with {option} or {err.setting}", file=sys.stderr)
    return 1


def _leaf(group: BaseExceptionGroup[ListenError]) -> ListenError:
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first
