"""Who may talk to the gateway: devices by token, agents by API key."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

import trio

from .store import DeviceRecord, Store

TOKEN_CACHE_S: Final = 10.0
SECRET_BYTES: Final = 24  # generated API keys and link secrets


def bearer(headers: list[tuple[bytes, bytes]] | None, target: str) -> str | None:
    """The token from ``Authorization: Bearer ...`` or, failing that, ``?token=``."""
    for name, value in headers or ():
        if name.lower() == b"authorization":
            scheme, _, tok = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and tok.strip():
                return tok.strip()
    qs = parse_qs(urlsplit(target).query)
    toks = qs.get("token")
    return toks[0] if toks else None


class DeviceAuth:
    """Token -> device lookups with a short cache; revocation clears it at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, DeviceRecord | None]] = {}

    async def lookup(self, token: str) -> DeviceRecord | None:
        now = trio.current_time()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        rec = await self.store.device_for_token(token)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[token] = (now + TOKEN_CACHE_S, rec)
        return rec

    def forget_device(self, device_id: str) -> None:
        for tok, (_, rec) in list(self._cache.items()):
            if rec is not None and rec.id == device_id:
                del self._cache[tok]


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
