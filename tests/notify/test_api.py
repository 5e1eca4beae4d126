"""The notification HTTP endpoints, served by hypercorn, called over real HTTP."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import coredis
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from notify import keys
from notify.api import create_blueprint
from notify.capture.twilio_server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    TwilioCaptureServer,
)
from notify.channels.sms import TwilioSmsChannel
from notify.deliveries import delivery_key
from notify.events import EVENTS_STREAM, Event
from notify.optouts import is_opted_out
from notify.rules import AlertSpec
from notify.service import Notifier

from .test_service import DELIVERY, NOON, PHONE, log_events, wait_for_events

API_KEY = "agent-key"
Handler = Callable[..., Awaitable[Any]]


def require_key(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return Response("", status=401)
        return await handler(*args, **kwargs)

    return checked


@dataclass
class Gateway:
    url: str
    notifier: Notifier
    http: httpx.AsyncClient
    twilio: TwilioCaptureServer

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(self.url + path, headers=_auth(), **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.post(self.url + path, headers=_auth(), **kw)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def gateway(
    redis: coredis.Redis[bytes], twilio_server: TwilioCaptureServer, nursery: trio.Nursery
) -> AsyncIterator[Gateway]:
    await redis.set(delivery_key("d1"), json.dumps(DELIVERY))
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    app = QuartTrio(__name__)
    holder: dict[str, Notifier] = {}

    async with (
        httpx.AsyncClient() as http,
        TwilioSmsChannel(
            DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, "+15005550006",
            api_base_url=twilio_server.base_url,
        ) as sms,
    ):  # fmt: skip
        start = trio.current_time()
        notifier = Notifier(
            redis,
            {"sms": sms},
            link_for=lambda d: f"https://gw/t/{d}",
            # Noon on the delivery's day: outside quiet hours and inside its window.
            clock=lambda: NOON + (trio.current_time() - start),
        )
        holder["n"] = notifier
        app.register_blueprint(
            create_blueprint(notifier, twilio_auth_token=DEFAULT_AUTH_TOKEN, auth=require_key)
        )
        binds = await nursery.start(partial(serve, app, config))
        url = binds[0]
        sms.status_callback_url = url + "/twilio/status"
        await nursery.start(notifier.run)
        yield Gateway(url, notifier, http, twilio_server)
        nursery.cancel_scope.cancel()


async def send_out_for_delivery(gw: Gateway) -> None:
    await gw.notifier.handle_event(
        Event(type="delivery.out_for_delivery", ts=NOON, delivery="d1", id="ev1", stop="s3")
    )
    with trio.fail_after(10):
        await gw.twilio.wait_for_messages(1)
        await wait_for_events(gw.notifier.redis, "notification.sent", 1)


async def test_status_callbacks_update_the_message(gateway: Gateway) -> None:
    await send_out_for_delivery(gateway)
    [done] = await wait_for_events(gateway.notifier.redis, "notification.delivered", 1)
    assert done["delivery"] == "d1" and done["data"]["channel"] == "sms"
    # The receipt is recorded once its answer is back, which may be after the event.
    with trio.fail_after(10):
        sent = await gateway.twilio.wait_for_callbacks(2)
    assert [c[1:] for c in sent] == [("sent", 204), ("delivered", 204)]
    response = await gateway.get("/v1/notifications", params={"delivery": "d1"})
    [record] = response.json()["notifications"]
    assert record["status"] == "delivered" and record["provider_status"] == "delivered"
    assert record["provider_id"] == gateway.twilio.messages[0].sid
    assert [a["outcome"] for a in record["attempts"]] == ["sent"]


async def test_forged_provider_requests_are_refused(gateway: Gateway) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    response = await gateway.http.post(
        gateway.url + "/twilio/status", data=form, headers={"X-Twilio-Signature": "bogus"}
    )
    assert response.status_code == 403
    inbound = await gateway.http.post(
        gateway.url + "/twilio/inbound", data={"From": PHONE, "Body": "STOP"}
    )
    assert inbound.status_code == 403
    assert not await is_opted_out(gateway.notifier.redis, PHONE)


async def test_signed_provider_forms_of_the_wrong_shape_are_refused(gateway: Gateway) -> None:
    status = gateway.url + "/twilio/status"
    form = {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "not-a-code"}
    assert await gateway.twilio.post_signed(status, form) == 400
    assert await gateway.twilio.post_signed(status, {"MessageStatus": "queued"}) == 204
    assert await gateway.twilio.post_signed(gateway.url + "/twilio/inbound", {"Body": "hi"}) == 400


async def test_inbound_keywords_and_customer_messages(gateway: Gateway) -> None:
    await send_out_for_delivery(gateway)
    inbound = gateway.url + "/twilio/inbound"
    redis = gateway.notifier.redis

    assert "<Message>" not in await gateway.twilio.send_inbound(inbound, PHONE, " stop ")
    assert await is_opted_out(redis, PHONE)
    await gateway.twilio.send_inbound(inbound, PHONE, "START")
    assert not await is_opted_out(redis, PHONE)
    help_reply = await gateway.twilio.send_inbound(inbound, PHONE, "help")
    assert "<Message>" in help_reply and "Reply STOP" in help_reply

    reply = await gateway.twilio.send_inbound(inbound, PHONE, "Please leave it with number 3")
    assert "<Message>" not in reply
    [message] = await wait_for_events(redis, "delivery.customer_message", 1)
    assert message["delivery"] == "d1"
    assert message["data"] == {"from": PHONE, "body": "Please leave it with number 3"}
    for _ in range(200):
        alerts = (await gateway.get("/v1/alerts")).json()["alerts"]
        if alerts:
            break
        await trio.sleep(0.01)
    [alert] = alerts
    assert alert["kind"] == "delivery.customer_message" and alert["delivery"] == "d1"
    assert "Please leave it with number 3" in alert["detail"]


async def test_agent_endpoints_require_auth_and_validate(gateway: Gateway) -> None:
    for path in ("/v1/notifications?delivery=d1", "/v1/alerts", "/v1/webhooks"):
        assert (await gateway.http.get(gateway.url + path)).status_code == 401
    assert (await gateway.get("/v1/notifications")).status_code == 400
    assert (await gateway.get("/v1/alerts", params={"status": "bogus"})).status_code == 400
    assert (await gateway.post("/v1/alerts/al_nope/ack", json={})).status_code == 404
    assert (await gateway.get("/v1/alerts", params={"limit": 0})).json()["field"] == "limit"
    no_body = await gateway.post("/v1/alerts/al_nope/ack")
    assert no_body.status_code == 400 and "not valid JSON" in no_body.json()["error"]
    unknown = await gateway.post("/v1/alerts/al_nope/ack", json={"who": "maria"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "who"


async def test_alert_ack_and_resolve(gateway: Gateway) -> None:
    alert, _ = await gateway.notifier.alerts.raise_alert(
        AlertSpec(kind="vehicle.offline", key="offline:v1", severity="warning",
                  title="Vehicle device offline", detail="No position.", vehicle="v1")
    )  # fmt: skip
    acked = await gateway.post(f"/v1/alerts/{alert.id}/ack", json={"by": "maria"})
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged" and acked.json()["acknowledged_by"] == "maria"
    resolved = await gateway.post(
        f"/v1/alerts/{alert.id}/resolve", json={"by": "maria", "resolution": "phone rebooted"}
    )
    body = resolved.json()
    assert body["status"] == "resolved" and body["resolution"] == "phone rebooted"
    assert body["time_to_resolve_s"] >= 0
    assert (await gateway.post(f"/v1/alerts/{alert.id}/ack", json={})).status_code == 409
    listed = await gateway.get("/v1/alerts", params={"status": "resolved"})
    assert [a["id"] for a in listed.json()["alerts"]] == [alert.id]
    assert (await gateway.get("/v1/alerts")).json()["alerts"] == []


async def test_webhook_crud(gateway: Gateway) -> None:
    created = await gateway.post(
        "/v1/webhooks", json={"url": "https://oms.example/hook", "events": ["delivery.*"]}
    )
    assert created.status_code == 201
    sub = created.json()
    assert sub["secret"] and sub["events"] == ["delivery.*"]
    got = await gateway.get(f"/v1/webhooks/{sub['id']}")
    assert got.status_code == 200 and "secret" not in got.json()
    patched = await gateway.http.patch(
        f"{gateway.url}/v1/webhooks/{sub['id']}",
        json={"active": False, "rotate_secret": True},
        headers=_auth(),
    )
    assert patched.json()["active"] is False and patched.json()["secret"] != sub["secret"]
    assert len((await gateway.get("/v1/webhooks")).json()["webhooks"]) == 1
    for body in ({"url": "ftp://x.example"}, {"url": "https://u:p@x.example"}, {}):
        bad = await gateway.post("/v1/webhooks", json=body)
        assert bad.status_code == 400 and bad.json()["field"] == "url", body
    bad = await gateway.post("/v1/webhooks", json={"url": "https://x.example", "events": ["a*"]})
    assert bad.status_code == 400 and bad.json()["field"] == "events[0]"
    deleted = await gateway.http.delete(f"{gateway.url}/v1/webhooks/{sub['id']}", headers=_auth())
    assert deleted.status_code == 204
    assert (await gateway.get(f"/v1/webhooks/{sub['id']}")).status_code == 404


async def test_phone_index_points_at_the_latest_delivery(gateway: Gateway) -> None:
    await send_out_for_delivery(gateway)
    assert await gateway.notifier.redis.get(keys.phone_delivery(PHONE)) == b"d1"
    assert any(e["type"] == "notification.sent" for e in await log_events(gateway.notifier.redis))
    assert await gateway.notifier.redis.xlen(EVENTS_STREAM) >= 1
