"""Notifications: rules from events to messages, templates, the durable outbox, the SMS,
email and webhook channels, agent alerts, and the HTTP endpoints that go with them.

The gateway starts one ``Notifier`` per process (``await nursery.start(notifier.run)``) and
mounts ``create_blueprint(notifier, ...)``; see ``notify.service`` and ``notify.api``.
"""

from .alerts import Alert, AlertListener, AlertStateError, AlertStore, UnknownAlert, decode_alert
from .api import create_blueprint
from .channels.base import Channel
from .channels.email import SmtpEmailChannel
from .channels.sms import HttpxTwilioClient, TwilioSmsChannel
from .channels.webhook import WebhookChannel, sign, verify_signature
from .deliveries import Delivery, DeliveryLookup, Recipient, RedisDeliveryLookup, Window
from .errors import (
    InvalidAddress,
    NotifyError,
    PermanentError,
    RecipientOptedOut,
    SendError,
    TransientError,
)
from .events import Event, decode_event, encode_event
from .message import Message, SendResult, message_id
from .optouts import is_opted_out, opt_in, opt_out
from .outbox import (
    Attempt,
    DeadLetter,
    NotificationRecord,
    Outbox,
    OutboxConfig,
    RateLimit,
)
from .rules import AlertSpec, Intent, RulesConfig, alert_for, customer_intents, quiet_hours_end
from .segments import SegmentInfo, count_segments, segment_info, truncate_sms
from .service import InboundResult, Notifier, NotifierConfig
from .subscriptions import (
    InvalidSubscription,
    Subscription,
    UnknownSubscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    update_subscription,
)
from .templates import RenderedEmail, TemplateMissing, Templates
from .validation import validate_email, validate_phone

__all__ = [
    "Alert",
    "AlertListener",
    "AlertSpec",
    "AlertStateError",
    "AlertStore",
    "Attempt",
    "Channel",
    "DeadLetter",
    "Delivery",
    "DeliveryLookup",
    "Event",
    "HttpxTwilioClient",
    "InboundResult",
    "Intent",
    "InvalidAddress",
    "InvalidSubscription",
    "Message",
    "NotificationRecord",
    "Notifier",
    "NotifierConfig",
    "NotifyError",
    "Outbox",
    "OutboxConfig",
    "PermanentError",
    "RateLimit",
    "Recipient",
    "RecipientOptedOut",
    "RedisDeliveryLookup",
    "RenderedEmail",
    "RulesConfig",
    "SegmentInfo",
    "SendError",
    "SendResult",
    "SmtpEmailChannel",
    "Subscription",
    "TemplateMissing",
    "Templates",
    "TransientError",
    "TwilioSmsChannel",
    "UnknownAlert",
    "UnknownSubscription",
    "WebhookChannel",
    "Window",
    "alert_for",
    "count_segments",
    "create_blueprint",
    "create_subscription",
    "customer_intents",
    "decode_alert",
    "decode_event",
    "delete_subscription",
    "encode_event",
    "get_subscription",
    "is_opted_out",
    "list_subscriptions",
    "message_id",
    "opt_in",
    "opt_out",
    "quiet_hours_end",
    "segment_info",
    "sign",
    "truncate_sms",
    "update_subscription",
    "validate_email",
    "validate_phone",
    "verify_signature",
]
