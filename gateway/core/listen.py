"""Starting a server on an address, with a failure to bind said in one line naming the
address, the setting that chose it and the reason."""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ListenError(Exception):
    """A server could not listen on its address; the message names the address, the setting
    that chose it and the reason (``cannot listen on 127.0.0.1:8080 (HTTP_PORT): address
    already in use``)."""

    def __init__(self, host: str, port: int, setting: str, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port} ({setting}): {reason}")
        self.host = host
        self.port = port
        self.setting = setting


def _only_os_error(exc: BaseException) -> OSError | None:
    """``exc`` if it is an OSError, or the first of a group holding nothing else."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found, rest = exc.split(OSError)
        if found is not None and rest is None:
            return _only_os_error(found.exceptions[0])
    return None


async def listening(start: Awaitable[T], host: str, port: int, setting: str) -> T:
    """``await start``, a server's start; a failure to bind becomes a ListenError."""
    try:
        return await start
    except (OSError, BaseExceptionGroup) as exc:
        err = _only_os_error(exc)
        if err is None:
            raise
        raise _listen_error(err, host, port, setting) from None


def _listen_error(err: OSError, host: str, port: int, setting: str) -> ListenError:
    unknown_host = isinstance(err, socket.gaierror) or err.errno == errno.EADDRNOTAVAIL
    reason = (err.strerror or str(err)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return ListenError(host, port, "HOST" if unknown_host else setting, reason)


def bind_listening(host: str, port: int, setting: str, backlog: int = 2048) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port, which it keeps from then on:
    no other server can be handed it before it is used); ListenError if it cannot."""
    sock: socket.socket | None = None
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as err:
        if sock is not None:
            sock.close()
        raise _listen_error(err, host, port, setting) from None
    return sock
