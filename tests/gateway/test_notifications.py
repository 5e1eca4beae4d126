"""Customer notifications end to end: a started route texts and mails its customers
through the local Twilio-compatible and SMTP capture servers the gateway starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.config import load_settings
from tests.gateway.conftest import GatewayHandle, gateway_settings, start_gateway, wait_metric
from tests.gateway.customer.test_links import two_stop_route


async def wait_notifications(gw: GatewayHandle, delivery: str, n: int) -> list[dict[str, Any]]:
    with trio.fail_after(15):
        while True:
            r = await gw.http.get("/v1/notifications", params={"delivery": delivery})
            found = r.json()["notifications"]
            if len([x for x in found if x.get("status") in ("sent", "delivered")]) >= n:
                return list(found)
            await trio.sleep(0.1)


async def test_out_for_delivery_reaches_the_customer_once(gateway: GatewayHandle) -> None:
    await gateway.register("van-link")
    now = time.time()
    body = two_stop_route(now)
    for stop in body["routes"][0]["stops"]:
        stop["deliveries"][0]["recipient"]["channels"] = ["sms", "email"]
    assert (await gateway.http.put("/v1/routes", json=body)).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    d1 = (await gateway.http.get("/v1/deliveries/D-S1")).json()["id"]
    sent = await wait_notifications(gateway, d1, 2)
    assert sorted(x["channel"] for x in sent) == ["email", "sms"]
    # The second customer's messages may still be on their way.
    await wait_notifications(
        gateway, (await gateway.http.get("/v1/deliveries/D-S2")).json()["id"], 2
    )
    assert all(x["trigger"] == "out_for_delivery" and x["provider_id"] for x in sent)
    captured = (await gateway.http.get("/v1/capture/messages")).json()
    texts = [m["body"] for m in captured["sms"] if m["to"] == "+33612345678"]
    assert len(texts) == 2  # both customers share the test phone number
    mails = [m for m in captured["email"] if m["to"] == ["ada@example.com"]]
    assert len(mails) == 1 and "/t/" in (mails[0]["text"] or "")
    assert len(captured["email"]) == 2
    link = next(w for w in texts[-1].split() if "/t/" in w)
    async with httpx.AsyncClient() as customer:
        page = await customer.get(link)
    assert page.status_code == 200
    # Starting again changes nothing and sends nothing twice.
    await gateway.http.post("/v1/routes/LINK-R/start")
    await trio.sleep(1.0)
    again = (await gateway.http.get("/v1/notifications", params={"delivery": d1})).json()
    assert len([x for x in again["notifications"] if x["channel"] == "sms"]) == 1
    assert len((await gateway.http.get("/v1/capture/messages")).json()["sms"]) == 2
    events = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
    assert any(e["type"] == "notification.sent" and e["delivery"] == d1 for e in events)


def test_capture_is_off_unless_asked_for() -> None:
    """A production gateway never sends customer texts into a local sink by default."""
    assert load_settings(env={}).notify_capture is False
    assert load_settings(env={"NOTIFY_CAPTURE": "true"}).notify_capture is True


async def test_without_a_provider_nothing_is_sent_and_it_says_so(
    redis_url: str, data_dir: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, notify_capture=False))
    assert (await gw.http.get("/healthz")).json()["notify"] == {
        "sms": "not_configured",
        "email": "not_configured",
    }
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "TWILIO_ACCOUNT_SID" in warned and "SMTP_HOST" in warned
    await gw.register("van-link")
    body = two_stop_route(time.time())
    for stop in body["routes"][0]["stops"]:
        stop["deliveries"][0]["recipient"]["channels"] = ["sms", "email"]
    assert (await gw.http.put("/v1/routes", json=body)).is_success
    assert (await gw.http.post("/v1/routes/LINK-R/start")).is_success
    # Both customers' out-for-delivery message on both channels: counted, not sent.
    await wait_metric(gw.http, 'notify_messages_not_configured_total{channel="sms"}', 2)
    await wait_metric(gw.http, 'notify_messages_not_configured_total{channel="email"}', 2)
    d1 = (await gw.http.get("/v1/deliveries/D-S1")).json()["id"]
    found = (await gw.http.get("/v1/notifications", params={"delivery": d1})).json()
    assert found["notifications"] == []
    assert (await gw.http.get("/v1/capture/messages")).status_code == 404
    await gw.http.aclose()
    gw.scope.cancel()


async def test_the_test_gateway_captures(gateway: GatewayHandle) -> None:
    assert (await gateway.http.get("/healthz")).json()["notify"] == {
        "sms": "capture",
        "email": "capture",
    }
