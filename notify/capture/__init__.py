"""Local stand-ins for Twilio and an SMTP server, for the tests and the demo: they record what
they receive, so notifications can be seen without any account."""

from .smtp_server import CapturedEmail, SmtpCaptureServer
from .twilio_server import CapturedRequest, CapturedSms, TwilioCaptureServer

__all__ = [
    "CapturedEmail",
    "CapturedRequest",
    "CapturedSms",
    "SmtpCaptureServer",
    "TwilioCaptureServer",
]
