"""Agents' API keys, and the random secrets kept in the data folder (the first API key, the
customer links' signing secret)."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Final

SECRET_BYTES: Final = 24  # generated API keys and link secrets


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one API key is needed")
        self._keys = [k.encode() for k in keys]

    def check(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        c = candidate.encode()
        # Compare against every key so the time taken does not tell which one nearly matched.
        ok = False
        for k in self._keys:
            ok |= hmac.compare_digest(c, k)
        return ok


def new_secret() -> str:
    """A random URL-safe secret of ``SECRET_BYTES`` bytes that does not start with ``-``.

    One in 64 of ``token_urlsafe``'s would: handed on a command line (``--api-key KEY``),
    such a key is read as an option."""
    while True:
        value = secrets.token_urlsafe(SECRET_BYTES)
        if not value.startswith("-"):
            return value


def persistent_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in ``data_dir/name`` so it survives restarts; a kept one is
    returned as it is, whatever it starts with."""
    path = data_dir / name
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = new_secret()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value
