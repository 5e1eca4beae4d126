"""One adapter per channel behind the ``Channel`` protocol: SMS (Twilio), email (SMTP) and
webhooks (signed HTTP POST)."""

from .base import Channel
from .email import SmtpEmailChannel
from .sms import TwilioSmsChannel
from .webhook import WebhookChannel, sign, verify_signature

__all__ = [
    "Channel",
    "SmtpEmailChannel",
    "TwilioSmsChannel",
    "WebhookChannel",
    "sign",
    "verify_signature",
]
