"""Alerts in Redis: raise, deduplicate, acknowledge, resolve, notify listeners."""

from __future__ import annotations

import coredis
import pytest
import trio

from notify.alerts import (
    CHANGES_KEPT_S,
    Alert,
    AlertStateError,
    AlertStore,
    UnknownAlert,
    decode_alert,
)
from notify.rules import AlertSpec

OFFLINE = AlertSpec(
    kind="vehicle.offline", key="offline:v1", severity="warning",
    title="Vehicle device offline", detail="No position.", vehicle="v1",
)  # fmt: skip


async def test_lifecycle_with_times_and_listener(redis: coredis.Redis[bytes]) -> None:
    now = [100.0]
    send, receive = trio.open_memory_channel[Alert](10)
    store = AlertStore(redis, send.send, clock=lambda: now[0])
    alert, created = await store.raise_alert(OFFLINE)
    assert created and alert.status == "open"
    now[0] = 130.0
    again, created = await store.raise_alert(OFFLINE)
    assert not created and again.id == alert.id and again.count == 2 and again.last_seen == 130
    now[0] = 160.0
    acked = await store.acknowledge(alert.id, "maria")
    assert (acked.status, acked.acknowledged_by, acked.time_to_ack_s) == (
        "acknowledged",
        "maria",
        60,
    )
    now[0] = 400.0
    done = await store.resolve(alert.id, "maria", "driver rebooted the phone")
    assert done.status == "resolved" and done.time_to_resolve_s == 300
    assert done.resolution == "driver rebooted the phone"
    seen = [receive.receive_nowait().status for _ in range(4)]
    assert seen == ["open", "open", "acknowledged", "resolved"]
    # Resolved: the key is free, the next occurrence opens a new alert.
    fresh, created = await store.raise_alert(OFFLINE)
    assert created and fresh.id != alert.id
    with pytest.raises(AlertStateError):
        await store.acknowledge(alert.id, "maria")


async def test_listing_and_resolve_by_key(redis: coredis.Redis[bytes]) -> None:
    store = AlertStore(redis)
    a, _ = await store.raise_alert(OFFLINE)
    b, _ = await store.raise_alert(
        AlertSpec(kind="vehicle.temperature_excursion", key="temperature:v2",
                  severity="critical", title="Temperature", detail="9 °C", vehicle="v2")
    )  # fmt: skip
    assert [x.id for x in await store.list_alerts()] == [b.id, a.id]
    assert await store.resolve_key("offline:v1", "system") is not None
    assert await store.resolve_key("offline:v1", "system") is None
    assert [x.id for x in await store.list_alerts()] == [b.id]
    assert [x.id for x in await store.list_alerts("resolved")] == [a.id]
    assert {x.id for x in await store.list_alerts(None)} == {a.id, b.id}
    with pytest.raises(UnknownAlert):
        await store.acknowledge("al_nope", "x")


async def test_changes_are_published_for_other_processes(redis: coredis.Redis[bytes]) -> None:
    store = AlertStore(redis)
    async with redis.pubsub(channels=["notify:alerts"]) as sub:
        await trio.sleep(0.05)
        alert, _ = await store.raise_alert(OFFLINE)
        with trio.fail_after(5):
            async for message in sub:
                if message["type"] == "message":
                    data = message["data"]
                    assert isinstance(data, bytes | str)
                    assert decode_alert(data).id == alert.id
                    break


async def test_changes_since_a_time_are_read_back(redis: coredis.Redis[bytes]) -> None:
    """What a process that was not listening reads back: each alert changed since then, as
    it is now, oldest change first; changes older than CHANGES_KEPT_S are forgotten."""
    now = [100.0]
    store = AlertStore(redis, clock=lambda: now[0])
    old, _ = await store.raise_alert(OFFLINE)
    now[0] = 200.0
    other, _ = await store.raise_alert(
        AlertSpec(kind="vehicle.stopped_too_long", key="stopped:v3", severity="warning",
                  title="Stopped", detail="20 min", vehicle="v3")
    )  # fmt: skip
    now[0] = 300.0
    await store.acknowledge(old.id, "maria")
    assert [decode_alert(r).id for r in await store.changed_since(150.0)] == [other.id, old.id]
    [acked] = [decode_alert(r) for r in await store.changed_since(250.0)]
    assert (acked.id, acked.status) == (old.id, "acknowledged")
    now[0] = 300.0 + CHANGES_KEPT_S + 1
    await store.resolve(old.id, "maria")
    assert [decode_alert(r).id for r in await store.changed_since(0.0)] == [old.id]
