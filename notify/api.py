"""HTTP endpoints of the notification side, as a quart Blueprint the gateway mounts.

Provider webhooks (checked with Twilio's request signature, not agent auth):

* ``POST /twilio/status``: delivery receipts (``StatusCallback``) for sent SMS.
* ``POST /twilio/inbound``: texts from customers: STOP/STOPALL/UNSUBSCRIBE/CANCEL/END/QUIT
  opt out, START/YES/UNSTOP opt back in, HELP gets the help text, anything else is
  recorded on the customer's latest delivery and raised to agents. Answers with TwiML.

Agent endpoints (wrapped with the ``auth`` decorator the gateway passes):

* ``GET /v1/notifications?delivery=<id>``: every message for a delivery with its attempts.
* ``GET /v1/alerts?status=unresolved|open|acknowledged|resolved|all&limit=``;
  ``POST /v1/alerts/<id>/ack`` and ``POST /v1/alerts/<id>/resolve`` (JSON body: optional
  ``by`` and ``resolution``; ``identity()`` wins over ``by`` when given).
* ``/v1/webhooks``: ``GET`` list, ``POST`` create (``url``, ``events``, ``description``;
  the answer holds the secret, shown this once), ``GET/PATCH/DELETE /v1/webhooks/<id>``
  (``PATCH`` may set ``rotate_secret: true``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from xml.sax.saxutils import escape

import msgspec
from quart import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from .alerts import AlertStateError
from .service import Notifier
from .subscriptions import (
    InvalidSubscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    update_subscription,
)

Handler = Callable[..., Awaitable[Any]]
AgentAuth = Callable[[Handler], Handler]  # a decorator that refuses unauthenticated calls

MAX_ALERTS: Final = 1000
# Twilio's MessageStatus values that change what we store; the rest are steps on the way.
_RECEIPT_STATUS: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
}
_ALERT_STATUSES: Final = {"unresolved", "open", "acknowledged", "resolved", "all"}


class _BadBody(Exception):
    """A request body that is not a JSON object."""


def _json(body: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status=status, content_type="application/json")


def _problem(status: int, detail: str) -> Response:
    return _json({"error": detail}, status)


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

    def who(body: dict[str, Any]) -> str:
        named = identity() if identity is not None else None
        return named or str(body.get("by") or "agent")

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
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = _RECEIPT_STATUS.get(form.get("MessageStatus") or form.get("SmsStatus") or "")
        if sid and status:
            code = form.get("ErrorCode")
            await notifier.provider_status(sid, status, int(code) if code else None)
        return Response("", status=204)

    @bp.post("/twilio/inbound")
    async def twilio_inbound() -> Response:
        form = await signed_form()
        if isinstance(form, Response):
            return form
        sender = form.get("From", "")
        if not sender:
            return _problem(400, "From is missing")
        result = await notifier.inbound_sms(sender, form.get("Body", ""))
        return _twiml(result.reply)

    @bp.get("/v1/notifications")
    @agent
    async def notifications() -> Response:
        delivery = request.args.get("delivery")
        if not delivery:
            return _problem(400, "query parameter 'delivery' is required")
        records = await notifier.outbox.list_notifications(delivery)
        return _json({"delivery": delivery, "notifications": records})

    @bp.get("/v1/alerts")
    @agent
    async def alerts() -> Response:
        status = request.args.get("status", "unresolved")
        if status not in _ALERT_STATUSES:
            return _problem(400, f"status must be one of {sorted(_ALERT_STATUSES)}")
        try:
            limit = min(MAX_ALERTS, max(1, int(request.args.get("limit", "200"))))
        except ValueError:
            return _problem(400, "limit must be an integer")
        found = await notifier.alerts.list_alerts(
            None if status == "all" else status,  # type: ignore[arg-type]
            limit=limit,
        )
        return _json({"alerts": found})

    async def _body() -> dict[str, Any]:
        """The JSON object sent, or {} for no body; anything else is a 400."""
        data = await request.get_data(as_text=False)
        if not data.strip():
            return {}
        try:
            body = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            raise _BadBody("the body is not valid JSON (UTF-8)") from None
        if not isinstance(body, dict):
            raise _BadBody("the body must be a JSON object")
        return body

    @bp.errorhandler(_BadBody)
    async def _bad_body(exc: _BadBody) -> Response:
        return _problem(400, str(exc))

    @bp.post("/v1/alerts/<alert_id>/ack")
    @agent
    async def ack(alert_id: str) -> Response:
        if await notifier.alerts.get(alert_id) is None:
            return _problem(404, f"no alert {alert_id}")
        try:
            alert = await notifier.alerts.acknowledge(alert_id, who(await _body()))
        except AlertStateError as exc:
            return _problem(409, str(exc))
        return _json(alert)

    @bp.post("/v1/alerts/<alert_id>/resolve")
    @agent
    async def resolve(alert_id: str) -> Response:
        if await notifier.alerts.get(alert_id) is None:
            return _problem(404, f"no alert {alert_id}")
        body = await _body()
        alert = await notifier.alerts.resolve(
            alert_id, who(body), str(body.get("resolution") or "")
        )
        return _json(alert)

    @bp.get("/v1/webhooks")
    @agent
    async def webhooks() -> Response:
        subs = await list_subscriptions(notifier.redis)
        return _json({"webhooks": [s.public() for s in subs]})

    @bp.post("/v1/webhooks")
    @agent
    async def create_webhook() -> Response:
        body = await _body()
        try:
            sub = await create_subscription(
                notifier.redis,
                body.get("url", ""),
                body.get("events", ["*"]),
                description=str(body.get("description", "")),
            )
        except InvalidSubscription as exc:
            return _problem(400, str(exc))
        return _json(sub.public(with_secret=True), 201)

    @bp.get("/v1/webhooks/<sub_id>")
    @agent
    async def get_webhook(sub_id: str) -> Response:
        sub = await get_subscription(notifier.redis, sub_id)
        return _json(sub.public()) if sub else _problem(404, f"no webhook {sub_id}")

    @bp.patch("/v1/webhooks/<sub_id>")
    @agent
    async def patch_webhook(sub_id: str) -> Response:
        body = await _body()
        if await get_subscription(notifier.redis, sub_id) is None:
            return _problem(404, f"no webhook {sub_id}")
        rotate = bool(body.get("rotate_secret"))
        try:
            sub = await update_subscription(
                notifier.redis,
                sub_id,
                url=body.get("url"),
                events=body.get("events"),
                active=body.get("active"),
                description=body.get("description"),
                rotate_secret=rotate,
            )
        except InvalidSubscription as exc:
            return _problem(400, str(exc))
        return _json(sub.public(with_secret=rotate))

    @bp.delete("/v1/webhooks/<sub_id>")
    @agent
    async def delete_webhook(sub_id: str) -> Response:
        if not await delete_subscription(notifier.redis, sub_id):
            return _problem(404, f"no webhook {sub_id}")
        return Response("", status=204)

    return bp
