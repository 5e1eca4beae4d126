"""Crash safety: a gateway killed with SIGKILL in the middle of ingest loses nothing it
acknowledged, and the positions a device resends are recognised, not stored twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.gateway.conftest import API_KEY


async def start_process(
    redis_url: str, data_dir: Path, *args: str, command: str = "serve", **settings: str
) -> tuple[trio.Process, str, str]:
    """``python -m gateway COMMAND ARGS`` (``serve`` by default) on free ports; ``settings``
    as environment variables (``NOTIFY="true"``...), the simulator's own (``SIM_*``) left
    out. Returns the process, its HTTP base URL and its ingest URL once it serves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")} | {
        "REDIS_URL": redis_url, "DATA_DIR": str(data_dir), "HTTP_PORT": "0",
        "INGEST_PORT": "0", "DEVICE_HTTP_PORT": "0", "API_KEYS": API_KEY, "NOTIFY": "false",
        "TILE_URL": "",
    } | settings  # fmt: skip
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", command, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(20):
        while b"Device ingest:" not in buf or b"\n" not in buf.split(b"Device ingest:")[1]:
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, "the gateway exited before it was ready"
            buf += chunk
    text = buf.decode()
    http = text.split("REST API:")[1].split()[0].removesuffix("/v1")
    ingest = text.split("Device ingest:")[1].split()[0]
    return proc, http, ingest


def fix(seq: int, t0: float) -> dict[str, Any]:
    return {"seq": seq, "ts": t0 + seq * 0.1, "lat": 52.0 + seq * 1e-5, "lon": 4.0, "speed": 11.0}


async def test_kill_9_loses_no_acknowledged_position(redis_url: str, data_dir: Path) -> None:
    proc, http, ingest = await start_process(redis_url, data_dir)
    async with httpx.AsyncClient(base_url=http, headers={"X-API-Key": API_KEY}) as api:
        token = (await api.post("/v1/devices", json={"id": "van-k"})).json()["token"]
    t0 = time.time() - 600
    acked = 0
    sent = 0
    conn: Any = None
    try:
        async with open_websocket_url(f"{ingest}?token={token}") as ws:
            conn = ws

            async def read_acks() -> None:
                nonlocal acked
                while True:
                    msg = json.loads(await ws.get_message())
                    acked = max(acked, msg["seq"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_acks)
                for seq in range(1, 2001):
                    await ws.send_message(json.dumps(fix(seq, t0)))
                    sent = seq
                    if seq == 1200:
                        os.kill(proc.pid, signal.SIGKILL)
                    await trio.lowlevel.checkpoint()
    except* (ConnectionClosed, OSError, trio.BrokenResourceError):
        pass  # the gateway died under us, as intended
    if conn is not None:
        await conn._stream.aclose()  # trio-websocket keeps its socket after an abnormal close
    await proc.wait()
    assert 0 < acked <= sent
    assert acked < 2000  # the kill interrupted the stream

    proc2, http2, ingest2 = await start_process(redis_url, data_dir)
    try:
        async with httpx.AsyncClient(base_url=http2, headers={"X-API-Key": API_KEY}) as api:
            await check_recovered(api, ingest2, token, "van-k", t0, acked, 2000)
    finally:
        await stop_process(proc2)


async def check_recovered(
    api: httpx.AsyncClient, ingest: str, token: str, vehicle: str, t0: float, acked: int, last: int
) -> None:
    """After a crash: positions 1..``acked`` (acknowledged) are stored, in order, each once;
    the device then resends ``acked + 1``..``last``, and what the crashed process had stored
    without acknowledging comes back as duplicate, the rest is accepted."""
    params = {"since": t0, "limit": 50_000}
    track = (await api.get(f"/v1/vehicles/{vehicle}/track", params=params)).json()
    stored = [p["seq"] for p in track["positions"]]
    assert stored[:acked] == list(range(1, acked + 1))
    assert stored == sorted(set(stored))
    resend = [fix(s, t0) for s in range(acked + 1, last + 1)]
    async with open_websocket_url(f"{ingest}?token={token}") as ws:
        await ws.send_message(json.dumps(resend))
        dupes: list[int] = []
        with trio.fail_after(10):
            while True:
                msg = json.loads(await ws.get_message())
                dupes += [r["seq"] for r in msg["rejected"] if r["reason"] == "duplicate"]
                if msg["seq"] >= last:
                    break
    assert dupes == [s for s in stored if s > acked]
    track = (await api.get(f"/v1/vehicles/{vehicle}/track", params=params)).json()
    assert [p["seq"] for p in track["positions"]] == list(range(1, last + 1))


async def stop_process(proc: trio.Process) -> None:
    """SIGTERM, and the gateway must stop gracefully."""
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(20):
        await proc.wait()
    assert proc.returncode == 0
