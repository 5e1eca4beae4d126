"""Route import, start and stop reports against a real HTTP server answering like the gateway."""

import pytest
import trio

from simulator.city import City
from simulator.dispatch import (
    STALE_NOTE,
    VAN_QUEUE,
    DispatchClient,
    Dispatcher,
    DispatchError,
    ImportRoute,
    ReportStop,
)
from simulator.fleet import DEFAULT_CENTER
from simulator.manifest import RouteManifest, build_manifest
from simulator.vehicle import Van, VanConfig

from .servers import API_KEY, IngestServer, RoutesApi, make_api, start_api

CITY = City.generate(DEFAULT_CENTER, seed=2, size_m=2000)


def _manifest(n: int, run_id: str = "r1") -> RouteManifest:
    van = Van(CITY, VanConfig(stops_per_route=3), seed=n, epoch=1_760_000_000.0)
    assert van.upcoming is not None
    return build_manifest(van.upcoming, vehicle=f"van-{n:03d}", run_id=run_id,
                          wall_time=van.wall_time, time_scale=1.0,
                          timezone="Europe/Amsterdam", seed=n)  # fmt: skip


async def _server(nursery: trio.Nursery, vans: int) -> tuple[str, RoutesApi]:
    ingest = IngestServer()
    for n in range(1, vans + 1):
        ingest.add(f"van-{n:03d}", f"token-{n}")
    routes = RoutesApi()
    return await start_api(nursery, make_api(ingest, routes)), routes


async def test_routes_are_imported_in_batches_then_started(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 5)
    manifests = [_manifest(n) for n in range(1, 6)]
    async with DispatchClient(url, API_KEY) as client:
        dispatcher = Dispatcher(client, batch=2)
        await dispatcher.import_routes(manifests)
    puts = api.seen("PUT", "/v1/routes")
    assert [len(body["routes"]) for _, _, body in puts] == [2, 2, 1]
    assert [r["external_id"] for _, _, b in puts for r in b["routes"]] == [
        f"van-00{n}-r1-1" for n in range(1, 6)
    ]
    starts = sorted(path for _, path, _ in api.seen("POST", "/v1/routes/"))
    assert starts == [f"/v1/routes/van-00{n}-r1-1/start" for n in range(1, 6)]
    assert dispatcher.stats.routes_imported == dispatcher.stats.routes_started == 5
    assert dispatcher.started == {m.external_id for m in manifests}
    assert all(d["status"] == "out_for_delivery" for d in api.deliveries.values())


async def test_deliveries_are_completed_with_a_proof_in_order_with_retries(
    nursery: trio.Nursery,
) -> None:
    url, api = await _server(nursery, 1)
    api.fail["POST /v1/deliveries"] = [503, 503]
    m = _manifest(1)
    async with DispatchClient(url, API_KEY, retry_base_s=0.01) as client:
        dispatcher = Dispatcher(client, fail_rate=0.0, device_token=lambda v: "token-1")
        dispatcher.add_van("van-001")
        dispatcher.submit("van-001", ImportRoute(m))
        for k, stop in enumerate(m.stops):
            dispatcher.submit(
                "van-001", ReportStop(m.external_id, stop, (52.1 + k, 4.5), 1_760_000_100.0 + k)
            )
        dispatcher.close()
        with trio.fail_after(10):
            await dispatcher.run()
    calls = api.seen("POST", "/v1/deliveries/")
    assert len(calls) == len(m.delivery_ids) + 2  # two answered 503 and retried
    assert [p.split("/")[3] for _, p, _ in calls[2:]] == m.delivery_ids
    assert all(p.endswith("/pod") for _, p, _ in calls)  # no separate status call
    assert dispatcher.stats.retries == 2 and dispatcher.stats.delivered == len(m.delivery_ids)
    assert dispatcher.stats.pod_uploaded == len(m.delivery_ids)
    assert sorted(api.pods) == sorted(m.delivery_ids)
    names = {d: s.recipient for s in m.stops for d in s.deliveries}
    photos = set()
    for k, stop in enumerate(m.stops):
        for d in stop.deliveries:
            pod = api.pods[d]
            assert pod["by"] == "van-001"  # the device token, not the agent key
            form = pod["form"]
            assert form["recipient_name"] in (names[d], "neighbour") and names[d]
            assert form["notes"]
            assert (float(form["lat"]), float(form["lon"])) == (52.1 + k, 4.5)
            assert float(form["ts"]) == 1_760_000_100.0 + k
            kinds = [kind for kind, _ in pod["files"]]
            assert kinds == ["photo", "signature"]
            assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for _, data in pod["files"])
            photos.add(pod["files"][0][1])
    assert len(photos) == len(m.delivery_ids)  # each delivery its own photo
    assert api.routes[m.external_id]["status"] == "finished"
    assert not api.active


async def test_a_proof_for_a_closed_delivery_is_counted_not_retried(
    nursery: trio.Nursery,
) -> None:
    url, api = await _server(nursery, 1)
    m = _manifest(1)
    first = m.stops[0]
    async with DispatchClient(url, API_KEY, retry_base_s=0.01) as client:
        dispatcher = Dispatcher(client, fail_rate=0.0, device_token=lambda v: "token-1")
        await dispatcher.import_routes([m])
        for d in first.deliveries:
            api.deliveries[d]["status"] = "cancelled"
        dispatcher.add_van("van-001")
        dispatcher.submit("van-001", ReportStop(m.external_id, first))
        dispatcher.close()
        await dispatcher.run()
    stats = dispatcher.stats
    assert len(api.seen("POST", "/v1/deliveries/")) == len(first.deliveries)
    assert stats.pod_conflicts == len(first.deliveries)
    assert stats.retries == stats.pod_uploaded == stats.delivered == stats.status_errors == 0


async def test_a_proof_refused_for_another_vehicle_is_an_error(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 2)
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        # van-002's token: the gateway lets a device complete only its own route's deliveries.
        dispatcher = Dispatcher(client, fail_rate=0.0, device_token=lambda v: "token-2")
        await dispatcher.import_routes([m])
        dispatcher.add_van("van-001")
        dispatcher.submit("van-001", ReportStop(m.external_id, m.stops[0]))
        dispatcher.close()
        await dispatcher.run()
    assert dispatcher.stats.status_errors == len(m.stops[0].deliveries)
    assert dispatcher.stats.pod_uploaded == 0 and not api.pods


async def test_tracking_links_are_issued_with_the_agent_key(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 1)
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        await Dispatcher(client).import_routes([m])
        link = await client.issue_link(m.delivery_ids[0])
        with pytest.raises(DispatchError) as missing:
            await client.issue_link("nope")
    assert link == f"http://customer/t/tok-{m.delivery_ids[0]}"
    assert missing.value.status == 404
    assert len(api.seen("POST", "/v1/deliveries/nope/link")) == 1


async def test_failures_carry_a_reason_and_a_note(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 1)
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        dispatcher = Dispatcher(client, fail_rate=1.0)
        await dispatcher.import_routes([m])
        dispatcher.add_van("van-001")
        for stop in m.stops:
            dispatcher.submit("van-001", ReportStop(m.external_id, stop))
        dispatcher.close()
        await dispatcher.run()
    assert dispatcher.stats.failed == len(m.delivery_ids) and dispatcher.stats.delivered == 0
    for d in m.delivery_ids:
        assert api.deliveries[d]["status"] == "failed"
        assert api.deliveries[d]["reason"] and api.deliveries[d]["note"]


async def test_an_earlier_simulator_route_is_closed_to_start_the_new_one(
    nursery: trio.Nursery,
) -> None:
    url, api = await _server(nursery, 1)
    api.add_started("van-001", "van-001-r0-1", deliveries=2)
    notices: list[str] = []
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        dispatcher = Dispatcher(client, notice=notices.append)
        await dispatcher.import_routes([m])
    assert dispatcher.stats.stale_routes_closed == 1 and dispatcher.stats.routes_started == 1
    assert api.routes["van-001-r0-1"]["status"] == "finished"
    old = [d for d in api.deliveries.values() if d["route"] == "van-001-r0-1"]
    assert [(d["status"], d["note"]) for d in old] == [("cancelled", STALE_NOTE)] * 2
    assert api.active == {"van-001": m.external_id}
    assert notices == [
        f"van-001: closed earlier route van-001-r0-1 (2 open deliveries cancelled) "
        f"to start {m.external_id}"
    ]


async def test_a_route_of_someone_else_is_left_alone(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 1)
    api.add_started("van-001", "OMS-77", deliveries=1)
    notices: list[str] = []
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        dispatcher = Dispatcher(client, notice=notices.append)
        await dispatcher.import_routes([m])
        dispatcher.add_van("van-001")
        dispatcher.submit("van-001", ReportStop(m.external_id, m.stops[0]))
        dispatcher.close()
        await dispatcher.run()
    assert dispatcher.stats.start_failures == 1 and dispatcher.stats.routes_started == 0
    assert api.active == {"van-001": "OMS-77"}
    assert api.deliveries["OMS-77-D0"]["status"] == "out_for_delivery"
    assert len(notices) == 1 and "OMS-77" in notices[0] and "untracked" in notices[0]
    # Stops of a route that never started are not reported.
    assert not api.seen("POST", "/v1/deliveries/")


async def test_refusals_are_reported_not_retried(nursery: trio.Nursery) -> None:
    url, api = await _server(nursery, 1)
    notices: list[str] = []
    unknown = _manifest(2)  # van-002 is not registered: 422
    async with DispatchClient(url, API_KEY, retry_base_s=0.01) as client:
        dispatcher = Dispatcher(client, notice=notices.append)
        await dispatcher.import_routes([unknown])
        with pytest.raises(DispatchError) as refused:
            await client.set_status("nope", "delivered")
    assert dispatcher.stats.import_failures == 1 and dispatcher.stats.routes_imported == 0
    assert len(api.seen("PUT", "/v1/routes")) == 1
    assert notices == [
        "routes not imported: import of 1 routes: HTTP 422: unknown vehicle 'van-002' "
        "(routes[0].vehicle)"
    ]
    assert (refused.value.status, refused.value.field) == (404, "id")
    assert dispatcher.stats.retries == 0


async def test_an_unreachable_gateway_is_retried_then_given_up() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with DispatchClient(f"http://127.0.0.1:{port}", API_KEY, attempts=3,
                              retry_base_s=0.01) as client:  # fmt: skip
        with pytest.raises(DispatchError) as failure:
            await client.start("R1")
    assert failure.value.status == 0 and "no answer" in str(failure.value)
    assert client.stats.retries == 2


async def test_a_full_queue_drops_and_counts(nursery: trio.Nursery) -> None:
    url, _ = await _server(nursery, 1)
    m = _manifest(1)
    async with DispatchClient(url, API_KEY) as client:
        dispatcher = Dispatcher(client)
        dispatcher.add_van("van-001")
        for _ in range(VAN_QUEUE + 44):  # nothing works the queue off yet
            dispatcher.submit("van-001", ReportStop(m.external_id, m.stops[0]))
        dispatcher.close()
        dispatcher.submit("van-001", ReportStop(m.external_id, m.stops[0]))
    assert dispatcher.stats.dropped == 44 + 1
