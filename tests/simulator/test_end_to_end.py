"""``python -m simulator`` against a real gateway: its routes are imported, started, tracked,
its deliveries completed with proofs of delivery, and it prints customer tracking links."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.gateway.conftest import API_KEY, GatewayHandle, gateway_settings, start_gateway

VEHICLES = 3
PREFIX = "sim-e2e-"
RUN_ID = "t1"
# 15 s at 30x is 450 simulated seconds: with seed 1 on a 1.2 km city the first van has left
# its first stop after 262 of them, the others by 442 (the drive is fixed by the seed).
TIME_SCALE = 30
# A van at 30x covers up to 30 x 50 km/h per second of fix time; the jump limit must allow it.
MAX_SPEED_MPS = 600.0


@pytest.fixture
async def gateway(
    redis_url: str, data_dir: Path, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    settings = gateway_settings(redis_url, data_dir, max_speed_mps=MAX_SPEED_MPS)
    gw = await start_gateway(nursery, settings)
    yield gw
    await gw.http.aclose()
    gw.scope.cancel()


async def _events(gateway: GatewayHandle) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = ""
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"after": after} if after else {})}
        page = (await gateway.http.get("/v1/events", params=params)).json()["events"]
        out.extend(page)
        if len(page) < 1000:
            return out
        after = page[-1]["id"]


async def _run_simulator(gateway: GatewayHandle, *extra: str) -> tuple[dict[str, Any], str]:
    result = await trio.run_process(
        [
            sys.executable, "-m", "simulator",
            "--api", gateway.ep.http_url,
            "--ingest", gateway.ep.ingest_url,
            "--api-key", API_KEY,
            "--vehicles", str(VEHICLES),
            "--duration", "15",
            "--time-scale", str(TIME_SCALE),
            "--interval", "0.5",
            "--seed", "1",
            "--city-km", "1.2",
            "--stops-per-route", "4",
            "--id-prefix", PREFIX,
            "--run-id", RUN_ID,
            "--status-interval", "0",
            "--report-json",
            *extra,
        ],
        capture_stdout=True,
        capture_stderr=True,
    )  # fmt: skip
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report, result.stderr.decode()


@pytest.mark.slow
async def test_simulated_routes_are_started_and_tracked(gateway: GatewayHandle) -> None:
    report, stderr = await _run_simulator(gateway, "--fail-rate", "0.5")

    vans = [f"{PREFIX}{i:03d}" for i in range(1, VEHICLES + 1)]
    routes = (await gateway.http.get("/v1/routes", params={"status": "started"})).json()["routes"]
    assert sorted(r["vehicle"] for r in routes) == vans
    assert sorted(r["external_id"] for r in routes) == [f"{v}-{RUN_ID}-1" for v in vans]
    assert report["dispatch"]["routes_imported"] == VEHICLES
    assert report["dispatch"]["routes_started"] == VEHICLES
    assert f"routes (run {RUN_ID}): 3 imported, 3 started" in stderr
    assert f"/v1/deliveries/ID: {PREFIX}001-{RUN_ID}-1-S01-1," in stderr

    events = await _events(gateway)
    types = Counter(e["type"] for e in events)
    assert types["route.started"] == VEHICLES
    deliveries = sum(r["deliveries"] for r in routes)
    assert types["delivery.out_for_delivery"] == deliveries
    # The gateway tracked the vans along their routes from their real fixes.
    arriving = {e.get("vehicle") for e in events if e["type"] == "stop.arriving"}
    assert arriving == set(vans)
    assert types["stop.arrived"] >= 1
    # Whatever the driver app reported got through and moved the deliveries on.
    d = report["dispatch"]
    assert d["status_errors"] == 0 and d["dropped"] == 0
    assert types["delivery.delivered"] == d["delivered"]
    assert types["delivery.failed"] == d["failed"]
    assert d["delivered"] + d["failed"] >= 1

    # Delivered ones were completed by the van's driver app with a proof of delivery.
    assert d["pod_uploaded"] == d["delivered"] >= 1 and d["pod_conflicts"] == 0
    assert types["delivery.pod"] == d["pod_uploaded"]
    assert types["delivery.pod_flagged"] == 0  # geo-stamped at the stop
    delivered = (await gateway.http.get("/v1/deliveries", params={"status": "delivered"})).json()
    assert delivered["total"] == d["delivered"]
    for item in delivered["deliveries"]:
        resp = await gateway.http.get(f"/v1/deliveries/{item['id']}/pod")
        assert resp.status_code == 200, resp.text
        pod = resp.json()
        assert sorted(f["kind"] for f in pod["files"]) == ["photo", "signature"]
        assert {f["type"] for f in pod["files"]} == {"png"}
        assert pod["by"] == item["external_id"].split(f"-{RUN_ID}-")[0]  # its device token
        assert pod["recipient_name"] and pod["lat"] is not None
        photo = next(f for f in pod["files"] if f["kind"] == "photo")
        got = await gateway.http.get(f"/v1/deliveries/{item['id']}/pod/{photo['sha256']}")
        assert got.status_code == 200 and got.content.startswith(b"\x89PNG\r\n\x1a\n")

    # A demo user is shown three customer tracking links.
    lines = [ln for ln in stderr.splitlines() if ln.startswith("tracking links: ")]
    assert len(lines) == 1, stderr
    urls = lines[0].removeprefix("tracking links: ").split(" ")
    assert len(urls) == 3 and all(re.match(r"https?://[^ ]+/t/[^ /]+$", u) for u in urls)
    page = await gateway.http.get("/v1/track/" + urls[0].rsplit("/t/", 1)[1])
    assert page.status_code == 200, page.text


@pytest.mark.slow
async def test_no_routes_leaves_the_routes_api_alone(gateway: GatewayHandle) -> None:
    report, stderr = await _run_simulator(gateway, "--no-routes", "--duration", "3")

    assert report["sent"] > 0
    assert "dispatch" not in report or report["dispatch"] == {}
    assert (await gateway.http.get("/v1/routes")).json()["routes"] == []
    assert "routes (run" not in stderr


@pytest.mark.slow
async def test_a_new_run_closes_the_routes_an_earlier_run_left_started(
    gateway: GatewayHandle,
) -> None:
    first, _ = await _run_simulator(gateway, "--duration", "2", "--run-id", "a")
    second, stderr = await _run_simulator(gateway, "--duration", "2", "--run-id", "b")

    assert first["dispatch"]["routes_started"] == VEHICLES
    assert second["dispatch"]["routes_started"] == VEHICLES
    assert second["dispatch"]["stale_routes_closed"] == VEHICLES
    assert f"{PREFIX}001: closed earlier route {PREFIX}001-a-1" in stderr
    routes = (await gateway.http.get("/v1/routes")).json()["routes"]
    status = {r["external_id"]: r["status"] for r in routes}
    vans = [f"{PREFIX}{i:03d}" for i in range(1, VEHICLES + 1)]
    assert status == {
        **{f"{v}-a-1": "finished" for v in vans},
        **{f"{v}-b-1": "started" for v in vans},
    }
    left = (await gateway.http.get("/v1/deliveries", params={"q": "-a-1-"})).json()
    assert left["total"] > 0
    assert {d["status"] for d in left["deliveries"]} <= {"cancelled", "delivered", "failed"}
