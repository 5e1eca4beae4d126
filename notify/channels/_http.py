"""Small HTTP helpers shared by the channels that speak HTTP."""

from __future__ import annotations

import email.utils
import time
from types import TracebackType
from typing import Any, Final, Self

import httpx

# A provider asking us to wait longer than this is treated as asking for this long: a
# message held for a day because of one header is worse than one more refusal.
MAX_RETRY_AFTER_S: Final = 3600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class HttpClientOwner:
    """A channel's httpx client: the one passed in, or its own, closed by ``aclose`` (or on
    leaving ``async with``)."""

    _http: httpx.AsyncClient
    _own_http: bool

    def _use_http(self, http: httpx.AsyncClient | None, **client_options: Any) -> None:
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(**client_options)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
