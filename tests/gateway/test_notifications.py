"""Customer notifications end to end: a started route texts and mails its customers
through the local Twilio-compatible and SMTP capture servers the gateway starts."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from .conftest import GatewayHandle
from .test_links import two_stop_route


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
