"""Wiring of the ``notify`` package into the gateway: channels from the settings, local
capture servers for whatever is not configured, the Notifier service, and the ops feed of
alerts (``alert_feed``).

With no Twilio account or SMTP host configured and ``NOTIFY_CAPTURE`` on (the demo's and the
tests' setting), SMS and email go to a Twilio-compatible capture server and an SMTP capture
server that this process starts on free local ports, so the whole flow runs with no account;
what was sent shows on the ops page as ``notification.*`` events.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import time
from typing import TYPE_CHECKING, Final

import trio

from gateway.config import ConfigError, Settings
from gateway.core.metrics import Metrics
from gateway.fleet.hub import Hub
from gateway.live.alert_feed import AlertFeed
from notify import (
    Notifier,
    NotifierConfig,
    OutboxConfig,
    RulesConfig,
    SmtpEmailChannel,
    TwilioSmsChannel,
    WebhookChannel,
)
from notify.capture.smtp_server import SmtpCaptureServer
from notify.capture.twilio_server import TwilioCaptureServer
from notify.redis_client import RedisClient

if TYPE_CHECKING:
    from notify import Channel

log = logging.getLogger(__name__)

# With the default NOTIFY_CLAIM_IDLE_S (60 s), the notify package's own defaults.
MAX_SEND_TIMEOUT_S: Final = 15.0
MAX_CLAIM_INTERVAL_S: Final = 15.0
MAX_EVENTS_CLAIM_INTERVAL_S: Final = 30.0
# Redis outages a notification service waited out (and then carried on), by service.
REDIS_OUTAGES_METRIC: Final = "notify_redis_outages_total"


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """``"21:00-08:00"`` -> (21:00, 08:00); empty: no quiet hours (start == end)."""
    if not text.strip():
        return time(0, 0), time(0, 0)
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ConfigError(f"quiet_hours must look like 21:00-08:00, got {text!r}") from None
    return start, end


def _list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def notifier_config(s: Settings) -> NotifierConfig:
    start, end = parse_quiet_hours(s.quiet_hours)
    rules = RulesConfig(
        quiet_start=start,
        quiet_end=end,
        oncall_emails=_list(s.oncall_emails),
        oncall_phones=_list(s.oncall_phones),
    )
    # A send must end well before its message may be claimed by another process, or a slow
    # but healthy send would be repeated; claims are looked for a few times per idle time.
    idle = s.notify_claim_idle_s
    outbox = OutboxConfig(
        claim_idle_s=idle,
        claim_interval_s=min(MAX_CLAIM_INTERVAL_S, idle / 4),
        send_timeout_s=min(MAX_SEND_TIMEOUT_S, idle / 2),
    )
    return NotifierConfig(
        rules=rules,
        outbox=outbox,
        events_max_len=s.events_max_len,
        events_claim_idle_s=idle,
        events_claim_interval_s=min(MAX_EVENTS_CLAIM_INTERVAL_S, idle / 2),
    )


class Notifications:
    """The notification side as one gateway service: ``run`` reports the Notifier."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient[bytes],
        hub: Hub,
        metrics: Metrics,
        *,
        public_url: str,
        link_for: Callable[[str], str],
    ) -> None:
        """``link_for``: a new tracking link's URL for a delivery id."""
        self.settings = settings
        self.redis = redis
        self.hub = hub
        self.metrics = metrics
        self.public_url = public_url
        self.link_for = link_for
        self.sms_capture: TwilioCaptureServer | None = None
        self.email_capture: SmtpCaptureServer | None = None
        self.twilio_auth_token: str | None = None
        # What each customer channel goes to: twilio/smtp, capture, or not_configured.
        self.channels: dict[str, str] = {}

    async def run(
        self, *, task_status: trio.TaskStatus[Notifier] = trio.TASK_STATUS_IGNORED
    ) -> None:
        s = self.settings
        public = self.public_url
        # Capture servers outlive the channels that talk to them; the channels (each with
        # its own event loop or HTTP client) outlive the services that use them.
        async with trio.open_nursery() as servers:
            channels: dict[str, Channel] = {}
            sms = await self._sms(s, servers, public)
            email = await self._email(s, servers)
            async with contextlib.AsyncExitStack() as stack:
                if sms is not None:
                    channels["sms"] = await stack.enter_async_context(sms)
                if email is not None:
                    channels["email"] = await stack.enter_async_context(email)
                channels["webhook"] = await stack.enter_async_context(WebhookChannel(self.redis))
                notifier = Notifier(
                    self.redis,
                    channels,
                    link_for=self.link_for,
                    config=notifier_config(s),
                    on_redis_outage=self._redis_outage,
                    on_not_configured=self._not_configured,
                )
                self.channels = {
                    "sms": self._kind("twilio", self.sms_capture, sms),
                    "email": self._kind("smtp", self.email_capture, email),
                }
                async with trio.open_nursery() as nursery:
                    await nursery.start(notifier.run)
                    feed = AlertFeed(notifier.alerts, self.hub, self.metrics)
                    nursery.start_soon(feed.run)
                    log.info("notifications: %s", ", ".join(sorted(channels)))
                    task_status.started(notifier)

    @staticmethod
    def _kind(real: str, capture: object, channel: object) -> str:
        if channel is None:
            return "not_configured"
        return "capture" if capture is not None else real

    def _not_configured(self, channel: str) -> None:
        self.metrics.inc("notify_messages_not_configured_total", channel=channel)

    def _redis_outage(self, service: str) -> None:
        self.metrics.inc(REDIS_OUTAGES_METRIC, service=service)

    async def _sms(
        self, s: Settings, nursery: trio.Nursery, public: str
    ) -> TwilioSmsChannel | None:
        sid, token, base = s.twilio_account_sid, s.twilio_auth_token, s.twilio_api_url or None
        if not sid and s.notify_capture:
            self.sms_capture = TwilioCaptureServer()
            base = await nursery.start(self.sms_capture.run)
            sid, token = self.sms_capture.account_sid, self.sms_capture.auth_token
            log.info("SMS go to the local capture server at %s", base)
        if not sid:
            log.warning(
                "SMS are not configured: customer texts are not sent (set TWILIO_ACCOUNT_SID "
                "and TWILIO_AUTH_TOKEN, or NOTIFY_CAPTURE=true for a local capture server)"
            )
            return None
        self.twilio_auth_token = token
        return TwilioSmsChannel(
            sid,
            token,
            s.twilio_from or None,
            messaging_service_sid=s.twilio_messaging_service_sid or None,
            api_base_url=base,
            status_callback_url=f"{public}/twilio/status",
        )

    async def _email(self, s: Settings, nursery: trio.Nursery) -> SmtpEmailChannel | None:
        if s.smtp_host:
            return SmtpEmailChannel(
                s.smtp_host,
                s.smtp_port,
                s.smtp_from,
                username=s.smtp_username or None,
                password=s.smtp_password or None,
                starttls=s.smtp_starttls and not s.smtp_tls,
                use_tls=s.smtp_tls,
            )
        if not s.notify_capture:
            log.warning(
                "email is not configured: customer mails are not sent (set SMTP_HOST, or "
                "NOTIFY_CAPTURE=true for a local capture server)"
            )
            return None
        self.email_capture = SmtpCaptureServer()
        port = await nursery.start(self.email_capture.run)
        log.info("email goes to the local capture server on port %d", port)
        return SmtpEmailChannel("127.0.0.1", port, s.smtp_from, starttls=False)
