"""KPIs and the CSV export against a real gateway and Redis."""

from __future__ import annotations

import csv
import io
import time

from tests.gateway.conftest import GatewayHandle
from tests.gateway.customer.test_links import two_stop_route


async def test_kpis_and_csv_follow_the_deliveries(gateway: GatewayHandle) -> None:
    await gateway.register("van-link")
    now = time.time()
    assert (await gateway.http.put("/v1/routes", json=two_stop_route(now - 60))).is_success
    assert (await gateway.http.post("/v1/routes/LINK-R/start")).is_success
    r = await gateway.http.post("/v1/deliveries/D-S1/status", json={"status": "delivered"})
    assert r.status_code == 200, r.text
    r = await gateway.http.post(
        "/v1/deliveries/D-S2/status",
        json={"status": "failed", "reason": "nobody_home", "note": "no answer"},
    )
    assert r.status_code == 200, r.text

    k = (await gateway.http.get("/v1/kpis", params={"since": now - 3600})).json()
    assert (k["delivered"], k["failed"]) == (1, 1)
    assert k["on_time_rate"] == 1.0 and k["failure_rate"] == 0.5
    assert k["avg_delivery_time_s"] is not None and k["avg_delivery_time_s"] >= 0
    assert (await gateway.http.get("/v1/kpis", params={"since": "soon"})).status_code == 400

    r = await gateway.http.get("/v1/deliveries.csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["external_id"], x["status"], x["reason"]) for x in rows] == [
        ("D-S1", "delivered", ""),
        ("D-S2", "failed", "nobody_home"),
    ]
    failed = list(csv.DictReader(io.StringIO(
        (await gateway.http.get("/v1/deliveries.csv", params={"status": "failed"})).text
    )))  # fmt: skip
    assert [x["external_id"] for x in failed] == ["D-S2"]
