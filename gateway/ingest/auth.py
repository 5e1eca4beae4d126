"""Which device a token belongs to: the bearer token of a connection or request, looked up
with a short cache that a revocation clears."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, urlsplit

import trio

from gateway.fleet.devices import DeviceRecord, Devices

TOKEN_CACHE_S: Final = 10.0


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

    def __init__(self, devices: Devices) -> None:
        self.devices = devices
        self._cache: dict[str, tuple[float, DeviceRecord | None]] = {}

    async def lookup(self, token: str) -> DeviceRecord | None:
        now = trio.current_time()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        rec = await self.devices.device_for_token(token)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[token] = (now + TOKEN_CACHE_S, rec)
        return rec

    def forget_device(self, device_id: str) -> None:
        for tok, (_, rec) in list(self._cache.items()):
            if rec is not None and rec.id == device_id:
                del self._cache[tok]
