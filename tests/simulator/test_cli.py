"""The command line: options, environment variables, and real runs as a subprocess."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import trio
from trio_websocket import serve_websocket

from simulator.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, config_from_args, parse_args
from simulator.wire import Encoding

from .servers import API_KEY, IngestServer, make_api, start_api

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_") and k != "API_KEY"}
    env.update(extra)
    return env


def test_help_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "--help"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--api", "--ingest", "--api-key", "--vehicles", "--center", "--seed",
                   "--interval", "--time-scale", "--encoding", "--batch", "--duration",
                   "--stops-per-route", "--report-json", "SIM_VEHICLES"):  # fmt: skip
        assert option in out.stdout


def test_defaults() -> None:
    config = config_from_args(parse_args([], env={}))
    assert config.api == "http://127.0.0.1:8080"
    assert config.ingest == "ws://127.0.0.1:8081/v1/ingest"
    assert config.vehicles == 50 and config.duration is None
    assert config.encoding is Encoding.JSON


def test_environment_fills_in_and_command_line_wins() -> None:
    env = {
        "SIM_VEHICLES": "7",
        "SIM_CENTER": "45.764,4.8357",
        "SIM_ENCODING": "msgpack",
        "SIM_REPORT_JSON": "yes",
        "API_KEY": "from-env",
    }
    args = parse_args(["--vehicles", "9"], env=env)
    config = config_from_args(args)
    assert config.vehicles == 9
    assert config.center == (45.764, 4.8357)
    assert config.encoding is Encoding.MSGPACK
    assert config.api_key == "from-env"
    assert args.report_json is True
    assert config_from_args(parse_args([], env={**env, "SIM_API_KEY": "k2"})).api_key == "k2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIM_VEHICLE": "3"}, "did you mean SIM_VEHICLES"),
        ({"SIM_VEHICLES": "lots"}, "SIM_VEHICLES='lots'"),
        ({"SIM_ENCODING": "xml"}, "choose from"),
        ({"SIM_CENTER": "52.3"}, "expected LAT,LON"),
        ({"SIM_FAIL_RATE": "1.5"}, "must be between 0 and 1"),
        ({"SIM_NO_ROUTES": "maybe"}, "expected a boolean"),
    ],
)
def test_bad_environment_is_refused(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args([], env=env)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_route_options() -> None:
    config = config_from_args(parse_args([], env={}))
    assert config.routes is True and config.fail_rate == 0.05
    assert config.run_id == "" and config.zone() == "Europe/Amsterdam"
    args = ["--no-routes", "--fail-rate", "0.2", "--run-id", "demo", "--timezone", "Europe/Paris"]
    config = config_from_args(parse_args(args, env={}))
    assert config.routes is False and config.fail_rate == 0.2
    assert config.make_run_id(0.0) == "demo" and config.zone() == "Europe/Paris"
    env = {"SIM_NO_ROUTES": "1", "SIM_FAIL_RATE": "0"}
    config = config_from_args(parse_args([], env=env))
    assert config.routes is False and config.fail_rate == 0.0
    assert config_from_args(parse_args([], env={"SIM_NO_ROUTES": "0"})).routes is True
    # The run id defaults to the local start time in the city.
    assert config_from_args(parse_args([], env={})).make_run_id(1_760_000_000.0) == (
        "20251009-105320"
    )


def test_bad_time_zone_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "--timezone", "Nowhere/Special"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == EXIT_USAGE
    assert "unknown time zone 'Nowhere/Special'" in out.stderr


async def _run_cli(
    args: list[str], *, interrupt_when: Callable[[], bool] | None = None
) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "simulator", *args]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                cmd,
                cwd=ROOT,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        )
        assert proc.stdout is not None
        chunks = []
        with trio.fail_after(60):
            if interrupt_when is not None:
                # Polling: the child process is only observable through the test server.
                while not interrupt_when():  # noqa: ASYNC110
                    await trio.sleep(0.05)
                proc.send_signal(signal.SIGINT)
            async for chunk in proc.stdout:
                chunks.append(chunk)
            code = await proc.wait()
    return code, b"".join(chunks).decode()


async def test_short_run_prints_summary_and_json(nursery: trio.Nursery) -> None:
    ingest = IngestServer()
    api = await start_api(nursery, make_api(ingest))
    listener = await nursery.start(serve_websocket, ingest.handler, "127.0.0.1", 0, None)
    code, out = await _run_cli(
        ["--api", api, "--ingest", f"ws://127.0.0.1:{listener.port}/v1/ingest",
         "--api-key", API_KEY, "--vehicles", "3", "--interval", "0.1", "--time-scale", "10",
         "--encoding", "msgpack", "--duration", "2", "--report-json", "--city-km", "2"]
    )  # fmt: skip
    assert code == EXIT_OK, out
    lines = out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["devices"] == 3
    assert report["sent"] > 20 and report["acked"] > 20
    assert any(line.startswith("sent ") for line in lines)
    assert len(ingest.devices) == 3


async def test_ctrl_c_stops_cleanly(nursery: trio.Nursery) -> None:
    ingest = IngestServer()
    api = await start_api(nursery, make_api(ingest))
    listener = await nursery.start(serve_websocket, ingest.handler, "127.0.0.1", 0, None)
    code, out = await _run_cli(
        ["--api", api, "--ingest", f"ws://127.0.0.1:{listener.port}/v1/ingest",
         "--api-key", API_KEY, "--vehicles", "2", "--interval", "0.1", "--report-json"],
        interrupt_when=lambda: ingest.received >= 10,
    )  # fmt: skip
    assert code == EXIT_OK, out
    assert json.loads(out.strip().splitlines()[-1])["acked"] > 0


async def test_registration_failure_exits_non_zero(nursery: trio.Nursery) -> None:
    api = await start_api(nursery, make_api(IngestServer()))
    code, _ = await _run_cli(["--api", api, "--api-key", "wrong", "--vehicles", "1"])
    assert code == EXIT_FAILED


async def test_too_many_stops_for_the_city_is_a_usage_error() -> None:
    code, _ = await _run_cli(["--city-km", "0.5", "--stops-per-route", "40", "--vehicles", "1"])
    assert code == EXIT_USAGE
