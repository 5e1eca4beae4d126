"""The customer tracking page in real headless Chromium: the van approaches, the ETA moves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from tests.browser import PHONE, TileServer, in_browser, screenshot
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    start_gateway,
    wait_tracked,
)
from tests.gateway.customer.test_links import issue, two_stop_route
from tests.gateway.live.test_routes import M_PER_DEG_LAT, STOP


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


async def van_on_its_way(
    gateway: GatewayHandle, window_start: float, south_m: list[float], ts0: float
) -> str:
    """van-link on the started two-stop route LINK-R (windows an hour from ``window_start``),
    driven north at 10 m/s through ``south_m`` (metres south of the first stop) from ``ts0``,
    a fix every 10 s; its device's token."""
    device = await gateway.register("van-link")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(window_start))).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    await wait_tracked(gateway, "van-link")
    await drive(gateway, device, 1, south_m, ts0, 10.0)
    return device


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
        # The map: the address and the van, each named; no TILE_URL, so no tiles, a plain
        # background.
        assert page.is_visible(".leaflet-marker-icon.home")
        assert page.is_visible(".leaflet-marker-icon.van")
        labels = page.inner_text("#map")
        assert "Your address" in labels and "Marie's van" in labels
        assert page.locator(".leaflet-tile").count() == 0
        first = page.evaluate("window.trackState")
        # The van comes much closer: the page follows without a reload.
        trio.from_thread.run(drive, gateway, device, 4, [1500.0, 1400.0, 1300.0], now - 30, 10.0)
        page.wait_for_function(
            f"window.trackState.vehicle.lat > {first['vehicle']['lat'] + 0.005}", timeout=15_000
        )
        later = page.evaluate("window.trackState")
        assert later["eta"] < first["eta"]
        assert page.evaluate("document.body.dataset.vehicle") == "shown"
        # The way the van came since the page showed it.
        assert int(page.evaluate("document.body.dataset.trail")) >= 2
        # Nothing of the other customer on the route reaches this page.
        assert "bob" not in page.content().lower()

    await trio.to_thread.run_sync(in_browser("customer_page", check))


async def test_customer_page_on_a_phone_draws_street_tiles(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    with TileServer() as tiles:
        gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, tile_url=tiles.url))
        now = time.time()
        await van_on_its_way(gw, now - 600, [1500, 1400, 1300, 1200], now - 200)
        link = await issue(gw, "D-S1")

        def check(page: Any) -> None:
            page.goto(f"{gw.ep.http_url}/t/{link}")
            page.wait_for_function("window.trackState && window.trackState.vehicle", timeout=10_000)
            page.wait_for_selector("img.leaflet-tile-loaded", timeout=10_000)
            assert page.is_visible(".leaflet-marker-icon.home")
            assert page.is_visible(".leaflet-marker-icon.van")
            # The page fits the phone: nothing wider than the screen, the map in view.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            box = page.locator("#map").bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"]
            page.wait_for_timeout(300)
            screenshot(page, "customer_page_phone_tiles")

        await trio.to_thread.run_sync(in_browser("customer_phone", check, PHONE))
        assert tiles.requested
        await gw.http.aclose()
        gw.scope.cancel()


async def test_an_open_page_empties_when_its_link_is_revoked(gateway: GatewayHandle) -> None:
    device = await gateway.register("van-link")
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(now - 600))).is_success
    link = await issue(gateway, "D-S1")
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    await wait_tracked(gateway, "van-link")
    await drive(gateway, device, 1, [3000, 2900, 2800], now - 200, 10.0)

    async def revoke() -> None:
        r = await gateway.http.post("/v1/deliveries/D-S1/link/revoke")
        assert r.status_code == 200, r.text

    def check(page: Any) -> None:
        page.goto(f"{gateway.ep.http_url}/t/{link}")
        page.wait_for_function("window.trackState && window.trackState.vehicle", timeout=10_000)
        assert page.inner_text("#address") == "S1 avenue"
        trio.from_thread.run(revoke)
        page.wait_for_function("window.trackState.status === 'invalid'", timeout=5_000)
        assert "invalid or has expired" in page.inner_text("#status")
        assert page.evaluate("document.body.dataset.vehicle") == "hidden"
        assert page.inner_text("#address") == "" and page.inner_text("#eta") == ""
        # It does not keep knocking on a link that no longer opens.
        page.wait_for_timeout(3_500)
        assert page.inner_text("#conn") == ""

    await trio.to_thread.run_sync(in_browser("customer_revoked", check))


async def test_a_bad_link_shows_a_plain_refusal(gateway: GatewayHandle) -> None:
    def check(page: Any) -> None:
        response = page.goto(f"{gateway.ep.http_url}/t/not-a-real-token")
        assert response.status == 403
        assert "invalid or has expired" in page.inner_text("body")

    await trio.to_thread.run_sync(in_browser("customer_bad_link", check))


async def test_customer_page_follows_a_simulated_van(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    # The simulator drives 10x faster than real time: its vans go 10x over the usual limit.
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, max_speed_mps=600.0))
    proc = await trio.lowlevel.open_process(
        [
            sys.executable, "-m", "simulator",
            "--api", gw.ep.http_url, "--ingest", gw.ep.ingest_url, "--api-key", API_KEY,
            "--vehicles", "1", "--duration", "60", "--time-scale", "10", "--interval", "0.5",
            "--seed", "9", "--city-km", "2", "--stops-per-route", "4",
            "--id-prefix", "page-", "--status-interval", "0", "--fail-rate", "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        err = b""
        with trio.fail_after(30):
            while b"tracking links:" not in err or not err.split(b"tracking links:")[1].count(
                b"\n"
            ):
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, err.decode()
                err += chunk
        # The first link is the van's first stop: the one it drives to first. A customer sees
        # the van only on its way to them, so this city and seed give that way 1.3 km (about
        # 15 s at 10x), not a few hundred metres.
        link = err.split(b"tracking links:")[1].split()[0].decode()

        def check(page: Any) -> None:
            page.goto(link)
            page.wait_for_function("window.trackState && window.trackState.vehicle", timeout=20_000)
            first = page.evaluate("window.trackState")
            page.wait_for_function(
                f"""window.trackState.vehicle &&
                    (window.trackState.vehicle.lat !== {first["vehicle"]["lat"]} ||
                     window.trackState.vehicle.lon !== {first["vehicle"]["lon"]}) &&
                    window.trackState.eta !== {first["eta"] or "null"}""",
                timeout=20_000,
            )
            assert page.inner_text("#eta").startswith("Expected between")
            assert page.inner_text("#status") in ("Out for delivery", "Arriving soon")

        await trio.to_thread.run_sync(in_browser("customer_page_simulated", check))
    finally:
        proc.kill()
        await proc.wait()
        if proc.stderr is not None:
            await proc.stderr.aclose()
        await gw.http.aclose()
        gw.scope.cancel()
