"""The file a running gateway keeps in its data folder, saying where it listens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from gateway.core.runfile import RUN_FILE, RunInfo, read_run_file, remove_run_file, write_run_file
from tests.gateway.conftest import gateway_settings, start_gateway


def info(pid: int) -> RunInfo:
    return RunInfo(pid=pid, http_url="http://127.0.0.1:1234", ingest_url="ws://127.0.0.1:1/i")


def test_written_read_and_removed_by_its_process(data_dir: Path) -> None:
    write_run_file(data_dir, info(os.getpid()))
    assert read_run_file(data_dir) == info(os.getpid())
    remove_run_file(data_dir, os.getpid() + 1)  # another process's turn: left alone
    assert (data_dir / RUN_FILE).exists()
    remove_run_file(data_dir, os.getpid())
    assert not (data_dir / RUN_FILE).exists()
    assert read_run_file(data_dir) is None
    remove_run_file(data_dir, os.getpid())  # nothing to remove: no error


def test_a_file_left_by_a_killed_gateway_is_ignored(data_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_run_file(data_dir, info(dead.pid))
    assert read_run_file(data_dir) is None
    (data_dir / RUN_FILE).write_text("{not json")
    assert read_run_file(data_dir) is None


async def test_the_gateway_keeps_it_while_it_serves(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir))
    assert read_run_file(data_dir) == RunInfo(
        pid=os.getpid(),
        http_url=gw.ep.http_url,
        ingest_url=gw.ep.ingest_url,
        device_http_url=gw.ep.device_http_url,
    )
    assert json.loads((data_dir / RUN_FILE).read_text())["http_url"] == gw.ep.http_url
    await gw.http.aclose()
    gw.scope.cancel()
    with trio.fail_after(10):
        while (data_dir / RUN_FILE).exists():  # noqa: ASYNC110
            await trio.sleep(0.02)
