"""Events POSTed as JSON to shippers' webhook subscriptions, signed with HMAC-SHA256.

Every request carries ``Fleetgate-Timestamp`` (epoch seconds) and ``Fleetgate-Signature``
(``v1=`` and the hex HMAC-SHA256, keyed with the subscription's secret, of
``"<timestamp>.<body>"``). A receiver checks both with ``verify_signature``: the signature
proves the sender and the body, the timestamp bounds how long a captured request can be
replayed. ``Idempotency-Key`` is the message id, the same on every retry.

Redirects are not followed (they would carry a signed payload somewhere unvetted). 2xx is
success; 408, 425, 429 and 5xx are transient (honouring ``Retry-After``); 410 Gone and other
4xx are permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from ..errors import PermanentError, TransientError
from ..message import Message, SendResult
from ..redis_client import RedisClient
from ..subscriptions import get_subscription
from ._http import HttpClientOwner, parse_retry_after

SIGNATURE_HEADER: Final = "Fleetgate-Signature"
TIMESTAMP_HEADER: Final = "Fleetgate-Timestamp"
EVENT_HEADER: Final = "Fleetgate-Event"
SIGNATURE_VERSION: Final = "v1"
DEFAULT_TOLERANCE_S: Final = 300.0  # receivers refuse requests signed longer ago than this
DEFAULT_TIMEOUT_S: Final = 10.0
_TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value signing ``body`` at ``timestamp``: ``v1=<hex hmac-sha256>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` (the ``Fleetgate-Signature`` header) signs ``body`` at
    ``timestamp`` with ``secret``, and ``timestamp`` is within ``tolerance_s`` of ``now``.

    The header may hold several comma-separated signatures (during a secret rotation); one
    valid signature is enough. Comparison is constant-time.
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body)
    return any(
        hmac.compare_digest(expected.encode(), candidate.strip().encode())
        for candidate in signature.split(",")
    )


class WebhookChannel(HttpClientOwner):
    """Sends ``Message.text`` (an event as JSON) to the subscription named by ``Message.to``.

    The subscription's URL and secret are read at send time, so an edit or a secret
    rotation applies to queued messages; a deleted or disabled subscription fails them
    permanently.
    """

    name = "webhook"

    def __init__(
        self,
        redis: RedisClient[Any],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        user_agent: str = "fleetgate-webhooks/1",
    ) -> None:
        self.redis = redis
        self.timeout_s = timeout_s
        self.clock = clock
        self.user_agent = user_agent
        self._use_http(http, follow_redirects=False)

    async def send(self, message: Message) -> SendResult:
        sub = await get_subscription(self.redis, message.to)
        if sub is None:
            raise PermanentError("webhook subscription was deleted")
        if not sub.active:
            raise PermanentError("webhook subscription is disabled")
        body = message.text.encode()
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(sub.secret, timestamp, body),
            EVENT_HEADER: message.trigger,
            "Idempotency-Key": message.id,
        }
        try:
            response = await self._http.post(
                sub.url, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.TimeoutException:
            raise TransientError("webhook timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"webhook unreachable: {exc!r}") from None
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(status=str(status))
        reason = f"webhook answered {status}"
        if status >= 500 or status in _TRANSIENT_STATUSES:
            raise TransientError(reason, parse_retry_after(response.headers.get("retry-after")))
        raise PermanentError(reason, code=status)
