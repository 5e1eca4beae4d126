"""Re-import, start, assign and status rules as pure functions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.dispatch.plan import (
    Changes,
    Conflict,
    assign_route,
    change_status,
    merge_import,
    start_route,
)
from gateway.dispatch.records import DeliveryRecord, RouteRecord, Window, delivery_id, route_id
from gateway.dispatch.validate import parse_import
from tests.gateway.dispatch.test_validate import T0, batch, delivery_payload, route_payload


class State:
    """Records as Redis would hold them after applying each change."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteRecord] = {}
        self.deliveries: dict[str, DeliveryRecord] = {}
        self.vehroutes: dict[str, str | None] = {}

    def apply(self, ch: Changes) -> Changes:
        self.routes.update(ch.routes)
        self.deliveries.update(ch.deliveries)
        self.vehroutes.update(ch.vehroutes)
        return ch

    def imp(self, *routes: dict[str, Any], now: float = T0) -> Changes:
        return self.apply(
            merge_import(
                parse_import(batch(*routes), now), self.routes, self.deliveries,
                self.vehroutes, now,
            )
        )  # fmt: skip

    def start(self, ext: str, now: float = T0) -> Changes:
        r = self.routes[route_id(ext)]
        return self.apply(start_route(r, self.deliveries, self.vehroutes, now))

    def status(self, ext: str, status: str, **kw: Any) -> Changes:
        d = self.deliveries[delivery_id(ext)]
        r = self.routes.get(d.route or "")
        veh = self.vehroutes.get(r.vehicle) if r else None
        return self.apply(change_status(d, r, self.deliveries, veh, status, T0, **kw))

    def d(self, ext: str) -> DeliveryRecord:
        return self.deliveries[delivery_id(ext)]


def types(ch: Changes) -> list[str]:
    return [e.type for e in ch.events]


def test_first_import_creates_everything() -> None:
    s = State()
    ch = s.imp(route_payload("R1"))
    assert types(ch) == ["delivery.created", "delivery.created", "route.imported"]
    assert ch.vehroutes == {}
    assert all(e.route == route_id("R1") and e.vehicle == "van-1" for e in ch.events)


def test_unchanged_reimport_is_a_no_op() -> None:
    s = State()
    s.imp(route_payload("R1"))
    ch = s.imp(route_payload("R1"), now=T0 + 60)
    assert (ch.routes, ch.deliveries, ch.events) == ({}, {}, [])


def test_delivered_stop_cannot_change_but_its_recipient_can() -> None:
    s = State()
    s.imp(route_payload("R1"))
    s.start("R1")
    s.status("R1-D0", "delivered")
    moved = route_payload("R1")
    moved["stops"][0]["address"] = "elsewhere"
    with pytest.raises(Conflict) as info:
        s.imp(moved)
    assert info.value.field == "routes[0].stops[0].deliveries[0]"
    renamed = route_payload("R1")
    renamed["stops"][0]["deliveries"][0]["notes"] = "fragile"
    ch = s.imp(renamed, now=T0 + 5)
    assert types(ch) == ["delivery.updated"]
    assert s.d("R1-D0").status == "delivered" and s.d("R1-D0").notes == "fragile"
    assert ch.events[0].data["changed"] == ["notes"]


def test_new_delivery_on_a_started_route_goes_out_at_once() -> None:
    s = State()
    s.imp(route_payload("R1"))
    s.start("R1")
    more = route_payload("R1")
    more["stops"][1]["deliveries"].append(delivery_payload("R1-D9"))
    ch = s.imp(more, now=T0 + 5)
    assert types(ch) == ["delivery.created", "delivery.out_for_delivery", "route.updated"]
    assert s.d("R1-D9").status == "out_for_delivery"


def test_changed_stop_on_a_started_route_resets_to_out_for_delivery() -> None:
    s = State()
    s.imp(route_payload("R1"))
    s.start("R1")
    s.status("R1-D0", "arriving")
    p = route_payload("R1")
    p["stops"][0]["location"] = {"lat": 48.86, "lon": 2.36}
    ch = s.imp(p, now=T0 + 5)
    assert s.d("R1-D0").status == "out_for_delivery"
    [upd] = [e for e in ch.events if e.type == "delivery.updated"]
    assert upd.data["previous"] == "arriving" and "location" in upd.data["changed"]


def test_finished_route_with_new_work_is_planned_again() -> None:
    s = State()
    s.imp(route_payload("R1", n_stops=1))
    s.start("R1")
    ch = s.status("R1-D0", "failed", reason="no_access")
    assert types(ch) == ["delivery.failed", "route.finished"]
    assert s.routes[route_id("R1")].status == "finished" and s.vehroutes["van-1"] is None
    p = route_payload("R1", n_stops=1)
    p["stops"][0]["deliveries"].append(delivery_payload("R1-D7"))
    s.imp(p, now=T0 + 5)
    r = s.routes[route_id("R1")]
    assert r.status == "planned" and r.started is None
    s.start("R1", now=T0 + 10)
    assert s.d("R1-D7").status == "out_for_delivery" and s.d("R1-D0").status == "failed"


def test_start_sends_scheduled_and_rescheduled_deliveries_out() -> None:
    s = State()
    s.imp(route_payload("R1", n_stops=3))
    s.status("R1-D2", "cancelled")
    ch = s.start("R1")
    assert types(ch) == ["route.started", "delivery.out_for_delivery", "delivery.out_for_delivery"]
    assert ch.vehroutes == {"van-1": route_id("R1")}
    assert s.d("R1-D2").status == "cancelled"
    with pytest.raises(Conflict):
        s.start("R1")


def test_a_vehicle_runs_one_route_at_a_time() -> None:
    s = State()
    s.imp(route_payload("R1"), route_payload("R2"))
    s.start("R1")
    with pytest.raises(Conflict) as info:
        s.start("R2")
    assert info.value.field == "vehicle" and route_id("R1") in info.value.message
    # Reassigning a started route onto a busy vehicle is refused, by import or by assign.
    s.imp(route_payload("R3", vehicle="van-3"))
    s.start("R3")
    with pytest.raises(Conflict) as info:
        s.imp(route_payload("R1", vehicle="van-3"))
    assert info.value.field == "routes[0].vehicle"
    with pytest.raises(Conflict):
        assign_route(s.routes[route_id("R1")], "van-3", None, s.vehroutes, T0)
    ch = s.apply(assign_route(s.routes[route_id("R1")], "van-4", None, s.vehroutes, T0))
    assert ch.vehroutes == {"van-1": None, "van-4": route_id("R1")}


def test_assign_without_change_emits_nothing_and_finished_routes_stay_put() -> None:
    s = State()
    s.imp(route_payload("R1", n_stops=1))
    r = s.routes[route_id("R1")]
    assert assign_route(r, "van-1", r.driver, s.vehroutes, T0).events == []
    s.start("R1")
    s.status("R1-D0", "delivered")
    with pytest.raises(Conflict):
        assign_route(s.routes[route_id("R1")], "van-2", None, s.vehroutes, T0)


def test_the_route_finishes_only_when_nothing_is_left_on_the_road() -> None:
    s = State()
    s.imp(route_payload("R1", n_stops=2))
    s.start("R1")
    assert types(s.status("R1-D0", "delivered")) == ["delivery.delivered"]
    assert types(s.status("R1-D1", "cancelled")) == ["delivery.cancelled", "route.finished"]
    # A delivery rescheduled later does not reopen the finished route.
    assert s.routes[route_id("R1")].status == "finished"


def test_rescheduled_takes_the_new_window_and_clears_the_reason() -> None:
    s = State()
    s.imp(route_payload("R1", n_stops=2))
    s.start("R1")
    s.status("R1-D0", "failed", reason="refused", note="wrong item")
    assert (s.d("R1-D0").reason, s.d("R1-D0").note) == ("refused", "wrong item")
    with pytest.raises(Conflict):
        s.status("R1-D0", "rescheduled")
    ch = s.status("R1-D0", "rescheduled", window=Window(T0 + 86400, T0 + 90000))
    assert s.d("R1-D0").window == Window(T0 + 86400, T0 + 90000)
    assert s.d("R1-D0").reason is None
    assert ch.events[0].data["window"] == {"start": T0 + 86400, "end": T0 + 90000}


def test_moving_a_delivery_detaches_it_from_its_old_route() -> None:
    s = State()
    s.imp(route_payload("R1"))
    r2 = route_payload("R2", n_stops=1)
    r2["stops"][0]["deliveries"].append(delivery_payload("R1-D1"))
    ch = s.imp(r2)
    assert s.d("R1-D1").route == route_id("R2")
    old = s.routes[route_id("R1")]
    assert old.delivery_ids() == [delivery_id("R1-D0")]
    [upd] = [e for e in ch.events if e.route == route_id("R1")]
    assert upd.type == "route.updated" and upd.data["moved_out"] == [delivery_id("R1-D1")]
    # Moving within one batch (both routes re-imported) cancels nothing.
    s2 = State()
    s2.imp(route_payload("R1"), route_payload("R2", n_stops=1))
    r1 = route_payload("R1", n_stops=1)
    ch = s2.imp(r1, r2)
    assert "delivery.cancelled" not in types(ch)
    assert s2.d("R1-D1").route == route_id("R2") and s2.d("R1-D1").status == "scheduled"


def test_records_round_trip_through_json() -> None:
    s = State()
    s.imp(route_payload("R1", path=[[48.8, 2.3], [48.9, 2.4]]))
    r = s.routes[route_id("R1")]
    assert msgspec.json.decode(msgspec.json.encode(r), type=RouteRecord) == r
    d = s.d("R1-D0")
    assert msgspec.json.decode(msgspec.json.encode(d), type=DeliveryRecord) == d
