"""The simulator's vans on the HTTP protocols phone apps use (the Traccar Client's OsmAnd JSON
body, OwnTracks' HTTP mode; each with the send-until-success loop), and mixed with WebSocket
vans, against a real gateway."""

from __future__ import annotations

import pytest
import trio

from simulator.fleet import FleetConfig, run_fleet
from tests.gateway.conftest import API_KEY, GatewayHandle


@pytest.mark.parametrize("protocol", ["osmand", "owntracks-http", "mix"])
async def test_a_fleet_of_traccar_clients_reports_through_the_device_http_server(
    gateway: GatewayHandle, protocol: str
) -> None:
    config = FleetConfig(
        api=gateway.ep.http_url, ingest=gateway.ep.ingest_url,
        device_http=gateway.ep.device_http_url, protocol=protocol, api_key=API_KEY,
        vehicles=6, interval=0.1, time_scale=10.0, duration=2.5, city_km=2.0, drain=3.0,
        routes=False, id_prefix=f"sim-{protocol}-", outlier_rate=0.05,
    )  # fmt: skip
    with trio.fail_after(30):
        report = await run_fleet(config)
    assert report.devices == 6 and report.sent > 6 * 10
    assert report.unacked == 0 and not report.errors  # every fix answered, none jammed
    total = report.acked + sum(report.rejected.values()) + report.backlog_dropped
    assert total == report.submitted
    vehicles = (await gateway.http.get("/v1/vehicles")).json()["vehicles"]
    ours = [v for v in vehicles if v["vehicle"].startswith(f"sim-{protocol}-")]
    assert len(ours) == 6
    metrics = await gateway.metrics()
    protos = {"osmand": ["osmand"], "owntracks-http": ["owntracks"], "mix": ["osmand", "ws"]}
    for proto in protos[protocol]:
        assert f'proto="{proto}"' in metrics, proto
