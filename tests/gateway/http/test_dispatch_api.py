"""Routes and deliveries API against a real gateway and Redis."""

from __future__ import annotations

import json
from typing import Any

import coredis
import pytest

from gateway.dispatch.records import delivery_id, route_id
from gateway.dispatch.store import ROUTES_ACTIVE, delivery_key, vehroute_key
from tests.gateway.conftest import GatewayHandle
from tests.gateway.dispatch.test_validate import T0, batch, delivery_payload, route_payload


async def put_routes(gw: GatewayHandle, *routes: dict[str, Any]) -> Any:
    return await gw.http.put("/v1/routes", json=batch(*routes))


async def events(gw: GatewayHandle, etype: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": "1000", **({"type": etype} if etype else {})}
    return list((await gw.http.get("/v1/events", params=params)).json()["events"])


async def redis_keys(gw: GatewayHandle) -> set[str]:
    async with coredis.Redis.from_url(gw.ep.redis_url, decode_responses=True) as r:
        return set(await r.keys("*"))


async def test_import_then_read_routes_and_deliveries(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    r = await put_routes(gateway, route_payload("R1"))
    assert r.status_code == 200, r.text
    body = r.json()
    rid = route_id("R1")
    assert body["routes"] == [{"external_id": "R1", "id": rid}]
    assert (body["imported"], body["deliveries_created"]) == (1, 2)

    route = (await gateway.http.get(f"/v1/routes/{rid}")).json()
    assert route["status"] == "planned" and route["vehicle"] == "van-1"
    assert [s["external_id"] for s in route["stops"]] == ["R1-S0", "R1-S1"]
    by_ext = (await gateway.http.get("/v1/routes/R1")).json()
    assert by_ext == route
    listed = (await gateway.http.get("/v1/routes")).json()["routes"]
    assert [(x["id"], x["stops"], x["deliveries"]) for x in listed] == [(rid, 2, 2)]

    did = delivery_id("R1-D1")
    d = (await gateway.http.get(f"/v1/deliveries/{did}")).json()
    assert d["status"] == "scheduled" and d["route"] == rid
    assert d["stop"] == route["stops"][1]["id"] and d["window"]["start"] == T0 + 3600
    assert d["recipient"]["phone"] == "+33612345678"
    assert (await gateway.http.get("/v1/deliveries/R1-D1")).json() == d

    assert (await gateway.http.get("/v1/routes/nope")).status_code == 404
    assert (await gateway.http.get("/v1/deliveries/nope")).status_code == 404


async def test_delivery_record_in_redis_has_the_notifier_shape(gateway: GatewayHandle) -> None:
    from notify.deliveries import RedisDeliveryLookup

    await gateway.register("van-1")
    p = route_payload("R1")
    p["stops"][0]["deliveries"][0].update(temp_min_c=2, temp_max_c=8)
    assert (await put_routes(gateway, p)).status_code == 200
    did = delivery_id("R1-D0")
    async with coredis.Redis.from_url(gateway.ep.redis_url) as r:
        blob = await r.get(delivery_key(did))
        assert blob is not None
        raw = json.loads(blob)
        assert {
            "id", "external_id", "route", "stop", "status", "address", "window", "brand",
            "kind", "recipient", "notes", "temp_min_c", "temp_max_c",
        } <= set(raw)  # fmt: skip
        assert raw["recipient"] == {
            "name": "Customer R1-D0",
            "phone": "+33612345678",
            "email": "ada@example.com",
            "language": "fr",
            "timezone": "Europe/Paris",
            "channels": ["sms", "email"],
        }
        assert (raw["temp_min_c"], raw["temp_max_c"], raw["kind"]) == (2, 8, "delivery")
        d = await RedisDeliveryLookup(r).get(did)
    assert d is not None and d.route == route_id("R1") and d.brand == "acme"
    assert d.window is not None and d.window.start == T0 + 3600


async def test_bad_input_names_the_field(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    p = route_payload("R1")
    p["stops"][1]["window"] = {"start": T0 + 10, "end": T0}
    r = await put_routes(gateway, p)
    assert r.status_code == 422 and r.json()["field"] == "routes[0].stops[1].window"
    r = await put_routes(gateway, route_payload("R1"), route_payload("R2", vehicle="ghost"))
    assert r.status_code == 422 and r.json()["field"] == "routes[1].vehicle"
    assert "ghost" in r.json()["error"]
    r = await gateway.http.put("/v1/routes", content=b"[1, 2")
    assert r.status_code == 400 and "error" in r.json()
    p = route_payload("R1")
    p["stops"][0]["deliveries"][0]["recipient"]["phone"] = "12345"
    r = await put_routes(gateway, p)
    assert r.status_code == 400
    assert r.json()["field"] == "routes[0].stops[0].deliveries[0].recipient.phone"


async def test_a_batch_with_one_bad_route_writes_nothing(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    before = await redis_keys(gateway)
    bad = route_payload("R3")
    bad["stops"][1]["location"] = None
    for routes in (
        (route_payload("R1"), route_payload("R2"), bad),
        (route_payload("R1"), route_payload("R2", vehicle="van-9")),
    ):
        r = await put_routes(gateway, *routes)
        assert r.status_code in (400, 422), r.text
        assert await redis_keys(gateway) == before
        assert (await gateway.http.get("/v1/routes")).json()["routes"] == []
        assert (await gateway.http.get("/v1/deliveries")).json()["deliveries"] == []
        assert (await gateway.http.get("/v1/routes/R1")).status_code == 404
    assert not [e for e in await events(gateway) if e["type"].startswith(("route", "delivery"))]


async def test_reimport_updates_in_place(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    await gateway.register("van-2")
    assert (await put_routes(gateway, route_payload("R1", n_stops=3))).status_code == 200
    did0, did1, did2 = (delivery_id(f"R1-D{i}") for i in range(3))
    r = await gateway.http.post(f"/v1/deliveries/{did0}/status", json={"status": "cancelled"})
    assert r.status_code == 200, r.text

    # Identical batch: nothing changes, no events, same ids, no duplicates.
    n_events = len(await events(gateway))
    r = await put_routes(gateway, route_payload("R1", n_stops=3))
    assert r.json()["events"] == 0 and len(await events(gateway)) == n_events
    assert (await gateway.http.get(f"/v1/deliveries/{did0}")).json()["status"] == "cancelled"
    ds = (await gateway.http.get("/v1/deliveries")).json()["deliveries"]
    assert sorted(d["id"] for d in ds) == sorted([did0, did1, did2])

    # New recipient name: updated in place, status kept. New window for stop 1: status reset.
    # Stop 2 left out: its delivery leaves the route and is cancelled.
    p = route_payload("R1", n_stops=2, vehicle="van-2")
    p["stops"][0]["deliveries"][0]["recipient"]["name"] = "New Name"
    p["stops"][1]["window"] = {"start": T0 + 7200, "end": T0 + 9000}
    await gateway.http.post(f"/v1/deliveries/{did1}/status", json={"status": "cancelled"})
    n_events = len(await events(gateway))
    r = await put_routes(gateway, p)
    assert r.status_code == 200 and r.json()["imported"] == 0 and r.json()["updated"] == 1
    d0 = (await gateway.http.get(f"/v1/deliveries/{did0}")).json()
    assert d0["status"] == "cancelled" and d0["recipient"]["name"] == "New Name"
    d1 = (await gateway.http.get(f"/v1/deliveries/{did1}")).json()
    assert d1["status"] == "scheduled" and d1["window"]["start"] == T0 + 7200
    d2 = (await gateway.http.get(f"/v1/deliveries/{did2}")).json()
    assert d2["status"] == "cancelled" and d2["reason"] == "removed_from_route"
    assert d2["route"] is None
    route = (await gateway.http.get("/v1/routes/R1")).json()
    assert route["vehicle"] == "van-2" and len(route["stops"]) == 2
    on_route = (await gateway.http.get("/v1/deliveries", params={"route": "R1"})).json()
    assert sorted(d["id"] for d in on_route["deliveries"]) == sorted([did0, did1])
    types = [e["type"] for e in await events(gateway)][n_events:]
    assert sorted(types) == sorted(
        ["delivery.updated", "delivery.updated", "delivery.cancelled", "route.updated"]
    )


async def test_a_delivery_moves_between_routes(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    await gateway.register("van-2")
    assert (await put_routes(gateway, route_payload("R1"))).status_code == 200
    r2 = route_payload("R2", vehicle="van-2", n_stops=1)
    r2["stops"][0]["deliveries"].append(delivery_payload("R1-D1"))
    assert (await put_routes(gateway, r2)).status_code == 200
    moved = (await gateway.http.get("/v1/deliveries/R1-D1")).json()
    assert moved["route"] == route_id("R2") and moved["status"] == "scheduled"
    r1 = (await gateway.http.get("/v1/routes/R1")).json()
    assert [s["deliveries"] for s in r1["stops"]] == [[delivery_id("R1-D0")], []]
    on_r1 = (await gateway.http.get("/v1/deliveries", params={"route": "R1"})).json()
    assert [d["external_id"] for d in on_r1["deliveries"]] == ["R1-D0"]


async def test_lifecycle_over_the_api_with_events(gateway: GatewayHandle) -> None:
    await gateway.register("van-1")
    await put_routes(gateway, route_payload("R1"))
    rid, d0, d1 = route_id("R1"), delivery_id("R1-D0"), delivery_id("R1-D1")

    async def status(did: str, **body: Any) -> Any:
        return await gateway.http.post(f"/v1/deliveries/{did}/status", json=body)

    r = await status(d0, status="delivered")
    assert r.status_code == 409
    assert r.json() | {"error": ""} == {
        "error": "", "field": "status", "from": "scheduled", "to": "delivered"
    }  # fmt: skip
    assert (await status(d0, status="teleported")).json()["field"] == "status"

    r = await gateway.http.post(f"/v1/routes/{rid}/start")
    assert r.status_code == 200 and r.json()["route"]["status"] == "started"
    assert (await gateway.http.post(f"/v1/routes/{rid}/start")).status_code == 409
    for did in (d0, d1):
        d = (await gateway.http.get(f"/v1/deliveries/{did}")).json()
        assert d["status"] == "out_for_delivery"

    assert (await status(d0, status="arriving")).status_code == 200
    r = await status(d0, status="delivered", note="left with the concierge")
    assert r.status_code == 200 and r.json()["delivery"]["note"] == "left with the concierge"

    r = await status(d1, status="failed")
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = await status(d1, status="failed", reason="nobody_home", note="3rd floor")
    assert r.status_code == 200 and r.json()["delivery"]["reason"] == "nobody_home"
    route = (await gateway.http.get(f"/v1/routes/{rid}")).json()
    assert route["status"] == "finished"

    r = await status(d1, status="rescheduled")
    assert r.status_code == 409 and r.json()["field"] == "window"
    r = await status(d1, status="rescheduled", window={"start": T0 + 86400, "end": T0 + 90000})
    assert r.status_code == 200 and r.json()["delivery"]["window"]["start"] == T0 + 86400

    evs = [e for e in await events(gateway) if e["type"].startswith(("route", "delivery"))]
    assert [(e["type"], e["delivery"]) for e in evs] == [
        ("delivery.created", d0),
        ("delivery.created", d1),
        ("route.imported", None),
        ("route.started", None),
        ("delivery.out_for_delivery", d0),
        ("delivery.out_for_delivery", d1),
        ("delivery.arriving", d0),
        ("delivery.delivered", d0),
        ("delivery.failed", d1),
        ("route.finished", None),
        ("delivery.rescheduled", d1),
    ]
    assert all(e["route"] == rid and e["vehicle"] == "van-1" for e in evs)
    failed = next(e for e in evs if e["type"] == "delivery.failed")
    assert failed["data"]["reason"] == "nobody_home" and failed["data"]["note"] == "3rd floor"
    assert failed["stop"] == (await gateway.http.get(f"/v1/routes/{rid}")).json()["stops"][1]["id"]
    assert 'gateway_events_total{type="delivery.failed"} 1\n' in await gateway.metrics()


async def test_assign_and_active_route_index(gateway: GatewayHandle) -> None:
    for v in ("van-1", "van-2", "van-3"):
        await gateway.register(v)
    await put_routes(gateway, route_payload("R1"), route_payload("R2", vehicle="van-2"))
    rid1, rid2 = route_id("R1"), route_id("R2")
    r = await gateway.http.post(f"/v1/routes/{rid1}/assign", json={"vehicle": "ghost"})
    assert r.status_code == 422 and r.json()["field"] == "vehicle"
    r = await gateway.http.post(f"/v1/routes/{rid1}/assign", json={"driver": {"phone": "1"}})
    assert r.status_code == 400 and r.json()["field"] == "driver.phone"
    r = await gateway.http.post(
        f"/v1/routes/{rid1}/assign", json={"driver": {"phone": "+33600000001"}}
    )
    assert r.status_code == 400 and r.json()["field"] == "driver.name"
    assert (await gateway.http.post(f"/v1/routes/{rid1}/assign", json={})).status_code == 400

    assert (await gateway.http.post(f"/v1/routes/{rid1}/start")).status_code == 200
    async with coredis.Redis.from_url(gateway.ep.redis_url, decode_responses=True) as redis:
        assert await redis.get(vehroute_key("van-1")) == rid1
        # A started route moves its vehicle's index entry with it.
        r = await gateway.http.post(
            f"/v1/routes/{rid1}/assign",
            json={"vehicle": "van-3", "driver": {"name": "Ada Lovelace"}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["route"]["driver"] == {"name": "Ada Lovelace", "phone": None}
        assert await redis.get(vehroute_key("van-1")) is None
        assert await redis.get(vehroute_key("van-3")) == rid1
        # Two started routes cannot share a vehicle.
        r = await gateway.http.post(f"/v1/routes/{rid2}/assign", json={"vehicle": "van-3"})
        assert r.status_code == 200  # R2 is only planned
        r = await gateway.http.post(f"/v1/routes/{rid2}/start")
        assert r.status_code == 409 and r.json()["field"] == "vehicle"
        assert await redis.smembers(ROUTES_ACTIVE) == {rid1}
    assert [e["data"]["previous_vehicle"] for e in await events(gateway, "route.assigned")] == [
        "van-1",
        "van-2",
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "r2-d1"}, ["R2-D1"]),
        ({"q": "customer r1"}, ["R1-D0", "R1-D1"]),
        ({"q": "+33 6 99"}, ["R2-D0"]),
        ({"q": "avenue foch"}, ["R2-D0"]),
        ({"route": "R2"}, ["R2-D0", "R2-D1"]),
        ({"route": "R2", "status": "cancelled"}, ["R2-D1"]),
        ({"status": "scheduled", "limit": "2"}, ["R1-D0", "R1-D1"]),
        ({"q": "nothing like it"}, []),
    ],
)
async def test_search_deliveries(
    gateway: GatewayHandle, params: dict[str, str], expected: list[str]
) -> None:
    await gateway.register("van-1")
    r2 = route_payload("R2")
    r2["stops"][0]["address"] = "12 Avenue Foch, Paris"
    r2["stops"][0]["deliveries"][0]["recipient"]["phone"] = "+33699000000"
    r2["stops"][1]["window"] = {"start": T0 + 9000, "end": T0 + 9900}
    assert (await put_routes(gateway, route_payload("R1"), r2)).status_code == 200
    cancel = {"status": "cancelled"}
    await gateway.http.post(f"/v1/deliveries/{delivery_id('R2-D1')}/status", json=cancel)
    r = await gateway.http.get("/v1/deliveries", params=params)
    assert r.status_code == 200, r.text
    assert sorted(d["external_id"] for d in r.json()["deliveries"]) == expected


async def test_search_parameter_errors(gateway: GatewayHandle) -> None:
    r = await gateway.http.get("/v1/deliveries", params={"status": "lost"})
    assert r.status_code == 400 and r.json()["field"] == "status"
    r = await gateway.http.get("/v1/deliveries", params={"limit": "0"})
    assert r.status_code == 400 and r.json()["field"] == "limit"
    r = await gateway.http.get("/v1/deliveries", params={"route": "nope"})
    assert r.status_code == 404


async def test_dispatch_endpoints_need_the_key(gateway: GatewayHandle) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.ep.http_url) as anonymous:
        assert (await anonymous.get("/v1/routes")).status_code == 401
        assert (await anonymous.put("/v1/routes", json=batch())).status_code == 401
        assert (await anonymous.get("/v1/deliveries")).status_code == 401
        r = await anonymous.post("/v1/deliveries/x/status", json={"status": "delivered"})
        assert r.status_code == 401


async def test_openapi_describes_the_dispatch_endpoints(gateway: GatewayHandle) -> None:
    spec = (await gateway.http.get("/openapi.json")).json()
    methods = {p: set(ops) for p, ops in spec["paths"].items()}
    assert methods["/v1/routes"] == {"put", "get"}
    for path in ("/v1/routes/{id}", "/v1/deliveries", "/v1/deliveries/{id}"):
        assert methods[path] == {"get"}
    for path in ("/v1/routes/{id}/assign", "/v1/routes/{id}/start", "/v1/deliveries/{id}/status"):
        assert methods[path] == {"post"}
    ours = ("/v1/routes", "/v1/routes/{id}", "/v1/routes/{id}/assign", "/v1/routes/{id}/start",
            "/v1/deliveries", "/v1/deliveries/{id}", "/v1/deliveries/{id}/status")  # fmt: skip
    assert all(spec["paths"][p] for p in ours)
    schemas = spec["components"]["schemas"]
    assert "failed" in schemas["StatusChange"]["properties"]["status"]["enum"]
    assert schemas["RouteImport"]["properties"]["routes"]["items"] == {
        "$ref": "#/components/schemas/RouteInput"
    }
