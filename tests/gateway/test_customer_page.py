"""The customer tracking page in real headless Chromium: the van approaches, the ETA moves."""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from trio_websocket import open_websocket_url

from ..browser import in_browser
from .conftest import GatewayHandle, wait_tracked
from .test_links import issue, two_stop_route
from .test_live_routes import M_PER_DEG_LAT, STOP


async def drive(gateway: GatewayHandle, token: str, first_seq: int, south_m: list[float],
                ts0: float, speed: float) -> None:  # fmt: skip
    fixes = [
        {"seq": first_seq + i, "ts": ts0 + 10 * i, "lat": STOP[0] - m / M_PER_DEG_LAT,
         "lon": STOP[1], "speed": speed}
        for i, m in enumerate(south_m)
    ]  # fmt: skip
    async with open_websocket_url(f"{gateway.ep.ingest_url}?token={token}") as ws:
        await ws.send_message(json.dumps(fixes))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < fixes[-1]["seq"]:
                pass


async def test_customer_page_shows_the_van_coming_and_the_eta(gateway: GatewayHandle) -> None:
    device = await gateway.register("van-link")
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(now - 600))).is_success
    link = await issue(gateway, "D-S1")
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    await wait_tracked(gateway, "van-link")
    await drive(gateway, device, 1, [3000, 2900, 2800], now - 200, 10.0)
    url = f"{gateway.ep.http_url}/t/{link}"

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_function("window.trackState && window.trackState.vehicle", timeout=10_000)
        assert page.inner_text("#status") == "Out for delivery"
        assert "Marie is on the way" in page.inner_text("#driver")
        eta_text = page.inner_text("#eta")
        assert eta_text.startswith("Expected between")
        first = page.evaluate("window.trackState")
        # The van comes much closer: the page follows without a reload.
        trio.from_thread.run(drive, gateway, device, 4, [1500, 1400, 1300], now - 30, 10.0)
        page.wait_for_function(
            f"window.trackState.vehicle.lat > {first['vehicle']['lat'] + 0.005}", timeout=15_000
        )
        later = page.evaluate("window.trackState")
        assert later["eta"] < first["eta"]
        assert page.evaluate("document.body.dataset.vehicle") == "shown"
        # Nothing of the other customer on the route reaches this page.
        assert "bob" not in page.content().lower()

    await trio.to_thread.run_sync(in_browser("customer_page", check))


async def test_a_bad_link_shows_a_plain_refusal(gateway: GatewayHandle) -> None:
    def check(page: Any) -> None:
        response = page.goto(f"{gateway.ep.http_url}/t/not-a-real-token")
        assert response.status == 403
        assert "invalid or has expired" in page.inner_text("body")

    await trio.to_thread.run_sync(in_browser("customer_bad_link", check))
