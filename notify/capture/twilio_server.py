"""A local stand-in for Twilio's Messages API, for the tests and the demo.

It answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` as Twilio does (basic auth,
form body, 201 and a message resource with status ``queued``; 400 with error 21211 for a
number that is not E.164), records what it was sent, can be told to fail the next requests
(500, 429 with ``Retry-After``, 400 with a Twilio error code) and, when a message carries a
``StatusCallback``, posts the ``sent`` and ``delivered`` receipts to it, signed with the auth
token exactly as Twilio signs them.

``response_delay_s`` holds every answer (a slow provider) after the request was recorded;
``held`` counts the answers being held right now, so a test can stop a client while it has
requests in flight (the provider has them, the client has no answer yet).

Start it with ``base_url = await nursery.start(server.run)``; it binds port 0 unless told
otherwise and reports its real address.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Any, Final

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from twilio.request_validator import RequestValidator

from ..segments import count_segments

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_SID: Final = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN: Final = "capture-auth-token"
# Local connections are kept open: the real API is remote and this one is only for tests.
KEEP_ALIVE_TIMEOUT_S: Final = 3600

_E164: Final = re.compile(r"^\+[1-9]\d{7,14}$")
_ERROR_TEXT: Final = {
    21211: "The 'To' number is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    20003: "Authenticate",
    20429: "Too Many Requests",
}


@dataclass(frozen=True, slots=True)
class CapturedSms:
    """A message the server accepted."""

    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """Any request to the Messages endpoint, accepted or refused."""

    status: int
    form: dict[str, str]
    received_at: float


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: int | None
    message: str | None
    retry_after: float | None


@dataclass
class TwilioCaptureServer:
    """The Messages API on ``host:port`` (0: a free port), for ``account_sid``/``auth_token``."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    host: str = "127.0.0.1"
    port: int = 0
    status_callbacks: bool = True
    callback_delay_s: float = 0.0
    response_delay_s: float = 0.0  # hold each answer this long (a slow provider)
    held: int = 0  # answers being held by response_delay_s right now
    messages: list[CapturedSms] = field(default_factory=list)
    requests: list[CapturedRequest] = field(default_factory=list)
    callbacks_sent: list[tuple[str, str, int]] = field(default_factory=list)  # sid, status, code
    base_url: str = ""
    _failures: deque[_Failure] = field(default_factory=deque)
    _changed: trio.Event = field(default_factory=trio.Event)
    _nursery: trio.Nursery | None = None
    _http: httpx.AsyncClient | None = None

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and a Twilio error ``code``)."""
        for _ in range(count):
            self._failures.append(_Failure(status, code, message, retry_after))

    async def wait_for_messages(self, count: int) -> list[CapturedSms]:
        """Wait until at least ``count`` messages were accepted."""
        while len(self.messages) < count:
            await self._wait_changed()
        return self.messages

    async def wait_for_requests(self, count: int) -> list[CapturedRequest]:
        while len(self.requests) < count:
            await self._wait_changed()
        return self.requests

    async def wait_for_callbacks(self, count: int) -> list[tuple[str, str, int]]:
        """Wait until at least ``count`` receipts were posted and answered."""
        while len(self.callbacks_sent) < count:
            await self._wait_changed()
        return self.callbacks_sent

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def create_app(self) -> QuartTrio:
        app = QuartTrio(__name__)
        app.add_url_rule(
            "/2010-04-01/Accounts/<sid>/Messages.json",
            "create_message",
            self._create_message,
            methods=["POST"],
        )
        return app

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; reports the base URL (``http://host:port``)."""
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
        config.accesslog = None
        config.errorlog = log
        config.graceful_timeout = 1.0
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            self._http = http
            self._nursery = nursery
            binds = await nursery.start(partial(serve, self.create_app(), config))
            self.base_url = binds[0]
            self.port = int(self.base_url.rsplit(":", 1)[1])
            task_status.started(self.base_url)

    # ----- the API

    async def _create_message(self, sid: str) -> Response:
        form = {k: v for k, v in (await request.form).items()}
        now = time.time()
        response = self._answer(sid, form, now)
        self.requests.append(CapturedRequest(response.status_code, form, now))
        self._notify()
        if self.response_delay_s:
            self.held += 1
            try:
                await trio.sleep(self.response_delay_s)
            finally:
                self.held -= 1
        return response

    def _answer(self, sid: str, form: dict[str, str], now: float) -> Response:
        if not self._authorised(sid):
            return _error(401, 20003, None)
        if self._failures:
            failure = self._failures.popleft()
            return _error(failure.status, failure.code, failure.message, failure.retry_after)
        to = form.get("To", "")
        if not _E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        message_sid = "SM" + secrets.token_hex(16)
        callback = form.get("StatusCallback") or None
        self.messages.append(
            CapturedSms(message_sid, to, form.get("From", ""), form["Body"], callback, now)
        )
        if callback and self.status_callbacks and self._nursery is not None:
            self._nursery.start_soon(self._send_receipts, callback, message_sid, form)
        return _json(
            201,
            {
                "account_sid": sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "date_created": format_datetime(_utc(now), usegmt=True),
                "date_sent": None,
                "date_updated": format_datetime(_utc(now), usegmt=True),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": str(count_segments(form["Body"])),
                "price": None,
                "price_unit": "USD",
                "sid": message_sid,
                "status": "queued",
                "subresource_uris": {},
                "to": to,
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            },
        )

    def _authorised(self, sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (
            sid == self.account_sid
            and secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
        )

    # ----- receipts and inbound messages, signed as Twilio signs them

    async def _send_receipts(self, url: str, message_sid: str, form: dict[str, str]) -> None:
        for status in ("sent", "delivered"):
            if self.callback_delay_s:
                await trio.sleep(self.callback_delay_s)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": form.get("From", ""),
                "MessageSid": message_sid,
                "MessageStatus": status,
                "SmsSid": message_sid,
                "SmsStatus": status,
                "To": form.get("To", ""),
            }
            code = await self.post_signed(url, params)
            self.callbacks_sent.append((message_sid, status, code))
            self._notify()

    async def post_signed(self, url: str, params: dict[str, str]) -> int:
        """POST ``params`` form-encoded to ``url`` with an ``X-Twilio-Signature``; the status."""
        if self._http is None:
            raise RuntimeError("the capture server is not running")
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        try:
            response = await self._http.post(
                url, data=params, headers={"X-Twilio-Signature": signature}
            )
        except httpx.HTTPError as exc:
            log.warning("could not post to %s: %r", url, exc)
            return 0
        return response.status_code

    async def send_inbound(self, url: str, from_: str, body: str, to: str = "+15005550006") -> str:
        """Deliver an inbound SMS to a gateway webhook at ``url``; returns the reply body."""
        params = {
            "AccountSid": self.account_sid,
            "Body": body,
            "From": from_,
            "MessageSid": "SM" + secrets.token_hex(16),
            "NumMedia": "0",
            "To": to,
        }
        if self._http is None:
            raise RuntimeError("the capture server is not running")
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        response = await self._http.post(
            url, data=params, headers={"X-Twilio-Signature": signature}
        )
        response.raise_for_status()
        return response.text


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _error(
    status: int, code: int | None, message: str | None, retry_after: float | None = None
) -> Response:
    text = message or (_ERROR_TEXT.get(code, "") if code else "") or f"HTTP {status}"
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return _json(
        status,
        {
            "code": code,
            "message": text,
            "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
            "status": status,
        },
        headers,
    )
