"""A short fleet run against real registration and ingest servers."""

import time

import trio
from trio_websocket import serve_websocket

from simulator.fleet import FleetConfig, run_fleet
from simulator.stats import FleetReport

from .servers import API_KEY, IngestServer, RoutesApi, make_api, start_api


async def test_fleet_registers_drives_and_reports(nursery: trio.Nursery) -> None:
    ingest = IngestServer(reject={4: "implausible_jump"})
    ingest.add("van-002", "old-token")  # left from an earlier run: its token gets rotated
    api = await start_api(nursery, make_api(ingest))
    listener = await nursery.start(serve_websocket, ingest.handler, "127.0.0.1", 0, None)
    config = FleetConfig(
        api=api,
        ingest=f"ws://127.0.0.1:{listener.port}/v1/ingest",
        api_key=API_KEY,
        vehicles=4,
        interval=0.05,
        time_scale=20.0,
        duration=1.5,
        batch=2,
        disconnect_rate=0.02,
        city_km=2.0,
        drain=1.0,
        status_interval=0.5,
    )
    lines: list[tuple[FleetReport, float]] = []
    started = time.time()
    with trio.fail_after(15):
        report = await run_fleet(config, on_status=lambda r, rate: lines.append((r, rate)))

    assert report.devices == 4 and report.connects >= 4
    assert set(ingest.devices) == {"van-001", "van-002", "van-003", "van-004"}
    assert ingest.devices["van-002"].token != "old-token"
    assert report.sent > 4 * 15  # about 30 fixes a van in 1.5 s at 20 Hz
    assert report.rejected == {"implausible_jump": 4}  # seq 4 of every device
    # Every position is accounted for exactly once.
    total = report.acked + report.rejected_total + report.backlog_dropped + report.unacked
    assert total == report.submitted
    assert report.unacked == 0  # the drain waited for the last acks
    assert len(lines) >= 2 and lines[-1][1] > 0
    for device in ingest.devices.values():
        seqs = list(device.stored)
        assert seqs == sorted(seqs) and len(seqs) > 10
        stamps = [p["ts"] for p in device.stored.values()]
        assert stamps == sorted(stamps)
        assert started - 1 <= stamps[0] and stamps[-1] <= time.time()  # wall clock, never ahead
    assert sum(len(d.stored) for d in ingest.devices.values()) == report.acked - report.duplicates


async def test_stop_during_registration_returns_an_empty_report() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = trio.Event()
    config = FleetConfig(api=f"http://127.0.0.1:{port}", vehicles=2, register_timeout=30)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_set_later, stop)
        with trio.fail_after(5):
            report = await run_fleet(config, stop=stop)
    assert report.devices == 0


async def _set_later(event: trio.Event) -> None:
    await trio.sleep(0.2)
    event.set()


async def _fleet_servers(nursery: trio.Nursery) -> tuple[str, str, RoutesApi]:
    ingest = IngestServer()
    routes = RoutesApi()
    api = await start_api(nursery, make_api(ingest, routes))
    listener = await nursery.start(serve_websocket, ingest.handler, "127.0.0.1", 0, None)
    return api, f"ws://127.0.0.1:{listener.port}/v1/ingest", routes


async def test_fleet_imports_routes_and_reports_stops_like_a_driver_app(
    nursery: trio.Nursery,
) -> None:
    api, ingest_url, routes = await _fleet_servers(nursery)
    config = FleetConfig(
        api=api,
        ingest=ingest_url,
        api_key=API_KEY,
        vehicles=3,
        interval=0.05,
        # 3 s are an hour: with seed 1 each van has planned its second route by 2,850 s.
        time_scale=1200.0,
        duration=3.0,
        city_km=1.2,
        stops_per_route=3,
        fail_rate=0.3,
        run_id="t7",
        drain=1.0,
        status_interval=0,
    )
    notices: list[str] = []
    with trio.fail_after(20):
        report = await run_fleet(config, on_notice=notices.append)

    vans = ["van-001", "van-002", "van-003"]
    first_put = routes.seen("PUT", "/v1/routes")[0][2]
    assert [r["external_id"] for r in first_put["routes"]] == [f"{v}-t7-1" for v in vans]
    assert notices[0].startswith("routes (run t7): 3 imported, 3 started, ")
    assert "/v1/deliveries/ID: van-001-t7-1-S01-1, van-001-t7-1-S0" in notices[0]
    d = report.dispatch
    # Every van finished its first route and was given its second one, started cleanly.
    assert {ext for ext in routes.routes} >= {f"{v}-t7-{n}" for v in vans for n in (1, 2)}
    assert all(routes.routes[f"{v}-t7-1"]["status"] == "finished" for v in vans)
    assert d["routes_started"] == d["routes_imported"] == len(routes.routes)
    assert d["stale_routes_closed"] == d["start_failures"] == d["status_errors"] == 0
    links = [p for _, p, _ in routes.seen("POST", "/v1/deliveries/") if p.endswith("/link")]
    shown = ["van-001-t7-1-S01-1", *(p.split("/")[3] for p in links[1:])]
    assert len(links) == 3 and links[0] == f"/v1/deliveries/{shown[0]}/link"
    assert notices[1] == "tracking links: " + " ".join(f"http://customer/t/tok-{x}" for x in shown)
    statuses = [body["status"] for _, p, body in routes.seen("POST", "/v1/deliveries/")
                if p.endswith("/status")]  # fmt: skip
    # Delivered ones were completed with a proof only, failed ones with a status report.
    assert statuses.count("failed") == len(statuses) == d["failed"] > 0
    assert len(routes.pods) == d["delivered"] == d["pod_uploaded"] > 0
    stops = {f"{r['external_id']}-{s['external_id']}": s for r in
             (x["payload"] for x in routes.routes.values()) for s in r["stops"]}  # fmt: skip
    for delivery, pod in routes.pods.items():
        assert pod["by"] == delivery.split("-t7-")[0]  # the van's own device token
        assert [kind for kind, _ in pod["files"]] == ["photo", "signature"]
        where = stops[delivery.rsplit("-", 1)[0]]["location"]
        lat, lon = float(pod["form"]["lat"]), float(pod["form"]["lon"])
        assert abs(lat - where["lat"]) < 2e-4 and abs(lon - where["lon"]) < 3e-4  # ~20 m
    closed = [x for x in routes.deliveries.values() if x["status"] in ("delivered", "failed")]
    assert len(closed) == d["delivered"] + d["failed"]
    # Reports of a van follow its stops in order, the next route only after the last of them.
    for v in vans:
        mine = [(m, p) for m, p, _ in routes.calls if f"/{v}-t7-" in p or (
            m == "PUT" and p == "/v1/routes")]  # fmt: skip
        start2 = mine.index(("POST", f"/v1/routes/{v}-t7-2/start"))
        first = [p.split("/")[3] for m, p in mine[:start2]
                 if p.startswith("/v1/deliveries/") and not p.endswith("/link")]  # fmt: skip
        assert first == sorted(first) and len(first) == len(
            routes.routes[f"{v}-t7-1"]["deliveries"]
        )
    assert report.acked > 0


async def test_no_routes_makes_no_route_calls(nursery: trio.Nursery) -> None:
    api, ingest_url, routes = await _fleet_servers(nursery)
    config = FleetConfig(api=api, ingest=ingest_url, api_key=API_KEY, vehicles=2, interval=0.05,
                         time_scale=600.0, duration=1.0, city_km=1.2, stops_per_route=2,
                         drain=0.5, routes=False)  # fmt: skip
    with trio.fail_after(15):
        report = await run_fleet(config)
    assert report.sent > 0 and report.dispatch == {}
    assert routes.calls == []
