"""Bugs met while serving one device or one request: logged with their traceback once per
place they were raised, so a client repeating what trips one cannot flood the log."""

from __future__ import annotations

import logging
from typing import Final

MAX_LOGGED_PLACES: Final = 1000

_logged: set[tuple[str, str, int]] = set()


def raised_at(exc: BaseException) -> tuple[str, str, int]:
    """The exception's type and the file and line it was raised at."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return (type(exc).__name__, "", 0)
    return (type(exc).__name__, tb.tb_frame.f_code.co_filename, tb.tb_lineno)


def log_once(log: logging.Logger, message: str, exc: BaseException) -> None:
    """Log ``exc`` with its traceback the first time it is raised at its place (of the
    first ``MAX_LOGGED_PLACES``), at debug level after that."""
    where = raised_at(exc)
    if where in _logged:
        log.debug("%s (again at %s:%d): %r", message, where[1], where[2], exc)
        return
    if len(_logged) < MAX_LOGGED_PLACES:
        _logged.add(where)
    log.error(message, exc_info=exc)
