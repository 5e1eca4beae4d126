"""SMS through Twilio's Messages API.

The twilio library builds and parses the requests; its HTTP goes through httpx (which runs
on trio) via ``HttpxTwilioClient``. ``api_base_url`` points the client elsewhere than
``https://api.twilio.com``, at the local capture server in tests and in the demo.

Errors map to the domain errors as Twilio documents them: timeouts, connection failures
and 5xx are transient; 429 is transient and carries ``Retry-After``; any other 4xx is
permanent, with error 21610 (the recipient replied STOP) raised as ``RecipientOptedOut``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx
from twilio.base.exceptions import TwilioException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ..errors import PermanentError, RecipientOptedOut, TransientError
from ..message import Message, SendResult
from ..segments import count_segments
from ._http import HttpClientOwner, parse_retry_after

log = logging.getLogger(__name__)

TWILIO_API_URL: Final = "https://api.twilio.com"
DEFAULT_TIMEOUT_S: Final = 10.0
ERROR_UNSUBSCRIBED: Final = 21610  # "Attempt to send to unsubscribed recipient"


class ProviderThrottled(Exception):
    """Twilio answered 429; raised past the twilio library so ``Retry-After`` is not lost."""

    def __init__(self, retry_after_s: float | None, body: str) -> None:
        super().__init__(f"throttled (429), retry after {retry_after_s}")
        self.retry_after_s = retry_after_s
        self.body = body


class HttpxTwilioClient(AsyncHttpClient):
    """The twilio library's async HTTP client interface, implemented with httpx.

    Requests to ``https://api.twilio.com`` go to ``api_base_url`` instead when it is set.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base_url: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout)
        self.http = http
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self.api_base_url and uri.startswith(TWILIO_API_URL):
            uri = self.api_base_url + uri[len(TWILIO_API_URL) :]
        response = await self.http.request(
            method,
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else self.timeout,
            follow_redirects=allow_redirects,
        )
        if response.status_code == 429:
            raise ProviderThrottled(
                parse_retry_after(response.headers.get("retry-after")), response.text
            )
        return Response(response.status_code, response.text, response.headers)


class TwilioSmsChannel(HttpClientOwner):
    """Sends ``Message.text`` to ``Message.to`` from ``from_number`` (or a messaging service).

    Use as an async context manager, or call ``aclose()``: it owns an httpx client unless one
    is passed in. ``status_callback_url``, when set, is given to Twilio with every message so
    delivery receipts come back to the gateway.
    """

    name = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        *,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        status_callback_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not from_number and not messaging_service_sid:
            raise ValueError("an SMS sender needs from_number or messaging_service_sid")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = status_callback_url
        self._use_http(http)
        self.client = Client(
            account_sid,
            auth_token,
            http_client=HttpxTwilioClient(self._http, api_base_url=api_base_url, timeout=timeout_s),
        )

    async def send(self, message: Message) -> SendResult:
        kwargs: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.from_number:
            kwargs["from_"] = self.from_number
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        if self.status_callback_url:
            kwargs["status_callback"] = self.status_callback_url
        try:
            created = await self.client.messages.create_async(**kwargs)
        except ProviderThrottled as exc:
            raise TransientError("twilio throttled the request (429)", exc.retry_after_s) from None
        except httpx.TimeoutException:
            raise TransientError("timed out talking to twilio") from None
        except httpx.TransportError as exc:
            raise TransientError(f"could not reach twilio: {exc!r}") from None
        except TwilioException as exc:
            raise _map_twilio_error(exc) from None
        return SendResult(
            provider_id=created.sid,
            status=str(created.status or "queued"),
            detail=f"{count_segments(message.text)} segment(s)",
        )


def _map_twilio_error(exc: TwilioException) -> TransientError | PermanentError:
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "")
    reason = f"twilio {status}" + (f" error {code}" if code else "") + (f": {text}" if text else "")
    if code == ERROR_UNSUBSCRIBED:
        return RecipientOptedOut(reason, code=code)
    if status is None or status >= 500:
        return TransientError(reason)
    return PermanentError(reason, code=code if code is not None else status)
