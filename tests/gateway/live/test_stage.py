"""The pure live stage on its own: fixes in, event-log records out; no Redis, no trio."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from gateway.dispatch.records import (
    FINISHED,
    STARTED,
    DeliveryRecord,
    Driver,
    Location,
    Recipient,
    RouteRecord,
    StopRecord,
    Window,
)
from gateway.fleet.position import Position
from gateway.live.stage import TrackingStage
from geofence import LocalFrame, TrackerConfig, Zone
from notify.events import Event

EPOCH: Final = 1_700_000_000.0
FRAME: Final = LocalFrame(52.0, 13.0)
VAN: Final = "van-s"
STOP_NORTH_M: Final = (2_000.0, 4_000.0)  # the route's stops, due north of the origin
ROUTE_EVENTS: Final = ("stop.", "delivery.", "vehicle.")


def stop_record(i: int, deliveries: tuple[str, ...]) -> StopRecord:
    lat, lon = FRAME.latlon(0.0, STOP_NORTH_M[i - 1])
    return StopRecord(
        id=f"stop-{i}",
        external_id=f"S{i}",
        kind="delivery",
        location=Location(lat, lon),
        address=f"{i} Nordstrasse",
        window=Window(EPOCH, EPOCH + 7_200.0),
        service_s=120.0,
        planned_arrival=None,
        deliveries=deliveries,
    )


def route_record(status: str = STARTED, vehicle: str = VAN) -> RouteRecord:
    """Two stops: the first serves deliveries d-1 and d-2, the second none."""
    return RouteRecord(
        id="route-1",
        external_id="R1",
        vehicle=vehicle,
        driver=Driver(name="Marie Curie"),
        date="2023-11-14",
        status=status,
        stops=(stop_record(1, ("d-1", "d-2")), stop_record(2, ())),
    )


def delivery(did: str, temp_max_c: float | None = None) -> DeliveryRecord:
    return DeliveryRecord(
        id=did,
        external_id=did.upper(),
        route="route-1",
        stop="stop-1",
        status="out_for_delivery",
        address="1 Nordstrasse",
        window=Window(EPOCH, EPOCH + 7_200.0),
        brand="",
        kind="delivery",
        recipient=Recipient(name="Ada"),
        notes="",
        temp_min_c=None,
        temp_max_c=temp_max_c,
        location=Location(*FRAME.latlon(0.0, STOP_NORTH_M[0])),
    )


def fix(i: int, north_m: float, speed: float = 10.0, **extra: Any) -> Position:
    """Fix number ``i``, at ``EPOCH + 10 i`` s, ``north_m`` north of the origin."""
    lat, lon = FRAME.latlon(0.0, north_m)
    return Position(seq=i + 1, ts=EPOCH + 10.0 * i, lat=lat, lon=lon, speed=speed, **extra)


def drive_to_stop_1() -> list[Position]:
    """From the origin to the first stop at 10 m/s: fixes 0 to 20, the last at the stop."""
    return [fix(i, 100.0 * i) for i in range(21)]


def stand_then_drive_to_stop_2() -> list[Position]:
    """200 s standing at the first stop (fixes 21 to 40), then on to the second."""
    standing = [fix(21 + i, STOP_NORTH_M[0], speed=0.0) for i in range(20)]
    return standing + [fix(41 + i, STOP_NORTH_M[0] + 100.0 * i) for i in range(21)]


def installed(**kw: Any) -> TrackingStage:
    stage = TrackingStage(**kw)
    stage.install(route_record(), [delivery("d-1"), delivery("d-2")], None, None)
    return stage


def of_types(events: list[Event], *types: str) -> list[Event]:
    return [e for e in events if e.type in types]


def route_events_in(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type.startswith(ROUTE_EVENTS)]


def test_driving_to_the_first_stop_gives_arriving_per_delivery_then_arrived() -> None:
    stage = installed()
    events = stage.process([(VAN, drive_to_stop_1())])

    found = of_types(events, "stop.arriving", "delivery.arriving", "stop.arrived")
    assert [(e.type, e.stop, e.delivery) for e in found] == [
        ("stop.arriving", "stop-1", None),
        ("delivery.arriving", "stop-1", "d-1"),
        ("delivery.arriving", "stop-1", "d-2"),
        ("stop.arrived", "stop-1", None),
    ]
    assert all(e.vehicle == VAN and e.route == "route-1" for e in found)
    arriving, arrived = found[1], found[3]
    # Close to the stop in time (the tracker's default: 5 minutes) when announced.
    assert arriving.data["eta"] - arriving.ts <= 300.0
    assert arriving.data["distance_m"] == found[0].data["distance_m"] > 0.0
    assert EPOCH + 100.0 < arrived.ts <= EPOCH + 200.0
    assert set(arrived.data) == {"lat", "lon"}
    assert [e for e in events if e.stop == "stop-2" and "arriv" in e.type] == []
    # The tracker emitted: saved at once, for a process taking the vehicle over.
    assert stage.take_save_now() == {VAN}
    assert stage.take_save_now() == set()
    assert stage.routes[VAN].approach.target is None  # standing at the stop


def test_eta_changes_go_to_each_delivery_of_the_stop_or_to_the_stop_without_any() -> None:
    stage = installed()
    first = stage.process([(VAN, drive_to_stop_1()[:1])])
    changes = of_types(first, "delivery.eta_changed", "stop.eta_changed")
    assert [(e.type, e.stop, e.delivery) for e in changes] == [
        ("delivery.eta_changed", "stop-1", "d-1"),
        ("delivery.eta_changed", "stop-1", "d-2"),
        ("stop.eta_changed", "stop-2", None),
    ]
    assert all(e.data["window_end"] == EPOCH + 7_200.0 for e in changes)
    assert all(e.data["delta_s"] is None for e in changes)  # the first ETA of each


def test_leaving_a_stop_and_reaching_the_next_notes_a_dwell_and_a_leg() -> None:
    stage = installed()
    stage.process([(VAN, drive_to_stop_1())])
    assert stage.take_finished() == []
    events = stage.process([(VAN, stand_then_drive_to_stop_2())])

    assert [e.stop for e in of_types(events, "stop.departed", "stop.arrived")] == [
        "stop-1",
        "stop-2",
    ]
    dwell, leg = stage.take_finished()
    assert (dwell.dwell, dwell.route, dwell.stop, dwell.planned_s) == (True, "route-1", 0, 120.0)
    assert 150.0 <= dwell.actual_s <= 250.0 and dwell.site
    assert (leg.dwell, leg.route, leg.stop) == (False, "route-1", 1)
    assert 150.0 <= leg.actual_s <= 250.0
    assert stage.take_finished() == []


def test_the_stop_the_vehicle_drives_to_is_saved_at_once_when_it_changes() -> None:
    stage = installed()
    fixes = drive_to_stop_1()
    stage.process([(VAN, fixes[:2])])  # ETAs and arriving: events
    stage.take_save_now()
    assert stage.routes[VAN].approach.target is None
    assert stage.process([(VAN, fixes[2:3])]) == []
    assert stage.routes[VAN].approach.target == "stop-1"
    assert stage.take_save_now() == {VAN}  # no event, but other processes' pages read it
    assert stage.process([(VAN, fixes[3:4])]) == []
    assert stage.take_save_now() == set()


def test_a_zone_entered_gives_an_enter_event_for_any_vehicle() -> None:
    stage = installed()
    lat, lon = FRAME.latlon(0.0, 1_000.0)
    stage.apply_zone("yard", Zone.circle("yard", lat, lon, 150.0))
    events = stage.process([("van-other", [fix(i, 100.0 * i) for i in range(13)])])

    zone_events = [e for e in events if e.type.startswith("geofence.")]
    assert [(e.type, e.vehicle, e.data["zone"]) for e in zone_events] == [
        ("geofence.enter", "van-other", "yard"),
        ("geofence.exit", "van-other", "yard"),
    ]
    enter = zone_events[0]
    assert (enter.route, enter.stop, enter.delivery) == (None, None, None)
    assert enter.ts == EPOCH + 90.0  # 900 m north: the first fix within 150 m
    assert route_events_in(events) == []  # no route on that vehicle
    assert stage.take_dirty() == {"van-other"}

    stage.apply_zone("yard", None)
    assert stage.engine.zones() == []


def test_a_route_finished_or_moved_away_gives_no_more_route_events() -> None:
    stage = installed()
    stage.process([(VAN, drive_to_stop_1()[:5])])
    assert stage.drop_route(route_record(status=FINISHED)) is False
    assert VAN not in stage.routes
    assert route_events_in(stage.process([(VAN, drive_to_stop_1()[5:])])) == []

    moved = installed()
    assert moved.drop_route(route_record(vehicle="van-new")) is True  # to be installed there
    assert moved.routes == {}
    assert route_events_in(moved.process([(VAN, drive_to_stop_1())])) == []


def test_a_vehicle_taken_over_carries_on_from_the_state_the_other_process_saved() -> None:
    one, two = installed(), installed()  # two processes: both hold the started route
    fixes = drive_to_stop_1()
    before = one.process([(VAN, fixes[:15])])
    assert len(of_types(before, "delivery.arriving")) == 2
    tracked = one.routes[VAN]
    state, approach = tracked.tracker.export_state(), tracked.approach.export_state()
    assert two.held_state(route_record()) is not None  # nothing heard of the other yet

    two.release(VAN, fixes[14].ts)  # the other process wrote a newer fix
    assert not two.is_current(VAN) and two.held_state(route_record()) is None
    [stale] = two.take_over([(VAN, fixes[15:])])
    assert two.take_over([(VAN, fixes[15:])]) == []  # current again
    assert two.routes[VAN].approach.target is None  # judged afresh so far
    assert two.restore(stale, state, approach) is True
    assert two.routes[VAN].approach.target == "stop-1"  # the other's judgement
    after = two.process([(VAN, fixes[15:])])
    assert of_types(after, "stop.arriving", "delivery.arriving") == []  # not announced again
    assert [e.stop for e in of_types(after, "stop.arrived")] == ["stop-1"]


def test_a_saved_state_of_another_route_is_not_taken_over() -> None:
    stage = installed()
    other = TrackingStage()
    other.install(msgspec.structs.replace(route_record(), id="route-2"), [], None, None)
    other.process([(VAN, drive_to_stop_1()[:15])])
    stage.release(VAN, EPOCH + 140.0)
    [stale] = stage.take_over([(VAN, [])])
    assert stage.restore(stale, other.routes[VAN].tracker.export_state(), None) is False
    events = stage.process([(VAN, drive_to_stop_1())])
    assert len(of_types(events, "stop.arriving")) == 1  # tracked afresh


def test_news_older_than_what_was_tracked_here_is_ignored() -> None:
    stage = installed()
    stage.process([(VAN, drive_to_stop_1()[:5])])  # the last at EPOCH + 40
    stage.release(VAN, EPOCH + 40.0)
    assert stage.is_current(VAN)
    stage.release(VAN, EPOCH + 41.0)
    assert not stage.is_current(VAN)


def test_ticks_run_the_time_driven_rules_only_for_local_vehicles() -> None:
    config = TrackerConfig(stopped_too_long_s=600.0, eta_change_threshold_s=1e6)
    local, remote = (
        installed(tracker_config=config),
        installed(tracker_config=config, is_local=lambda vehicle: False),
    )
    for stage in (local, remote):
        stage.process([(VAN, [fix(0, 0.0, speed=0.0)])])
        stage.take_save_now()
    [ev] = local.tick(EPOCH + 700.0)
    assert (ev.type, ev.vehicle, ev.route) == ("vehicle.stopped_too_long", VAN, "route-1")
    assert ev.ts == EPOCH + 700.0 and ev.data["since_ts"] == EPOCH
    assert local.take_save_now() == {VAN}
    assert remote.tick(EPOCH + 700.0) == []
    assert remote.take_save_now() == set()


def test_the_tightest_temperature_range_of_the_deliveries_is_watched() -> None:
    stage = TrackingStage()
    stage.install(route_record(), [delivery("d-1", 8.0), delivery("d-2", 5.0)], None, None)
    events = stage.process([(VAN, [fix(i, 0.0, speed=0.0, temp_c=6.5) for i in range(40)])])
    [ev] = of_types(events, "vehicle.temperature_excursion")
    assert (ev.vehicle, ev.route, ev.stop, ev.delivery) == (VAN, "route-1", None, None)
    assert ev.ts == EPOCH + 300.0
