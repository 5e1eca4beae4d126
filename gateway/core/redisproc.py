"""Start and stop a private ``redis-server`` process.

Used when no ``REDIS_URL`` is configured (so one command gives a working single-machine
system with append-only persistence) and by the tests, which each get a real server on a
free port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 10.0


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


def free_port() -> int:
    """A TCP port that was free a moment ago (bind port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_redis(
    data_dir: Path,
    port: int | None = None,
    *,
    appendonly: bool = True,
    extra_args: list[str] | None = None,
) -> RedisProcess:
    """Start ``redis-server`` bound to 127.0.0.1 and wait until it answers PING.

    With ``port=None`` a free port is picked; a lost race for it is retried.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisServerError(
            "redis-server is not on PATH: install Debian's redis-server package "
            "(./dev.sh does) or set REDIS_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    attempts = 5 if port is None else 1
    last_log = ""
    for _ in range(attempts):
        p = port if port is not None else free_port()
        args = [
            exe,
            "--bind", "127.0.0.1",
            "--port", str(p),
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", "redis.log",
            "--protected-mode", "yes",
            "--pidfile", str(data_dir / "redis.pid"),
        ] + (extra_args or [])  # fmt: skip
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            # Its own session: Ctrl-C in a terminal must reach the gateway only, which then
            # writes what is queued before it stops this server.
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _ping(p):
                return RedisProcess(p, data_dir, proc)
            time.sleep(0.02)
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            last_log = (data_dir / "redis.log").read_text()[-2000:]
    raise RedisServerError(f"redis-server did not start: {last_log}")


def _die_with_parent() -> None:
    # A private redis-server must not outlive a gateway killed with SIGKILL: the kernel sends
    # it SIGTERM (it then writes its append-only file and exits) when the parent dies.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_stale(data_dir: Path, timeout: float = 10.0) -> None:
    """Stop a redis-server left running in ``data_dir`` (its pid file names it)."""
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"redis-server" not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
