"""HTTP endpoints of the notification side, as a quart Blueprint the gateway mounts.

Provider webhooks (checked with Twilio's request signature, not agent auth):

* ``POST /twilio/status``: delivery receipts (``StatusCallback``) for sent SMS.
* ``POST /twilio/inbound``: texts from customers: STOP/STOPALL/UNSUBSCRIBE/CANCEL/END/QUIT
  opt out, START/YES/UNSTOP opt back in, HELP gets the help text, anything else is
  recorded on the customer's latest delivery and raised to agents. Answers with TwiML.

Agent endpoints (wrapped with the ``auth`` decorator the gateway passes):

* ``GET /v1/notifications?delivery=<id>``: every message for a delivery with its attempts.
* ``GET /v1/alerts?status=unresolved|open|acknowledged|resolved|all&limit=``;
  ``POST /v1/alerts/<id>/ack`` and ``POST /v1/alerts/<id>/resolve`` (a JSON object, ``{}``
  at least, with optional ``by`` and ``resolution``; ``identity()`` wins over ``by``).
* ``/v1/webhooks``: ``GET`` list, ``POST`` create (``url``, ``events``, ``description``;
  the answer holds the secret, shown this once), ``GET/PATCH/DELETE /v1/webhooks/<id>``
  (``PATCH`` may set ``rotate_secret: true``).

The handlers read their input with the Structs of ``notify.api_models`` (a 400 naming the
field otherwise) and answer with them; the gateway describes the endpoints from the same
Structs (``gateway.http.notify_ops``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar
from xml.sax.saxutils import escape

import msgspec
from quart import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from .alerts import AlertStateError, AlertStatus, UnknownAlert
from .api_models import (
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
from .service import Notifier
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

Handler = Callable[..., Awaitable[Any]]
AgentAuth = Callable[[Handler], Handler]  # a decorator that refuses unauthenticated calls
T = TypeVar("T")

# Twilio's MessageStatus values that change what we store; the rest are steps on the way.
_RECEIPT_STATUS: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
}


# msgspec errors about a whole object that name the field in backquotes.
_NAMES_A_FIELD: Final = ("Object missing required field `", "Object contains unknown field `")


class _BadInput(Exception):
    """Input that does not have the type its endpoint reads (a 400); ``field`` names the
    field or argument to blame when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _refused(exc: msgspec.ValidationError) -> _BadInput:
    """``"Expected ... - at `$.events[0]`"`` -> a _BadInput blaming ``events[0]``."""
    text = str(exc)
    _, sep, where = text.rpartition(" - at `$")
    field = where.rstrip("`").lstrip(".") if sep else ""
    if not field and text.startswith(_NAMES_A_FIELD):
        field = text.split("`")[1]
    return _BadInput(text, field or None)


def _read_query(kind: type[T]) -> T:
    """The query arguments as ``kind`` (strings converted; unknown arguments ignored)."""
    try:
        return msgspec.convert(request.args.to_dict(), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _refused(exc) from None


async def _read_body(kind: type[T]) -> T:
    """The JSON body decoded as ``kind``."""
    data = await request.get_data(as_text=False)
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise _refused(exc) from None
    except msgspec.DecodeError as exc:
        raise _BadInput(f"the body is not valid JSON (UTF-8): {exc}") from None
    except RecursionError:
        raise _BadInput("the body is nested too deeply") from None


def _read_form(form: dict[str, str], kind: type[T]) -> T:
    """A provider's form as ``kind`` (strings converted; unknown fields ignored)."""
    try:
        return msgspec.convert(form, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _refused(exc) from None


def _given(value: T | msgspec.UnsetType) -> T | None:
    """A field of a partial update: None when it was not sent."""
    return None if isinstance(value, msgspec.UnsetType) else value


def _view(sub: Subscription, kind: type[T], *, with_secret: bool = False) -> T:
    """``sub`` as the API shows it, typed as ``kind``."""
    return msgspec.convert(sub.public(with_secret=with_secret), kind)


def _json(body: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status=status, content_type="application/json")


def _problem(status: int, detail: str, field: str | None = None) -> Response:
    body = {"error": detail} if field is None else {"error": detail, "field": field}
    return _json(body, status)


def _twiml(reply: str) -> Response:
    body = f"<Message>{escape(reply)}</Message>" if reply else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        content_type="text/xml",
    )


def create_blueprint(
    notifier: Notifier,
    *,
    twilio_auth_token: str | None,
    auth: AgentAuth | None = None,
    public_url: str | None = None,
    identity: Callable[[], str | None] | None = None,
    name: str = "notify",
) -> Blueprint:
    """The Blueprint for ``notifier``.

    ``twilio_auth_token`` checks ``X-Twilio-Signature`` on the provider webhooks (``None``
    turns them off: they answer 404). ``auth`` wraps every agent endpoint. ``public_url`` is
    the scheme and host Twilio calls (``https://gw.example.com``) when the gateway sits behind
    a proxy, since the signature covers the URL as Twilio saw it.
    """
    bp = Blueprint(name, __name__)
    validator = RequestValidator(twilio_auth_token) if twilio_auth_token else None

    def agent(handler: Handler) -> Handler:
        return auth(handler) if auth is not None else handler

    def who(by: str | msgspec.UnsetType) -> str:
        named = identity() if identity is not None else None
        return named or (by if isinstance(by, str) and by else "agent")

    @bp.errorhandler(_BadInput)
    async def _bad_input(exc: _BadInput) -> Response:
        return _problem(400, str(exc), exc.field)

    async def signed_form() -> dict[str, str] | Response:
        if validator is None:
            return _problem(404, "provider webhooks are not configured")
        form = {k: v for k, v in (await request.form).items()}
        url = request.url
        if public_url:
            url = public_url.rstrip("/") + request.full_path.rstrip("?")
        if not validator.validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            return _problem(403, "invalid Twilio signature")
        return form

    @bp.post("/twilio/status")
    async def twilio_status() -> Response:
        form = await signed_form()
        if isinstance(form, Response):
            return form
        receipt = _read_form(form, TwilioStatus)
        sid = receipt.MessageSid or receipt.SmsSid
        status = _RECEIPT_STATUS.get(receipt.MessageStatus or receipt.SmsStatus)
        if sid and status:
            code = None if isinstance(receipt.ErrorCode, msgspec.UnsetType) else receipt.ErrorCode
            await notifier.provider_status(sid, status, code)
        return Response("", status=204)

    @bp.post("/twilio/inbound")
    async def twilio_inbound() -> Response:
        form = await signed_form()
        if isinstance(form, Response):
            return form
        text = _read_form(form, TwilioInbound)
        result = await notifier.inbound_sms(text.From, text.Body)
        return _twiml(result.reply)

    @bp.get("/v1/notifications")
    @agent
    async def notifications() -> Response:
        q = _read_query(NotificationsQuery)
        records = await notifier.outbox.list_notifications(q.delivery)
        return _json(NotificationList(delivery=q.delivery, notifications=records))

    @bp.get("/v1/alerts")
    @agent
    async def alerts() -> Response:
        q = _read_query(AlertsQuery)
        status: AlertStatus | Literal["unresolved"] | None = None if q.status == "all" else q.status
        found = await notifier.alerts.list_alerts(status, limit=q.limit)
        return _json(AlertList(alerts=found))

    @bp.post("/v1/alerts/<alert_id>/ack")
    @agent
    async def ack(alert_id: str) -> Response:
        body = await _read_body(AlertAck)
        try:
            alert = await notifier.alerts.acknowledge(alert_id, who(body.by))
        except UnknownAlert:
            return _problem(404, f"no alert {alert_id}")
        except AlertStateError as exc:
            return _problem(409, str(exc))
        return _json(alert)

    @bp.post("/v1/alerts/<alert_id>/resolve")
    @agent
    async def resolve(alert_id: str) -> Response:
        body = await _read_body(AlertResolve)
        try:
            alert = await notifier.alerts.resolve(alert_id, who(body.by), body.resolution)
        except UnknownAlert:
            return _problem(404, f"no alert {alert_id}")
        return _json(alert)

    @bp.get("/v1/webhooks")
    @agent
    async def webhooks() -> Response:
        subs = await list_subscriptions(notifier.redis)
        return _json(WebhookList(webhooks=[_view(s, Webhook) for s in subs]))

    @bp.post("/v1/webhooks")
    @agent
    async def create_webhook() -> Response:
        body = await _read_body(WebhookCreate)
        try:
            sub = await create_subscription(
                notifier.redis, body.url, body.events, description=body.description
            )
        except InvalidSubscription as exc:
            return _problem(400, str(exc))
        return _json(_view(sub, NewWebhook, with_secret=True), 201)

    @bp.get("/v1/webhooks/<sub_id>")
    @agent
    async def get_webhook(sub_id: str) -> Response:
        sub = await get_subscription(notifier.redis, sub_id)
        return _json(_view(sub, Webhook)) if sub else _problem(404, f"no webhook {sub_id}")

    @bp.patch("/v1/webhooks/<sub_id>")
    @agent
    async def patch_webhook(sub_id: str) -> Response:
        body = await _read_body(WebhookPatch)
        try:
            sub = await update_subscription(
                notifier.redis,
                sub_id,
                url=_given(body.url),
                events=_given(body.events),
                active=_given(body.active),
                description=_given(body.description),
                rotate_secret=body.rotate_secret,
            )
        except UnknownSubscription:
            return _problem(404, f"no webhook {sub_id}")
        except InvalidSubscription as exc:
            return _problem(400, str(exc))
        return _json(_view(sub, ChangedWebhook, with_secret=body.rotate_secret))

    @bp.delete("/v1/webhooks/<sub_id>")
    @agent
    async def delete_webhook(sub_id: str) -> Response:
        if not await delete_subscription(notifier.redis, sub_id):
            return _problem(404, f"no webhook {sub_id}")
        return Response("", status=204)

    return bp
