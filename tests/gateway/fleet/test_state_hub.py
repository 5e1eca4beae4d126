import trio

from gateway.core.metrics import Metrics
from gateway.fleet.hub import Hub
from gateway.fleet.position import Position
from gateway.fleet.state import MOVING, OFFLINE, STOPPED, Fleet, decode_state, encode_state


def p(seq: int, ts: float, lat: float, speed: float | None = None) -> Position:
    return Position(seq=seq, ts=ts, lat=lat, lon=4.0, speed=speed)


def test_status_online_moving_stopped_offline() -> None:
    fleet = Fleet(stopped_speed_mps=1.0, offline_after_s=60)
    s, events = fleet.apply("v1", "d1", [p(1, 100, 52.0, 0.0)], now=100)
    assert s.status == STOPPED
    assert [e.type for e in events] == ["vehicle.online"]
    # No speed reported: derived from the distance between fixes (~11 m in 1 s).
    s, events = fleet.apply("v1", "d1", [p(2, 101, 52.0001)], now=101)
    assert s.status == MOVING and s.speed is not None and 10 < s.speed < 12
    assert events == []
    assert fleet.sweep(150) == []
    swept = fleet.sweep(162)
    assert [(v.vehicle, e.type) for v, e in swept] == [("v1", "vehicle.offline")]
    assert fleet.vehicles["v1"].status == OFFLINE
    _, events = fleet.apply("v1", "d1", [p(3, 170, 52.0001, 0.0)], now=170)
    assert [e.type for e in events] == ["vehicle.online"]


def test_state_round_trips() -> None:
    fleet = Fleet(1.0, 60)
    s, _ = fleet.apply("v1", "d1", [p(1, 100, 52.0, 3.0)], now=100)
    assert decode_state(encode_state(s)) == s


def test_a_late_state_from_another_process_does_not_win() -> None:
    here, there = Fleet(1.0, 60), Fleet(1.0, 60)
    older, _ = there.apply("v1", "d1", [p(1, 100, 52.0, 3.0)], now=100)
    older = decode_state(encode_state(older))
    here.apply("v1", "d1", [p(2, 110, 52.001, 3.0)], now=110)
    assert not here.take_remote(older)
    assert here.vehicles["v1"].ts == 110 and "v1" in here.local
    newest, _ = there.apply("v1", "d1", [p(3, 120, 52.002, 3.0)], now=120)
    assert here.take_remote(decode_state(encode_state(newest)))
    assert here.vehicles["v1"].ts == 120 and "v1" not in here.local


def test_a_late_message_does_not_undo_an_offline_mark() -> None:
    # This process marked the vehicle offline (same fix, later status time); the other's
    # message about that same fix, from before the mark, arrives late: it is not taken.
    here, there = Fleet(1.0, 60), Fleet(1.0, 60)
    state, _ = there.apply("v1", "d1", [p(1, 100, 52.0, 3.0)], now=100)
    before = encode_state(state)
    assert here.take_remote(decode_state(before))
    here.local.add("v1")
    here.sweep(200)
    assert here.vehicles["v1"].status == OFFLINE
    assert not here.take_remote(decode_state(before))
    assert here.vehicles["v1"].status == OFFLINE
    # The same state again, or a new fix, is taken.
    assert here.take_remote(decode_state(encode_state(here.vehicles["v1"])))
    newer, _ = there.apply("v1", "d1", [p(2, 210, 52.001, 3.0)], now=210)
    assert here.take_remote(decode_state(encode_state(newer)))
    assert here.vehicles["v1"].ts == 210


async def test_hub_keeps_only_the_newest_update_per_vehicle() -> None:
    m = Metrics()
    hub = Hub(m, max_pending=100)
    ops = hub.subscribe(None)
    customer = hub.subscribe(["v2"])
    for i in range(5):
        hub.publish("v1", b"v1-%d" % i)
    hub.publish("v2", b"v2-0")
    pending, extra, overflow = await ops.next_batch()
    assert pending == {"v1": b"v1-4", "v2": b"v2-0"}
    assert (extra, overflow) == ([], False)
    assert m.get("gateway_browser_coalesced_total") == 4
    pending, _, _ = await customer.next_batch()
    assert pending == {"v2": b"v2-0"}
    with trio.move_on_after(0.05) as cs:
        await customer.next_batch()
    assert cs.cancelled_caught  # nothing more for this customer
    customer.close()
    ops.close()
    assert hub.count() == 0


async def test_hub_overflow_asks_for_a_snapshot() -> None:
    hub = Hub(Metrics(), max_pending=3)
    sub = hub.subscribe(None)
    for i in range(5):
        hub.publish(f"v{i}", b"x")
    pending, _, overflow = await sub.next_batch()
    assert overflow and len(pending) <= 3
