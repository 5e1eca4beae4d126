"""HTTP requests while Redis is away: a short retry, then 503 with ``Retry-After``.

A request whose handler meets a lost Redis (``REDIS_DOWN``: unreachable, restarting, still
loading its data) is run again, 0.1 s after the failure and then twice as long each time,
until ``retry_s`` (``API_REDIS_RETRY_S``) has passed, when running it again is safe: its
method is GET, HEAD or OPTIONS. Any other request may have written before it failed, and
providers (Twilio) and clients send it again when told to, so it is not retried here.

A request that still fails answers 503, ``Retry-After: 5`` and
``{"error": "storage_unavailable", "message": ...}``, counted in
``gateway_api_unavailable_total`` (each retry in ``gateway_api_redis_retries_total``). The
outage is logged once: when the first request meets it, and when Redis answers a ping again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import trio
from quart import Response
from quart.ctx import RequestContext
from quart.globals import request_ctx
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from gateway.core.metrics import Metrics
from notify.redis_client import REDIS_DOWN, RedisClient

log = logging.getLogger(__name__)

RETRY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
FIRST_RETRY_S: Final = 0.1  # doubled after each failure
RETRY_AFTER_S: Final = 5  # what a 503 tells the client to wait
PROBE_INTERVAL_S: Final = 0.5  # while down, Redis is pinged this often to see it return
PROBE_TIMEOUT_S: Final = 2.0
METRIC: Final = "gateway_api_unavailable_total"
RETRIES: Final = "gateway_api_redis_retries_total"

_body: Final = msgspec.json.encode(
    {
        "error": "storage_unavailable",
        "message": "Redis, where the gateway keeps its data, does not answer; try again later",
        "retry_after_s": RETRY_AFTER_S,
    }
)


class RedisGuard:
    """Runs request handlers with the retry and the 503 described above."""

    def __init__(
        self,
        redis: RedisClient[Any],
        metrics: Metrics,
        retry_s: float,
        start_probe: Callable[[Callable[[], Awaitable[None]]], None],
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.retry_s = retry_s
        self.start_probe = start_probe
        self.down = False

    async def run(self, handler: Callable[[], Awaitable[Any]], *, retry: bool) -> Any:
        """``await handler()``; again while Redis is away and ``retry`` allows, within
        ``retry_s``; the 503 response once it gives up."""
        deadline = trio.current_time() + (self.retry_s if retry else 0.0)
        delay = FIRST_RETRY_S
        while True:
            try:
                return await handler()
            except REDIS_DOWN as exc:
                left = deadline - trio.current_time()
                if left <= 0:
                    return self._unavailable(exc)
                # The last try is made at the deadline.
                await trio.sleep(min(delay, left))
                delay *= 2
                self.metrics.inc(RETRIES)

    def _unavailable(self, exc: BaseException) -> Response:
        self.metrics.inc(METRIC)
        if not self.down:
            self.down = True
            log.warning("Redis does not answer: API requests get 503 until it does: %r", exc)
            self.start_probe(self._probe)
        return Response(
            _body,
            status=503,
            content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def _probe(self) -> None:
        while True:
            await trio.sleep(PROBE_INTERVAL_S)
            try:
                with trio.fail_after(PROBE_TIMEOUT_S):
                    await self.redis.ping()
            except (*REDIS_DOWN, trio.TooSlowError):
                continue
            self.down = False
            log.info("Redis answers again: API requests are served")
            return


class GuardedQuartTrio(QuartTrio):
    """A QuartTrio app whose HTTP handlers run through ``guard`` (set it before serving)."""

    guard: RedisGuard

    async def dispatch_request(
        self, request_context: RequestContext | None = None
    ) -> ResponseReturnValue:
        method = (request_context or request_ctx).request.method
        return await self.guard.run(
            lambda: super(GuardedQuartTrio, self).dispatch_request(request_context),
            retry=method in RETRY_METHODS,
        )
