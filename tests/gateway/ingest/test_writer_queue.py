"""The writer's queue: a full queue holds the submitting device back (and only it), nothing
queued is lost when the writer is closed, and nothing is accepted after that."""

from __future__ import annotations

import time

import coredis
import pytest
import trio
import trio.testing

from gateway.core.events import EventLog
from gateway.core.metrics import Metrics
from gateway.fleet.devices import Devices
from gateway.fleet.hub import Hub
from gateway.fleet.position import Position
from gateway.fleet.state import Fleet
from gateway.fleet.store import Store
from gateway.ingest.validation import Limits
from gateway.ingest.writer import Ingest, Session
from tests.gateway.conftest import stored_seqs


def fixes(first_seq: int, n: int) -> list[Position]:
    t0 = time.time() - 60
    return [
        Position(seq=s, ts=t0 + s, lat=52.0 + s * 1e-5, lon=4.0)
        for s in range(first_seq, first_seq + n)
    ]


def make_ingest(redis: coredis.Redis[bytes], queue_size: int, max_batch: int) -> Ingest:
    metrics = Metrics()
    return Ingest(
        Store(redis, track_retention_s=3600), Fleet(stopped_speed_mps=1.0, offline_after_s=300),
        Hub(metrics), metrics, Limits(), queue_size=queue_size, max_batch=max_batch,
        linger_s=0.0, event_log=EventLog(redis, 1000),
    )  # fmt: skip


async def open_session(ingest: Ingest, device_id: str) -> Session:
    devices = Devices(ingest.store.redis)
    await devices.create_device(device_id, f"{device_id}-van", "")
    device = await devices.get_device(device_id)
    assert device is not None
    return await ingest.open_session(device)


async def test_full_queue_blocks_the_submitter_until_the_writer_takes(redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url) as redis:
        ingest = make_ingest(redis, queue_size=6, max_batch=1000)
        store = ingest.store
        s1 = await open_session(ingest, "wq-1")
        s2 = await open_session(ingest, "wq-2")
        await s1.submit(fixes(1, 3), [])
        await s1.submit(fixes(4, 3), [])  # the queue now holds six positions: full
        third_done = trio.Event()

        async def third() -> None:
            await s2.submit(fixes(1, 2), [])
            third_done.set()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(third)
                await trio.testing.wait_all_tasks_blocked()
                assert not third_done.is_set(), "a full queue must hold the submitter back"
                assert s1.durable_seq == 0
                nursery.start_soon(ingest.run_writer)
                await third_done.wait()
                ingest.close()
        # The writer returned only after writing everything queued, in order per device.
        assert (s1.durable_seq, s2.durable_seq) == (6, 2)
        cursor = await store.load_cursor("wq-1-van", "wq-1")
        assert cursor is not None and cursor[0] == 6
        entries = await redis.xrange("veh:{wq-1-van}:track")
        assert len(entries) >= 1
        with pytest.raises(trio.ClosedResourceError):
            await s1.submit(fixes(7, 1), [])


async def test_close_drains_what_is_queued(redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url) as redis:
        ingest = make_ingest(redis, queue_size=100, max_batch=5)
        session = await open_session(ingest, "wq-3")
        for first in range(1, 43, 3):  # 14 frames, seq 1..42
            await session.submit(fixes(first, 3), [])
        ingest.close()  # before the writer even started: it still writes all of it
        await ingest.run_writer()
        assert session.durable_seq == 42
        cursor = await ingest.store.load_cursor("wq-3-van", "wq-3")
        assert cursor is not None and cursor[0] == 42
        assert ingest.metrics.get("gateway_writer_positions_total") == 42


async def test_two_sessions_of_one_device_store_each_position_once(redis_url: str) -> None:
    """A device reconnects while its old connection's frames still wait for the writer: the
    new session, checked against the cursor stored before them, accepts the resent ones
    again; they are written once."""
    async with coredis.Redis.from_url(redis_url) as redis:
        ingest = make_ingest(redis, queue_size=100, max_batch=1000)
        old = await open_session(ingest, "wq-4")
        new = await ingest.open_session(old.device)
        await old.submit(fixes(1, 5), [])
        await new.submit(fixes(3, 5), [])  # 3..7: 3..5 resent
        ingest.close()
        await ingest.run_writer()
        assert await stored_seqs(redis, "wq-4-van") == [1, 2, 3, 4, 5, 6, 7]
        assert (old.durable_seq, new.durable_seq) == (5, 7)


async def test_an_outage_is_waited_out_and_a_bug_stops_the_writer(redis_url: str) -> None:
    """A Redis outage is retried until Redis answers and the positions are stored; any other
    error is counted and raised, not retried for ever with every ack withheld."""
    async with coredis.Redis.from_url(redis_url) as redis:
        ingest = make_ingest(redis, queue_size=100, max_batch=10)
        session = await open_session(ingest, "wq-bug")
        real = ingest.store.write_and_wait
        failures: list[BaseException] = [
            coredis.exceptions.ConnectionError("connection refused"),
            TimeoutError(),
        ]

        async def flaky(*args: object) -> object:
            if failures:
                raise failures.pop(0)
            return await real(*args)  # type: ignore[arg-type]

        ingest.store.write_and_wait = flaky  # type: ignore[method-assign,assignment]
        await session.submit(fixes(1, 3), [])
        ingest.close()
        await ingest.run_writer()
        assert session.durable_seq == 3
        assert ingest.metrics.get("gateway_writer_errors_total") == 2
        assert ingest.metrics.get("gateway_writer_bugs_total") == 0

        ingest = make_ingest(redis, queue_size=100, max_batch=10)
        session = await open_session(ingest, "wq-bug2")
        calls = 0

        async def broken(*args: object) -> object:
            nonlocal calls
            calls += 1
            raise KeyError("a bug")

        ingest.store.write_and_wait = broken  # type: ignore[method-assign,assignment]
        await session.submit(fixes(1, 3), [])
        ingest.close()
        with pytest.RaisesGroup(KeyError, allow_unwrapped=True, flatten_subgroups=True):
            await ingest.run_writer()
        assert calls == 1
        assert session.durable_seq == 0
        assert ingest.metrics.get("gateway_writer_bugs_total") == 1


async def test_room_wakes_only_the_submitters_it_takes(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A full queue with many devices waiting: what the writer takes wakes as many of them
    as fit, oldest first, not all of them; the overload is logged and counted once."""
    async with coredis.Redis.from_url(redis_url) as redis:
        ingest = make_ingest(redis, queue_size=10, max_batch=4)
        first = await open_session(ingest, "wr-0")
        await first.submit(fixes(1, 10), [])  # full
        waiting = [await open_session(ingest, f"wr-{i}") for i in range(1, 21)]
        done: list[int] = []
        closed: list[int] = []

        async def submit(i: int, s: Session) -> None:
            try:
                await s.submit(fixes(1, 2), [])
                done.append(i)
            except trio.ClosedResourceError:
                closed.append(i)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i, s in enumerate(waiting, 1):
                    nursery.start_soon(submit, i, s)
                    await trio.testing.wait_all_tasks_blocked()
                assert done == [] and len(ingest._waiting) == 20
                taken = ingest._take()  # the writer takes wr-0's ten: room for five of two
                assert sum(len(p) for _, p in taken) == 10
                await trio.testing.wait_all_tasks_blocked()
                assert sorted(done) == [
                    1,
                    2,
                    3,
                    4,
                    5,
                ]  # the five oldest (trio runs them in any order)
                assert len(ingest._waiting) == 15
                ingest.close()
        assert sorted(closed) == list(range(6, 21))
        assert ingest.metrics.get("gateway_writer_overloads_total") == 1
        assert sum("queue is full" in r.message for r in caplog.records) == 1
