"""A short fleet run against real registration and ingest servers."""

import time

import trio
from trio_websocket import serve_websocket

from simulator.fleet import FleetConfig, run_fleet
from simulator.stats import FleetReport

from .servers import API_KEY, IngestServer, make_api, start_api


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
