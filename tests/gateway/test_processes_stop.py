"""``serve --processes 2`` stopped with SIGTERM: the first process, which runs the private
redis-server, stops it only after the second process has written out its queue and exited."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from gateway.core.redisproc import free_port
from tests.gateway.test_cli import clean_env


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def command_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_the_private_redis_stops_after_every_process(tmp_path: Path) -> None:
    http = free_port()
    env = clean_env(
        DATA_DIR=str(tmp_path), API_KEYS="k", HTTP_PORT=str(http), INGEST_PORT="0",
        DEVICE_HTTP_PORT="0", NOTIFY="false",
    )  # fmt: skip
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway", "serve", "--processes", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(60):
                for port in (http, http + 10):  # the second process: the ports + 10
                    while True:
                        try:
                            if (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                                break
                        except httpx.HTTPError:
                            pass
                        await trio.sleep(0.1)
        kids = children(proc.pid)
        redis = [k for k in kids if b"redis-server" in command_of(k)]
        second = [k for k in kids if b"gateway" in command_of(k)]
        assert len(redis) == 1 and len(second) == 1, kids
        proc.send_signal(signal.SIGTERM)
        ended: dict[str, float] = {}
        with trio.fail_after(60):
            while len(ended) < 2:
                for name, pid in (("redis", redis[0]), ("second", second[0])):
                    if name not in ended and gone(pid):
                        ended[name] = time.monotonic()
                await trio.sleep(0.01)
            assert await proc.wait() == 0
        assert ended["second"] <= ended["redis"], "redis stopped while a process was running"
        text = log.read_text()
        assert "redis write failed" not in text and "Traceback" not in text, text[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
