"""Device registration through the gateway's REST API.

``POST /v1/devices`` creates a device and returns its token; when the id already exists (409)
``POST /v1/devices/{id}/token`` rotates the token instead, so a fleet can be started again with
the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

import httpx
import msgspec
import trio

log = logging.getLogger(__name__)

REGISTER_CONCURRENCY: Final = 16  # requests in flight while registering a fleet
REQUEST_TIMEOUT_S: Final = 10.0
RETRY_INTERVAL_S: Final = 0.5


class RegistrationError(Exception):
    """The gateway refused or failed to register a device; ``reason`` says why."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"{device_id}: {reason}")
        self.device_id = device_id
        self.reason = reason


class _TokenReply(msgspec.Struct):
    id: str
    token: str


_token_reply: Final = msgspec.json.Decoder(_TokenReply)


class Registry:
    """Registers devices and rotates their tokens; use as an async context manager."""

    def __init__(self, api: str, api_key: str, *, retry_for_s: float = 30.0) -> None:
        self.api = api.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._retry_for_s = retry_for_s
        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S)

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, device_id: str, url: str, body: dict[str, str] | None) -> httpx.Response:
        """POST, retrying connection failures for a while: the gateway may still be starting."""
        last: Exception | None = None
        with trio.move_on_after(self._retry_for_s) as scope:
            while True:
                try:
                    return await self._client.post(url, json=body, headers=self._headers)
                except httpx.TransportError as exc:
                    last = exc
                    log.debug("%s: %r, retrying", url, exc)
                await trio.sleep(RETRY_INTERVAL_S)
        assert scope.cancelled_caught
        why = repr(last) if last else "no answer"
        raise RegistrationError(device_id, f"gateway unreachable at {self.api}: {why}")

    async def register(self, device_id: str, name: str | None = None) -> str:
        """Create the device (or rotate its token if it exists) and return the token."""
        body = {"id": device_id, "vehicle": device_id, "name": name or device_id}
        resp = await self._post(device_id, f"{self.api}/v1/devices", body)
        if resp.status_code == 409:
            return await self.rotate(device_id)
        return self._token(device_id, resp, 201)

    async def rotate(self, device_id: str) -> str:
        """Issue a new token for an existing device and return it."""
        url = f"{self.api}/v1/devices/{quote(device_id, safe='')}/token"
        return self._token(device_id, await self._post(device_id, url, None), 200)

    def _token(self, device_id: str, resp: httpx.Response, expected: int) -> str:
        if resp.status_code != expected:
            raise RegistrationError(
                device_id, f"HTTP {resp.status_code} from {resp.url}: {resp.text[:200]}"
            )
        try:
            return _token_reply.decode(resp.content).token
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RegistrationError(device_id, f"unexpected reply: {exc}") from None

    async def register_all(
        self, devices: Sequence[tuple[str, str]], *, concurrency: int = REGISTER_CONCURRENCY
    ) -> dict[str, str]:
        """Register ``(id, name)`` pairs concurrently; returns id -> token.

        Raises the first :class:`RegistrationError`; the others are cancelled.
        """
        tokens: dict[str, str] = {}
        limiter = trio.CapacityLimiter(concurrency)

        async def one(device_id: str, name: str) -> None:
            async with limiter:
                tokens[device_id] = await self.register(device_id, name)

        try:
            async with trio.open_nursery() as nursery:
                for device_id, name in devices:
                    nursery.start_soon(one, device_id, name)
        except BaseExceptionGroup as group:
            first = _first(group, RegistrationError)
            if first is not None:
                raise first from None
            raise
        return tokens


def _first(group: BaseExceptionGroup, kind: type[RegistrationError]) -> RegistrationError | None:
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, kind)
            if found is not None:
                return found
    return None
