"""Domain errors of the notification side, each carrying a reason a person can read."""

from __future__ import annotations


class NotifyError(Exception):
    """Base class of the errors raised by ``notify``."""


class SendError(NotifyError):
    """A channel could not hand a message to its provider."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(SendError):
    """The send may succeed later (timeout, 5xx, throttling).

    ``retry_after_s`` is the provider's own hint (``Retry-After``); the outbox never retries
    sooner than that.
    """

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"TransientError({self.reason!r}, retry_after_s={self.retry_after_s!r})"


class PermanentError(SendError):
    """The send will never succeed as it stands (invalid number, rejected address...).

    ``code`` is the provider's error code when it gave one (a Twilio error code, an SMTP
    reply code, an HTTP status).
    """

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code

    def __repr__(self) -> str:
        return f"PermanentError({self.reason!r}, code={self.code!r})"


class RecipientOptedOut(PermanentError):
    """The provider refused because the recipient unsubscribed (Twilio error 21610).

    The outbox records the address as opted out so later messages are not even attempted.
    """


class InvalidAddress(NotifyError, ValueError):
    """A phone number or email address is not acceptable; ``reason`` says why."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"{value!r}: {reason}")
        self.value = value
        self.reason = reason
