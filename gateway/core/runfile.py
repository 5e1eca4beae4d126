"""Where a running gateway can be reached: ``DATA_DIR/gateway.json``, kept while it runs.

The command line (``python -m gateway device ...``) reads it to find the gateway on whatever
ports it was given or bound (``HTTP_PORT=0``). Several processes sharing one data folder
(``--processes N``) take turns writing it; any of them answers the REST API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

RUN_FILE: Final = "gateway.json"


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    pid: int  # the gateway process
    http_url: str  # REST API and pages, as bound
    ingest_url: str  # device WebSocket
    device_http_url: str = ""  # device HTTP (OsmAnd, OwnTracks)


def write_run_file(data_dir: Path, info: RunInfo) -> None:
    """Record ``info`` in ``data_dir``; replaces the file at once, so a reader never sees
    half of it."""
    tmp = data_dir / f".{RUN_FILE}.{info.pid}"
    tmp.write_bytes(msgspec.json.encode(info))
    tmp.replace(data_dir / RUN_FILE)


def read_run_file(data_dir: Path) -> RunInfo | None:
    """The gateway running on ``data_dir``; None if no file, an unreadable one, or one left
    by a process that is gone (killed before it could remove it)."""
    try:
        info = msgspec.json.decode((data_dir / RUN_FILE).read_bytes(), type=RunInfo)
    except (OSError, msgspec.DecodeError):
        return None
    return info if _alive(info.pid) else None


def remove_run_file(data_dir: Path, pid: int) -> None:
    """Remove the file if process ``pid`` wrote it (another process of the folder may have
    written it since)."""
    path = data_dir / RUN_FILE
    try:
        if msgspec.json.decode(path.read_bytes(), type=RunInfo).pid == pid:
            path.unlink()
    except (OSError, msgspec.DecodeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
