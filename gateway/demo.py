"""The demo's simulated fleet: ``python -m simulator`` as a child process of the gateway,
watched so the ops page can say when it has stopped (and why, in its last stderr line)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Final, Literal

import msgspec
import trio

log = logging.getLogger(__name__)

RUNNING: Final = "running"
STOPPED: Final = "stopped"
MAX_DETAIL_CHARS: Final = 500  # of the last stderr line, shown on the ops page
READ_BYTES: Final = 65_536


class FleetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the ops page shows of the simulated fleet."""

    state: Literal["running", "stopped"]
    vehicles: int
    exit_code: int | None = None  # stopped: the simulator's; negative: killed by that signal
    detail: str = ""  # stopped: its last line on stderr (the error, usually)


class DemoFleet:
    """The simulated fleet's current status; ``wait_changed`` wakes on each change."""

    def __init__(self, vehicles: int) -> None:
        self.status = FleetStatus(state=RUNNING, vehicles=vehicles)
        self._changed = trio.Event()

    def set(self, status: FleetStatus) -> None:
        self.status = status
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> FleetStatus:
        await self._changed.wait()
        return self.status


def simulator_command(
    api_url: str,
    ingest_url: str,
    api_key: str,
    vehicles: int,
    sim_args: Sequence[str],
    device_http_url: str = "",
) -> tuple[list[str], dict[str, str]]:
    """The simulator's command line and the environment variables it needs beside the
    gateway's own. The API key goes in the environment: as an argument it would be visible
    to every user of the machine, and one starting with ``-`` would be read as an option.
    With ``device_http_url`` the fleet mixes protocols, as real fleets do: some vans run the
    Traccar Client (OsmAnd over HTTP), the rest the WebSocket (the simulator's options in
    ``sim_args`` come after, so ``--protocol ws`` there wins)."""
    mix = ["--device-http", device_http_url, "--protocol", "mix"] if device_http_url else []
    cmd = [
        sys.executable, "-m", "simulator",
        "--api", api_url,
        "--ingest", ingest_url,
        "--vehicles", str(vehicles),
        *mix,
        *sim_args,
    ]  # fmt: skip
    return cmd, {"SIM_API_KEY": api_key}


async def run_simulator(cmd: Sequence[str], env: Mapping[str, str], fleet: DemoFleet) -> None:
    """Run ``cmd`` until it exits, passing its stderr through to ours line by line, then mark
    ``fleet`` stopped with its exit code and last stderr line. The gateway keeps running."""
    last = ""
    proc: trio.Process | None = None
    async with trio.open_nursery() as nursery:
        try:
            proc = await nursery.start(
                partial(trio.run_process, list(cmd), env=env, stderr=subprocess.PIPE, check=False)
            )
        except OSError as exc:
            last = f"cannot start the simulator: {exc}"
        else:
            assert proc is not None and proc.stderr is not None
            pending = b""
            while chunk := await proc.stderr.receive_some(READ_BYTES):
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > READ_BYTES:  # no end of line in sight: pass it on as it is
                    lines.append(pending)
                    pending = b""
                last = _pass_on(lines) or last
            last = _pass_on([pending] if pending else []) or last
    code = proc.returncode if proc is not None else None
    detail = last[:MAX_DETAIL_CHARS]
    # Exit code 0: a run with --duration ended, or the simulator was stopped with a signal.
    log.log(logging.INFO if code == 0 else logging.WARNING,
            "simulated fleet stopped (exit code %s): %s", code, detail)  # fmt: skip
    fleet.set(
        FleetStatus(state=STOPPED, vehicles=fleet.status.vehicles, exit_code=code, detail=detail)
    )


def _pass_on(lines: list[bytes]) -> str:
    """Write ``lines`` to stderr; the last one that is not blank, stripped ("" if none)."""
    last = ""
    for raw in lines:
        line = raw.decode(errors="replace")
        print(line.rstrip("\r"), file=sys.stderr, flush=True)
        last = line.strip() or last
    return last
