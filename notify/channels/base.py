"""The one interface every channel adapter offers."""

from __future__ import annotations

from typing import Protocol

from ..message import Message, SendResult


class Channel(Protocol):
    """Hands messages to one provider.

    ``send`` returns when the provider has accepted the message, and raises
    ``TransientError`` (try again later), ``PermanentError`` (never going to work) or its
    subclass ``RecipientOptedOut``. Any other exception is a bug and is treated as transient
    by the outbox, so a bug delays messages rather than losing them.
    """

    name: str

    async def send(self, message: Message) -> SendResult: ...
