"""The demo's simulated fleet: how the simulator is started, and the ops page's word when it
stops, against a real gateway and Redis."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
from trio_websocket import WebSocketConnection, open_websocket_url

from gateway.demo import STOPPED, DemoFleet, FleetStatus, run_simulator, simulator_command
from simulator.cli import parse_args
from tests.gateway.conftest import API_KEY, gateway_settings, start_gateway
from tests.gateway.test_crash import start_process

DASH_KEY = "-Zx3_dash-first-key-0123456789ab"  # as token_urlsafe makes 1 time in 64


def exits_with(code: int, stderr: str) -> list[str]:
    """A command that writes ``stderr`` and exits with ``code`` at once."""
    return [sys.executable, "-c", f"import sys; sys.stderr.write({stderr!r}); sys.exit({code})"]


def test_the_simulator_is_given_a_key_starting_with_a_dash() -> None:
    cmd, env = simulator_command(
        "http://127.0.0.1:1", "ws://127.0.0.1:2/v1/ingest", DASH_KEY, 7, ["--time-scale", "3"]
    )
    assert cmd[:3] == [sys.executable, "-m", "simulator"]
    args = parse_args(cmd[3:], env=env)  # exits (argparse's error) if the key is misread
    assert args.api_key == DASH_KEY
    assert (args.api, args.vehicles, args.time_scale) == ("http://127.0.0.1:1", 7, 3.0)
    # Not on the command line, where every user of the machine can read it.
    assert not any(DASH_KEY in a for a in cmd)


@pytest.mark.parametrize(
    ("stderr", "detail"),
    [
        ("simulator: 2 vans\nerror: cannot register devices: 401\n\n", "error: cannot register "
         "devices: 401"),
        ("first line\nno end of line", "no end of line"),
        ("", ""),
    ],
)  # fmt: skip
async def test_a_simulator_that_exits_marks_the_fleet_stopped(
    stderr: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = DemoFleet(2)
    assert fleet.status == FleetStatus(state="running", vehicles=2)
    await run_simulator(exits_with(3, stderr), os.environ, fleet)
    assert fleet.status == FleetStatus(state=STOPPED, vehicles=2, exit_code=3, detail=detail)
    assert capsys.readouterr().err.rstrip("\n") == stderr.rstrip("\n")  # passed through


async def test_a_simulator_that_cannot_start_marks_the_fleet_stopped(tmp_path: Path) -> None:
    fleet = DemoFleet(1)
    await run_simulator([str(tmp_path / "no-such-program")], os.environ, fleet)
    assert fleet.status.state == STOPPED and fleet.status.exit_code is None
    assert fleet.status.detail.startswith("cannot start the simulator: ")


async def next_fleet_message(ws: WebSocketConnection, timeout_s: float = 10) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        while True:
            m = json.loads(await ws.get_message())
            if m["type"] == "fleet":
                return dict(m["fleet"])


async def test_the_ops_stream_says_when_the_fleet_stopped(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    fleet = DemoFleet(2)
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir), fleet)
    live = f"{gw.ep.http_url.replace('http', 'ws')}/v1/ops/live?key={API_KEY}"
    async with open_websocket_url(live) as ws:
        snapshot = json.loads(await ws.get_message())
        assert snapshot["config"]["fleet"] == {
            "state": "running", "vehicles": 2, "exit_code": None, "detail": ""
        }  # fmt: skip
        await run_simulator(exits_with(1, "error: no device could connect\n"), os.environ, fleet)
        stopped = {
            "state": "stopped", "vehicles": 2, "exit_code": 1,
            "detail": "error: no device could connect",
        }  # fmt: skip
        assert await next_fleet_message(ws) == stopped
    async with open_websocket_url(live) as ws:  # a page opened later
        assert json.loads(await ws.get_message())["config"]["fleet"] == stopped
    await gw.http.aclose()
    gw.scope.cancel()


async def test_no_fleet_outside_the_demo(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    live = f"{gw.ep.http_url.replace('http', 'ws')}/v1/ops/live?key={API_KEY}"
    async with open_websocket_url(live) as ws:
        assert json.loads(await ws.get_message())["config"]["fleet"] is None
    await gw.http.aclose()
    gw.scope.cancel()


async def start_demo(
    redis_url: str, data_dir: Path, key: str, *args: str
) -> tuple[trio.Process, str]:
    """``python -m gateway demo ARGS`` on free ports with agent key ``key``; the process and
    its HTTP base URL once it is serving."""
    proc, http, _ = await start_process(redis_url, data_dir, *args, command="demo", API_KEYS=key)
    return proc, http


async def stop_demo(proc: trio.Process) -> None:
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(20):
        assert await proc.wait() == 0
    assert proc.stdout is not None
    await proc.stdout.aclose()


async def test_the_demo_fleet_runs_with_a_key_starting_with_a_dash(
    redis_url: str, data_dir: Path
) -> None:
    proc, http = await start_demo(
        redis_url, data_dir, DASH_KEY, "--vehicles", "2", "--", "--duration", "1",
        "--status-interval", "0",
    )  # fmt: skip
    try:
        live = f"{http.replace('http', 'ws')}/v1/ops/live?key={DASH_KEY}"
        async with open_websocket_url(live) as ws:
            snapshot = json.loads(await ws.get_message())
            fleet = snapshot["config"]["fleet"]
            assert fleet["vehicles"] == 2
            if fleet["state"] == "running":
                fleet = await next_fleet_message(ws, timeout_s=30)
        # It drove its second and stopped at the end of it, not at its first option.
        assert (fleet["state"], fleet["exit_code"]) == ("stopped", 0), fleet
        async with httpx.AsyncClient(base_url=http, headers={"X-API-Key": DASH_KEY}) as api:
            devices = (await api.get("/v1/devices")).json()["devices"]
        assert len(devices) == 2
    finally:
        await stop_demo(proc)


async def test_the_demo_reports_a_fleet_that_would_not_start(
    redis_url: str, data_dir: Path
) -> None:
    proc, http = await start_demo(redis_url, data_dir, API_KEY, "--", "--center", "nowhere")
    try:
        live = f"{http.replace('http', 'ws')}/v1/ops/live?key={API_KEY}"
        async with open_websocket_url(live) as ws:
            fleet = json.loads(await ws.get_message())["config"]["fleet"]
            if fleet["state"] == "running":
                fleet = await next_fleet_message(ws)
        assert fleet["exit_code"] == 2  # the simulator's usage error
        assert "--center" in fleet["detail"] and "nowhere" in fleet["detail"]
    finally:
        await stop_demo(proc)
