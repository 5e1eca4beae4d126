import json

import trio

from gateway.core.metrics import Metrics
from gateway.fleet.hub import KEPT_TICKS, Hub
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


async def test_a_customer_page_gets_only_the_newest_update_of_its_vehicle() -> None:
    m = Metrics()
    hub = Hub(m)
    customer = hub.subscribe(["v2"], ["d1"])
    for i in range(5):
        hub.publish("v2", b"v2-%d" % i)
    hub.publish("v1", b"v1-0")  # another vehicle: not this page's
    pending, changed = await customer.next_batch()
    assert (pending, changed) == ({"v2": b"v2-4"}, False)
    assert m.get("gateway_browser_coalesced_total") == 4
    hub.delivery_changed("d2")
    with trio.move_on_after(0.05) as cs:
        await customer.next_batch()
    assert cs.cancelled_caught  # nothing more for this customer
    hub.delivery_changed("d1")
    assert await customer.next_batch() == ({}, True)
    assert hub.count() == 1
    customer.close()
    assert hub.count() == 0
    assert not hub.watched("v2")


async def test_ops_browsers_share_one_frame_a_tick(autojump_clock: trio.abc.Clock) -> None:
    m = Metrics()
    hub = Hub(m, tick_s=0.2)
    feed = hub.feed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run)
        feed.watchers = 2
        builds: list[str] = []

        def build() -> str:
            builds.append("built")
            return f"snapshot {len(builds)}"

        tick, snap = feed.snapshot(build)
        assert feed.snapshot(build) == (tick, snap) == (0, "snapshot 1")
        assert len(builds) == 1  # one build a tick, however many browsers ask
        for i in range(3):
            hub.publish("v1", b'{"id":"v1","n":%d}' % i)
        hub.publish("v2", b'{"id":"v2","n":0}')
        hub.broadcast(b'{"type":"event"}')
        t1, a = await feed.next(tick)
        t2, b = await feed.next(tick)
        assert t1 == t2 == tick + 1
        assert a is not None and b is not None
        assert a[0] is b[0]  # the same encoded frame for both browsers
        assert json.loads(a[0]) == {
            "type": "positions",
            "vehicles": [{"id": "v1", "n": 2}, {"id": "v2", "n": 0}],
        }
        assert a[1:] == ['{"type":"event"}']
        # A browser that missed ticks gets them merged (the newest state of each vehicle)
        # and every message since, in order.
        hub.publish("v1", b'{"id":"v1","n":3}')
        await feed.next(t1)
        hub.publish("v3", b'{"id":"v3","n":0}')
        hub.broadcast(b'{"type":"alert"}')
        t3, _ = await feed.next(t1 + 1)
        _, late = await feed.next(tick)
        assert late is not None and t3 == tick + 3
        assert [v["id"] for v in json.loads(late[0])["vehicles"]] == ["v1", "v2", "v3"]
        assert json.loads(late[0])["vehicles"][0]["n"] == 3
        assert late[1:] == ['{"type":"event"}', '{"type":"alert"}']
        assert m.get("gateway_browser_coalesced_total") >= 1
        # Further behind than the ticks kept: a snapshot instead.
        for i in range(KEPT_TICKS + 1):
            hub.publish("v1", b'{"id":"v1","n":%d}' % (10 + i))
            await feed.next(feed.tick)
        assert (await feed.next(tick))[1] is None
        nursery.cancel_scope.cancel()
