"""Failed attempts: the customer reschedules through the link; claims as agent cases."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from tests.browser import in_browser
from tests.gateway.conftest import GatewayHandle
from tests.gateway.customer.test_links import issue, two_stop_route


async def failed_delivery(gateway: GatewayHandle) -> str:
    await gateway.register("van-link")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    r = await gateway.http.post(
        "/v1/deliveries/D-S1/status", json={"status": "failed", "reason": "nobody_home"}
    )
    assert r.status_code == 200, r.text
    return await issue(gateway, "D-S1")


async def test_customer_picks_a_new_window_after_a_failed_attempt(gateway: GatewayHandle) -> None:
    link = await failed_delivery(gateway)
    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as customer:
        view = (await customer.get(f"/v1/track/{link}")).json()
        assert view["status"] == "failed" and view["reason"] == "nobody_home"
        options = view["reschedule"]
        assert len(options) == 9 and all(o["start"] > time.time() for o in options)
        r = await customer.post(f"/v1/track/{link}/reschedule",
                                json={"window": {"start": 1.0, "end": 2.0}})  # fmt: skip
        assert r.status_code == 422 and r.json()["field"] == "window"  # not on offer
        r = await customer.post(f"/v1/track/{link}/reschedule", json={"window": options[4]})
        assert r.status_code == 200 and r.json()["status"] == "rescheduled"
        assert r.json()["window"] == options[4]
        # Once rescheduled, there is nothing more to choose.
        r = await customer.post(f"/v1/track/{link}/reschedule", json={"window": options[0]})
        assert r.status_code == 409
    d = (await gateway.http.get("/v1/deliveries/D-S1")).json()
    assert d["status"] == "rescheduled" and d["window"] == options[4]


async def test_reschedule_on_the_customer_page(gateway: GatewayHandle) -> None:
    link = await failed_delivery(gateway)

    def check(page: Any) -> None:
        page.goto(f"{gateway.ep.http_url}/t/{link}")
        page.wait_for_selector("#reschedopts button", timeout=10_000)
        assert "nobody home" in page.inner_text("#status")
        page.locator("#reschedopts button").nth(1).click()
        page.wait_for_function("document.body.dataset.status === 'rescheduled'", timeout=5_000)
        assert page.locator("#resched").is_hidden()

    await trio.to_thread.run_sync(in_browser("customer_reschedule", check))


async def test_claims_are_opened_and_resolved(gateway: GatewayHandle) -> None:
    await failed_delivery(gateway)
    r = await gateway.http.post("/v1/deliveries/D-S1/claims",
                                json={"type": "damaged", "description": "box crushed"})  # fmt: skip
    assert r.status_code == 201, r.text
    claim = r.json()
    assert claim["status"] == "open" and claim["type"] == "damaged"
    bad = await gateway.http.post("/v1/deliveries/D-S1/claims", json={"type": "lost-ish"})
    assert bad.status_code == 400 and bad.json()["field"] == "type"
    listed = (await gateway.http.get("/v1/claims", params={"status": "open"})).json()["claims"]
    assert [c["id"] for c in listed] == [claim["id"]]
    resolution = {"resolution": "refund", "note": "refunded 20 EUR"}
    r = await gateway.http.post(f"/v1/claims/{claim['id']}/resolve", json=resolution)
    assert r.json()["status"] == "resolved" and r.json()["time_to_resolve_s"] >= 0
    again = await gateway.http.post(
        f"/v1/claims/{claim['id']}/resolve", json={"resolution": "refund"}
    )
    assert again.status_code == 409
    assert (await gateway.http.get("/v1/claims", params={"status": "open"})).json()["claims"] == []
    evs = (await gateway.http.get("/v1/events", params={"limit": 1000})).json()["events"]
    assert [e["type"] for e in evs if e["type"].startswith("claim.")] == [
        "claim.opened",
        "claim.resolved",
    ]
