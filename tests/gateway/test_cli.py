"""The command line as a new user meets it: a busy port, and ``device add`` finding the
gateway, run as real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from gateway.core.redisproc import free_port
from tests.gateway.conftest import API_KEY, GatewayHandle

# Settings a developer's shell may hold that would point the command elsewhere.
SETTING_VARS = ("HOST", "HTTP_PORT", "INGEST_PORT", "DEVICE_HTTP_PORT", "PUBLIC_URL",
                "DATA_DIR", "REDIS_URL", "API_KEYS", "GATEWAY_CONFIG")  # fmt: skip


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
    return env | settings


async def gateway_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m gateway ARGS`` run to its end, its output captured."""
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "gateway", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.parametrize("setting", ["HTTP_PORT", "INGEST_PORT", "DEVICE_HTTP_PORT"])
async def test_a_busy_port_is_named_in_one_line(
    setting: str, redis_url: str, data_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(
            REDIS_URL=redis_url, DATA_DIR=str(data_dir), API_KEYS=API_KEY, NOTIFY="false",
            HTTP_PORT="0", INGEST_PORT="0", DEVICE_HTTP_PORT="0",
        ) | {setting: str(port)}  # fmt: skip
        result = await gateway_command(env, "serve")
    err = result.stderr.decode()
    assert result.returncode == 1, err
    option = "--" + setting.lower().replace("_", "-")
    expected = (
        f"cannot listen on 127.0.0.1:{port} ({setting}): address already in use; "
        f"choose another with {option} or {setting}"
    )
    assert expected in err.splitlines(), err
    assert "Traceback" not in err and "Exception Group" not in err, err
    assert not (data_dir / "gateway.json").exists()


async def test_device_add_finds_the_gateway_on_its_port(
    gateway: GatewayHandle, data_dir: Path
) -> None:
    # The gateway is on a random port; nothing tells the command but the data folder.
    env = clean_env(DATA_DIR=str(data_dir), API_KEYS=API_KEY)
    added = await gateway_command(env, "device", "add", "van-found")
    assert added.returncode == 0, added.stderr.decode()
    assert json.loads(added.stdout)["id"] == "van-found"
    assert (await gateway.http.get("/v1/devices/van-found")).is_success


async def test_device_add_names_the_address_it_tried(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = clean_env(DATA_DIR=str(tmp_path / "data"), API_KEYS=API_KEY, HTTP_PORT=str(port))
    result = await gateway_command(env, "device", "add", "van-lost")
    err = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""
    assert f"cannot reach the gateway at http://127.0.0.1:{port} (from HOST and HTTP_PORT;" in err
    assert str(tmp_path / "data" / "gateway.json") in err and "--api URL" in err
    assert "Traceback" not in err
