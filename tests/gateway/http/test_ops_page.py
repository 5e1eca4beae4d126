"""The ops page in real headless Chromium, against a real gateway and Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from gateway.demo import DemoFleet, run_simulator
from tests.browser import PHONE, TileServer, in_browser, screenshot
from tests.gateway.conftest import (
    API_KEY,
    GatewayHandle,
    gateway_settings,
    handshake,
    start_gateway,
)


async def send(gateway: GatewayHandle, token: str, positions: list[dict[str, Any]]) -> None:
    hdrs = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(gateway.ep.ingest_url, extra_headers=hdrs) as ws:
        await ws.send_message(json.dumps(positions))
        with trio.fail_after(5):
            while json.loads(await ws.get_message())["seq"] < positions[-1]["seq"]:
                pass


T0 = time.time() - 50  # fix times count from here, so later batches never go back in time


def fixes(
    first_seq: int, n: int, lat: float, step: float, speed: float, heading: float | None = None
) -> list[dict[str, Any]]:
    return [
        {"seq": first_seq + i, "ts": T0 + first_seq + i, "lat": lat + i * step, "lon": 4.9,
         "speed": speed, **({} if heading is None else {"heading": heading})}
        for i in range(n)
    ]  # fmt: skip


async def fail_delivery(gateway: GatewayHandle, delivery: str) -> None:
    r = await gateway.http.post(
        f"/v1/deliveries/{delivery}/status", json={"status": "failed", "reason": "nobody_home"}
    )
    assert r.status_code == 200, r.text


def marker_color(page: Any, vehicle: str) -> str:
    """The fill of a van's marker on the map."""
    return str(page.get_attribute(f".vanmark[data-id='{vehicle}'] circle", "fill"))


def legend_color(page: Any, status: str) -> str:
    return str(page.get_attribute(f"#legend li[data-status='{status}'] circle", "fill"))


async def test_ops_page_shows_vehicles_and_live_updates(gateway: GatewayHandle) -> None:
    tok_a = await gateway.register("van-a")
    tok_b = await gateway.register("van-b")
    await send(gateway, tok_a, fixes(1, 3, 52.37, 0.0, 0.0))
    await send(gateway, tok_b, fixes(1, 3, 52.38, 0.0, 0.0))
    url = f"{gateway.ep.http_url}/ops#key={API_KEY}"

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_selector("#conn.on", timeout=10_000)
        page.wait_for_function("document.querySelectorAll('#vehicles li').length === 2")
        assert "stopped" in page.inner_text("li[data-id='van-b']")
        # The key moved from the URL into the browser's storage.
        assert "key=" not in page.url
        # Both vans on the map, coloured as the legend says, with no tiles (TILE_URL unset):
        # the plain background and everything else drawn.
        page.wait_for_selector(".vanmark[data-id='van-b'][data-status='stopped']")
        assert marker_color(page, "van-a") == legend_color(page, "stopped")
        assert page.locator(".leaflet-tile").count() == 0
        trio.from_thread.run(send, gateway, tok_b, fixes(4, 5, 52.3801, 0.0001, 9.0, 0.0))
        page.wait_for_function(
            "document.querySelector(\"li[data-id='van-b']\").textContent.includes('moving')",
            timeout=10_000,
        )
        page.wait_for_selector(".vanmark[data-id='van-b'][data-status='moving']")
        assert marker_color(page, "van-b") == legend_color(page, "moving")
        assert legend_color(page, "moving") != legend_color(page, "stopped")
        # Its heading: an arrow pointing north; the stopped van (no heading) has none.
        assert page.get_attribute(".vanmark[data-id='van-b'] path", "transform") == "rotate(0)"
        assert page.locator(".vanmark[data-id='van-a'] path").count() == 0
        legend = page.inner_text("#legend")
        for words in ("moving", "stopped", "offline", "late risk", "pending", "arriving",
                      "delivered", "failed"):  # fmt: skip
            assert words in legend
        assert "32 km/h" in page.inner_text("li[data-id='van-b']")
        assert "2 vehicles: 1 moving, 0 idling, 1 stopped" in page.inner_text("#counts")
        events = page.inner_text("#events")
        assert "vehicle.online van-a" in events and "vehicle.online van-b" in events

    await trio.to_thread.run_sync(in_browser("ops_page", check))


async def test_ops_map_without_internet_draws_the_vans_on_a_plain_background(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """TILE_URL set (as by default) but its server out of reach: no tile, and the rest drawn."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    unreachable = f"http://127.0.0.1:{closed}/{{z}}/{{x}}/{{y}}.png"
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, tile_url=unreachable))
    await send(gw, await gw.register("van-a"), fixes(1, 3, 52.37, 0.0001, 9.0, 0.0))
    url = f"{gw.ep.http_url}/ops#key={API_KEY}"

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_selector(".vanmark[data-id='van-a'][data-status='moving']", timeout=10_000)
        page.wait_for_selector("img.leaflet-tile", state="attached", timeout=10_000)
        page.wait_for_timeout(500)
        assert page.locator("img.leaflet-tile-loaded").count() == 0
        assert page.is_visible("#legend") and page.is_visible(".vlabel")

    await trio.to_thread.run_sync(in_browser("ops_no_internet", check))
    await gw.http.aclose()
    gw.scope.cancel()


async def test_ops_stream_refuses_a_bad_key(gateway: GatewayHandle) -> None:
    r = await handshake(f"{gateway.ep.http_url}/v1/ops/live?key=wrong", None)
    assert r.status_code == 401


async def test_ops_page_shows_an_alert_arriving_and_resolves_it(gateway: GatewayHandle) -> None:
    from tests.gateway.customer.test_links import two_stop_route

    await gateway.register("van-link")
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(time.time()))).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    url = f"{gateway.ep.http_url}/ops#key={API_KEY}"

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_selector("#conn.on", timeout=10_000)
        assert page.locator("#alerts li").count() == 0
        trio.from_thread.run(fail_delivery, gateway, "D-S1")
        page.wait_for_selector("#alerts li", timeout=10_000)
        assert page.locator("#alerts li").count() == 1
        page.click("#alerts li button[data-action=ack]")
        page.wait_for_selector("#alerts li[data-status=acknowledged]", timeout=5_000)
        page.click("#alerts li button[data-action=resolve]")
        page.wait_for_function("document.querySelectorAll('#alerts li').length === 0")

    await trio.to_thread.run_sync(in_browser("ops_alerts", check))
    resolved = (await gateway.http.get("/v1/alerts", params={"status": "resolved"})).json()
    [alert] = resolved["alerts"]
    assert alert["resolved_by"] == "ops page" and alert["time_to_resolve_s"] >= 0


async def test_ops_page_shows_that_the_simulated_fleet_stopped(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    fleet = DemoFleet(3)
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir), fleet)
    url = f"{gw.ep.http_url}/ops#key={API_KEY}"
    bad_key = "error: cannot register devices: 401 missing or invalid API key"
    exits = [sys.executable, "-c", f"import sys; sys.exit({bad_key!r})"]  # stderr, exit 1

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_selector("#conn.on", timeout=10_000)
        assert not page.is_visible("#fleetbanner")  # running
        trio.from_thread.run(run_simulator, exits, os.environ, fleet)
        page.wait_for_selector("#fleetbanner", state="visible", timeout=10_000)
        assert page.inner_text("#fleetbanner").startswith(
            f"Simulated fleet stopped (exit code 1): {bad_key}."
        )
        page.reload()  # a page opened after it stopped says so too
        page.wait_for_selector("#fleetbanner", state="visible", timeout=10_000)

    await trio.to_thread.run_sync(in_browser("ops_fleet_stopped", check))
    await gw.http.aclose()
    gw.scope.cancel()


async def test_ops_map_shows_routes_numbered_stops_late_vans_and_street_tiles(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    from tests.gateway.customer.test_page import van_on_its_way

    with TileServer() as tiles:
        gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, tile_url=tiles.url))
        now = time.time()
        # The window closes in a few seconds and the van is 3 km out: late risk.
        await van_on_its_way(gw, now - 3590, [3000, 2900, 2800], now - 20)
        url = f"{gw.ep.http_url}/ops#key={API_KEY}"

        def check(page: Any) -> None:
            page.goto(url)
            page.wait_for_selector("#conn.on", timeout=10_000)
            # The route in the legend in its own colour, its stops numbered in order.
            page.wait_for_selector("#legend li[data-route]", timeout=10_000)
            assert "LINK-R" in page.inner_text("#legend")
            for n in (1, 2):
                page.wait_for_selector(f".stopmark[data-n='{n}'][data-state='pending']")
            late = ".vanmark[data-id='van-link'][data-status='late']"
            page.wait_for_selector(late, timeout=10_000)
            assert marker_color(page, "van-link") == legend_color(page, "late")
            assert "late risk" in page.inner_text("li[data-id='van-link']")
            # Picked on the map: its card, with its route, driver and next stops' ETAs.
            page.click(".vanmark[data-id='van-link']")
            page.wait_for_selector("#vancard:not([hidden])")
            card = page.inner_text("#vancard")
            assert "Route LINK-R, driver Marie Curie" in card and "late risk" in card
            page.wait_for_function(
                "document.querySelector('#vancard').textContent.includes('min late')"
            )
            assert "S1 avenue" in page.inner_text("#vancard .nextstops li:first-child")
            # A failed attempt: the stop says so once the routes are read again.
            trio.from_thread.run(fail_delivery, gw, "D-S1")
            page.wait_for_selector(".stopmark[data-n='1'][data-state='failed']", timeout=10_000)
            # Street tiles from TILE_URL, here a local tile server.
            page.wait_for_selector("img.leaflet-tile-loaded", timeout=10_000)
            page.wait_for_timeout(500)
            screenshot(page, "ops_map_tiles")
            page.set_viewport_size(PHONE)
            page.wait_for_timeout(500)
            screenshot(page, "ops_map_phone")

        await trio.to_thread.run_sync(in_browser("ops_map_routes", check))
        assert tiles.requested and all(p.endswith(".png") for p in tiles.requested)
        await gw.http.aclose()
        gw.scope.cancel()


LABELS_JS = """() => {
    const shown = [...document.querySelectorAll('.vlabel')]
        .filter(e => getComputedStyle(e).visibility !== 'hidden');
    const rs = shown.map(e => e.getBoundingClientRect());
    let overlaps = 0;
    for (let i = 0; i < rs.length; i++) for (let j = i + 1; j < rs.length; j++) {
        const [a, b] = [rs[i], rs[j]];
        const apart = a.right <= b.left || b.right <= a.left
            || a.bottom <= b.top || b.bottom <= a.top;
        if (!apart) overlaps++;
    }
    return {labels: shown.length, overlaps,
            vans: document.querySelectorAll('.vanmark').length,
            clusters: document.querySelectorAll('.vancluster').length};
}"""


async def test_ops_map_keeps_a_simulated_fleet_readable(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> None:
    """Fifty vans of the simulator around one depot: clusters and names, never two names on
    top of each other, at the zoom the page picks and closer. (Its screenshot, taken with
    SCREENSHOTS=1, is the README's docs/img/ops.png.)"""
    # The simulator drives 5x faster than real time: its vans go 5x over the usual limit.
    gw = await start_gateway(nursery, gateway_settings(redis_url, data_dir, max_speed_mps=300.0))
    proc = await trio.lowlevel.open_process(
        [
            sys.executable, "-m", "simulator",
            "--api", gw.ep.http_url, "--ingest", gw.ep.ingest_url, "--api-key", API_KEY,
            "--vehicles", "50", "--duration", "120", "--time-scale", "5", "--interval", "1",
            "--seed", "3", "--city-km", "4", "--stops-per-route", "6", "--status-interval", "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"{gw.ep.http_url}/ops#key={API_KEY}"

    def readable(page: Any, min_labels: int = 0) -> None:
        state = page.evaluate(LABELS_JS)
        assert state["overlaps"] == 0, state
        assert state["labels"] >= min_labels and state["vans"] + state["clusters"] >= 2, state

    def check(page: Any) -> None:
        page.goto(url)
        page.wait_for_function("window.opsState && window.opsState.vehicles >= 50", timeout=30_000)
        page.wait_for_selector("#legend li[data-route]", state="attached", timeout=30_000)
        # The vans leave the depot and spread out of their cluster.
        page.wait_for_function("document.querySelectorAll('.vanmark').length >= 8", timeout=60_000)
        page.wait_for_timeout(1_000)
        readable(page, min_labels=3)
        screenshot(page, "ops_fleet_desktop")
        page.evaluate("window.opsMap.map.zoomIn(1, {animate: false})")
        page.wait_for_timeout(1_000)
        readable(page)
        page.set_viewport_size(PHONE)
        page.reload()
        page.wait_for_function("window.opsState && window.opsState.vehicles >= 50", timeout=30_000)
        page.wait_for_selector("#legend li[data-route]", state="attached", timeout=30_000)
        page.wait_for_timeout(1_000)
        readable(page)
        screenshot(page, "ops_fleet_phone")

    try:
        await trio.to_thread.run_sync(in_browser("ops_fleet_end", check))
    finally:
        proc.kill()
        await proc.wait()
        await gw.http.aclose()
        gw.scope.cancel()
