"""The shapes of the notifier's HTTP input and output: what ``notify.api``'s handlers decode
and encode, and what the gateway's ``/openapi.json`` describes from these same Structs.

Request Structs refuse unknown fields, except the provider's forms (Twilio sends many fields
this side has no use for, and adds more over time).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from .alerts import Alert
from .outbox import NotificationRecord
from .subscriptions import MAX_URL_LEN

MAX_ALERTS: Final = 1000
MAX_BY_CHARS: Final = 200
MAX_RESOLUTION_CHARS: Final = 2000
MAX_DESCRIPTION_CHARS: Final = 500
MAX_EVENT_PATTERNS: Final = 100
MAX_EVENT_PATTERN_CHARS: Final = 200

# What ``subscriptions.validate_url`` accepts, said as a pattern so the description holds it:
# http(s), a host of RFC 3986 reg-name characters (no credentials: no '@'), an optional port,
# then printable ASCII. IPv6 literals are left out: urllib refuses malformed ones with an error
# the pattern could not foresee.
URL_PATTERN: Final = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:[0-9]*)?([/?#][!-~]*)?$"
)
# ``subscriptions.validate_events``: '*' alone, a family 'x.*', or an exact type; printable
# ASCII without spaces ('!'-')' and '+'-'~' skip '*').
EVENT_PATTERN: Final = r"^(\*|[!-)+-~]*\.\*|[!-)+-~]+)$"

Url = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_URL_LEN,
        pattern=URL_PATTERN,
        description="an absolute http:// or https:// URL, without credentials",
    ),
]
EventPattern = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_PATTERN_CHARS,
        pattern=EVENT_PATTERN,
        description="an event type ('delivery.delivered'), a family ('delivery.*') or '*'",
    ),
]
EventPatterns = Annotated[
    list[EventPattern],
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_PATTERNS,
        description="the events wanted; a new subscription wants every event ('*') by default",
    ),
]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_CHARS)]
By = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_BY_CHARS,
        description="who did it ('agent' if empty); the caller's own identity wins when known",
    ),
]


class NotificationsQuery(msgspec.Struct):
    delivery: Annotated[str, msgspec.Meta(min_length=1, description="the delivery id")]


class NotificationList(msgspec.Struct):
    """Every message queued for the delivery, oldest first, with its attempts."""

    delivery: str
    notifications: list[NotificationRecord]


class AlertsQuery(msgspec.Struct):
    status: Annotated[
        Literal["unresolved", "open", "acknowledged", "resolved", "all"],
        msgspec.Meta(description="unresolved: open or acknowledged"),
    ] = "unresolved"
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_ALERTS)] = 200


class AlertList(msgspec.Struct):
    """Alerts, newest first."""

    alerts: list[Alert]


class AlertAck(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who acknowledges the alert."""

    by: By | msgspec.UnsetType = msgspec.UNSET


class AlertResolve(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who resolves the alert, and how."""

    by: By | msgspec.UnsetType = msgspec.UNSET
    resolution: Annotated[str, msgspec.Meta(max_length=MAX_RESOLUTION_CHARS)] = ""


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A URL to send the events to, signed with a secret generated for it."""

    url: Url
    events: EventPatterns = msgspec.field(default_factory=lambda: ["*"])
    description: Description = ""


class WebhookPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields to change; ``rotate_secret`` issues a new secret, answered this once."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: EventPatterns | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    rotate_secret: bool = False


class Webhook(msgspec.Struct, kw_only=True):
    """A webhook subscription (its secret is shown only when issued)."""

    id: str
    url: str
    events: list[str]
    active: bool
    description: str
    created: float


class NewWebhook(Webhook, kw_only=True):
    """The subscription made, with the secret that signs its requests: shown this once."""

    secret: str


class ChangedWebhook(Webhook, kw_only=True):
    """The subscription changed; with its new secret (shown this once) when rotated."""

    secret: str | msgspec.UnsetType = msgspec.UNSET


class WebhookList(msgspec.Struct):
    """Every webhook subscription, oldest first."""

    webhooks: list[Webhook]


class TwilioStatus(msgspec.Struct, kw_only=True):
    """A delivery receipt (Twilio's ``StatusCallback``); receipts without a message id or
    with a status on the way (queued, sending...) are ignored."""

    MessageSid: str = ""
    SmsSid: str = ""
    MessageStatus: str = ""
    SmsStatus: str = ""
    ErrorCode: int | msgspec.UnsetType = msgspec.UNSET


class TwilioInbound(msgspec.Struct, kw_only=True):
    """A text from a customer."""

    From: Annotated[str, msgspec.Meta(min_length=1, description="the sender's number")]
    Body: str = ""
