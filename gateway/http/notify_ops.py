"""The notifier's HTTP operations (``notify.api``: alerts, webhooks, notifications, Twilio's
callbacks), for /openapi.json. They are listed here, in the gateway, because ``notify`` knows
nothing of the gateway's description; the types are notify's own, the ones its handlers read
and answer with (``notify.api_models``)."""

from __future__ import annotations

from typing import Final

from gateway.http.spec import Content, Op
from notify.alerts import Alert
from notify.api_models import (
    AlertAck,
    AlertList,
    AlertResolve,
    AlertsQuery,
    ChangedWebhook,
    NewWebhook,
    NotificationList,
    NotificationsQuery,
    TwilioInbound,
    TwilioStatus,
    Webhook,
    WebhookCreate,
    WebhookList,
    WebhookPatch,
)

_ALERT = {"id": "the alert id"}
_HOOK = {"id": "the webhook subscription id"}
_FORM = "application/x-www-form-urlencoded"
_SIGNED = (
    "Called by Twilio, signed with the account's auth token in X-Twilio-Signature (403 "
    "otherwise); 404 while no Twilio account is configured."
)

OPS: Final = [
    Op("GET", "/v1/notifications", "Every notification of a delivery, with its attempts",
       {200: NotificationList}, query=NotificationsQuery),
    Op("GET", "/v1/alerts", "Alerts, newest first", {200: AlertList}, query=AlertsQuery),
    Op("POST", "/v1/alerts/{id}/ack",
       "Acknowledge an alert (again: no change; a resolved alert: 409)",
       {200: Alert, 404: None, 409: None}, body=AlertAck, params=_ALERT),
    Op("POST", "/v1/alerts/{id}/resolve", "Resolve an alert (again: no change)",
       {200: Alert, 404: None}, body=AlertResolve, params=_ALERT),
    Op("GET", "/v1/webhooks", "Webhook subscriptions, oldest first", {200: WebhookList}),
    Op("POST", "/v1/webhooks", "Subscribe a URL to events; answers its secret this once",
       {201: NewWebhook}, body=WebhookCreate),
    Op("GET", "/v1/webhooks/{id}", "One webhook subscription",
       {200: Webhook, 404: None}, params=_HOOK),
    Op("PATCH", "/v1/webhooks/{id}", "Change a webhook subscription, or rotate its secret",
       {200: ChangedWebhook, 404: None}, body=WebhookPatch, params=_HOOK),
    Op("DELETE", "/v1/webhooks/{id}", "Delete a webhook subscription; what is queued for it "
       "is dropped", {204: None, 404: None}, params=_HOOK),
    Op("POST", "/twilio/status", "Twilio's delivery receipts for the SMS sent",
       {204: None, 403: None, 404: None}, body=Content(_FORM, TwilioStatus), public=True,
       description=_SIGNED),
    Op("POST", "/twilio/inbound",
       "Texts from customers: STOP/START/HELP keywords, anything else raised to agents",
       {200: Content("text/xml", {"type": "string"}, "TwiML: the reply, if any"),
        403: None, 404: None},
       body=Content(_FORM, TwilioInbound), public=True, description=_SIGNED),
]  # fmt: skip
