"""A fleet of vans, each with its own device client, driven in one trio nursery.

:func:`run_fleet` registers the devices, starts one producer task (the van emitting fixes on
schedule) and one device task per vehicle, and runs until the duration elapses or ``stop`` is
set; then it stops the producers, lets every device flush and drain its acks for a moment, and
returns the fleet totals.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from .city import City
from .device import DeviceClient, DeviceConfig
from .registry import RegistrationError, Registry
from .stats import FleetReport
from .vehicle import Van, VanConfig
from .wire import Encoding

log = logging.getLogger(__name__)

DEFAULT_CENTER: Final = (52.3731, 4.8932)  # Amsterdam, Dam square
SHUTDOWN_GRACE_S: Final = 2.0  # beyond the devices' drain time, before cancelling them
DEVICE_RESTART_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything a fleet run needs; the CLI options map onto these fields one to one."""

    api: str = "http://127.0.0.1:8080"
    ingest: str = "ws://127.0.0.1:8081/v1/ingest"
    api_key: str = ""
    vehicles: int = 50
    center: tuple[float, float] = DEFAULT_CENTER
    seed: int = 1
    interval: float = 1.0  # wall-clock seconds between fixes of one van
    time_scale: float = 1.0
    encoding: Encoding = Encoding.JSON
    batch: int = 1
    duration: float | None = None  # seconds; None runs until stopped
    stops_per_route: int = 8
    id_prefix: str = "van-"
    city_km: float = 4.0
    reefer_share: float = 0.3  # share of vans with a refrigerated body
    outlier_rate: float = 0.002  # per fix
    dropout_rate: float = 0.001  # per fix: chance that a GPS dropout starts
    disconnect_rate: float = 0.0005  # per frame: chance of a simulated network loss
    max_backlog: int = 10_000  # unacked positions kept per device
    drain: float = 3.0  # seconds to wait for the last acks on exit
    status_interval: float = 5.0
    register_timeout: float = 30.0  # how long to wait for the API to come up
    token_in_query: bool = False

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise ValueError("vehicles must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        for name in ("reefer_share", "outlier_rate", "dropout_rate", "disconnect_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")

    def device_ids(self) -> list[str]:
        width = max(3, len(str(self.vehicles)))
        return [f"{self.id_prefix}{i:0{width}d}" for i in range(1, self.vehicles + 1)]

    def van_config(self, *, reefer: bool) -> VanConfig:
        return VanConfig(
            interval_s=self.interval,
            time_scale=self.time_scale,
            stops_per_route=self.stops_per_route,
            outlier_probability=self.outlier_rate,
            dropout_probability=self.dropout_rate,
            reefer=reefer,
        )

    def device_config(self) -> DeviceConfig:
        return DeviceConfig(
            url=self.ingest,
            encoding=self.encoding,
            batch=self.batch,
            max_backlog=self.max_backlog,
            disconnect_probability=self.disconnect_rate,
            drain_s=self.drain,
            token_in_query=self.token_in_query,
        )


@dataclass(slots=True)
class Member:
    """One vehicle of the fleet: the van and the device in it."""

    van: Van
    client: DeviceClient


@dataclass(slots=True)
class Fleet:
    """A running fleet; :func:`run_fleet` hands it to ``task_status.started``."""

    config: FleetConfig
    city: City
    members: list[Member]
    started_at: float = field(default_factory=trio.current_time)
    crashed_producers: int = 0

    def report(self) -> FleetReport:
        """Totals so far."""
        elapsed = trio.current_time() - self.started_at
        return FleetReport.collect((m.client.stats for m in self.members), elapsed)


StatusCallback = Callable[[FleetReport, float], None]


def format_status(report: FleetReport, rate: float) -> str:
    """One progress line; ``rate`` is positions sent per second since the last line."""
    return (
        f"[{report.duration_s:7.1f}s] connected {report.connected}/{report.devices}"
        f"  sent {report.sent}  acked {report.acked}  rejected {report.rejected_total}"
        f"  unacked {report.unacked}  reconnects {report.reconnects}  {rate:.1f} pos/s"
    )


async def run_fleet(
    config: FleetConfig,
    *,
    stop: trio.Event | None = None,
    on_status: StatusCallback | None = None,
    task_status: trio.TaskStatus[Fleet] = trio.TASK_STATUS_IGNORED,
) -> FleetReport:
    """Register the devices, run the fleet until ``config.duration`` or ``stop``, report.

    Raises :class:`~simulator.registry.RegistrationError` if the devices cannot be registered,
    :class:`ValueError` if the city is too small for the routes asked for.
    Setting ``stop`` during registration abandons it and returns an empty report.
    """
    if stop is None:
        stop = trio.Event()
    city = City.generate(config.center, seed=config.seed, size_m=config.city_km * 1000)
    if config.stops_per_route >= len(city.nodes):
        raise ValueError(
            f"a {config.city_km:g} km city has only {len(city.nodes) - 1} possible stops, "
            f"fewer than {config.stops_per_route} per route"
        )
    ids = config.device_ids()
    async with Registry(config.api, config.api_key, retry_for_s=config.register_timeout) as reg:
        tokens: dict[str, str] = {}
        error: RegistrationError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on, stop, nursery.cancel_scope)
            names = [(i, f"Van {n}") for n, i in enumerate(ids, start=1)]
            try:
                tokens = await reg.register_all(names)
            except RegistrationError as exc:
                # Raised out here, a nursery would wrap it in an exception group.
                error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if stop.is_set():
            return FleetReport.collect([], 0.0)
        fleet = _build(config, city, ids, tokens, reg)
        await _run(fleet, stop, on_status, task_status)
    return fleet.report()


def _build(
    config: FleetConfig, city: City, ids: list[str], tokens: dict[str, str], reg: Registry
) -> Fleet:
    rng = random.Random(config.seed)
    wall = time.time()
    members = []
    for n, device_id in enumerate(ids):
        van = Van(
            city,
            config.van_config(reefer=rng.random() < config.reefer_share),
            seed=config.seed * 1_000_003 + n,
            # Spread the fixes of the fleet over the interval instead of sending in bursts.
            epoch=wall + rng.uniform(0, config.interval),
        )
        client = DeviceClient(
            device_id,
            tokens[device_id],
            config.device_config(),
            seed=config.seed * 2_000_003 + n,
            refresh_token=reg.rotate,
        )
        members.append(Member(van, client))
    return Fleet(config, city, members)


async def _run(
    fleet: Fleet,
    stop: trio.Event,
    on_status: StatusCallback | None,
    task_status: trio.TaskStatus[Fleet],
) -> None:
    config = fleet.config
    devices_done = trio.Event()
    async with trio.open_nursery() as nursery:
        producers = trio.CancelScope()
        nursery.start_soon(_run_devices, fleet, stop, devices_done)
        nursery.start_soon(_run_producers, fleet, producers)
        if on_status is not None and config.status_interval > 0:
            nursery.start_soon(_report_status, fleet, on_status)
        fleet.started_at = trio.current_time()
        task_status.started(fleet)
        with trio.move_on_after(config.duration if config.duration is not None else math.inf):
            await stop.wait()
        stop.set()
        producers.cancel()
        for member in fleet.members:
            member.client.stop()
        with trio.move_on_after(config.drain + SHUTDOWN_GRACE_S):
            await devices_done.wait()
        nursery.cancel_scope.cancel()


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _run_devices(fleet: Fleet, stop: trio.Event, done: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        for member in fleet.members:
            nursery.start_soon(_guard_device, member.client, stop)
    done.set()


async def _guard_device(client: DeviceClient, stop: trio.Event) -> None:
    """Run one device; a bug in it is logged and the device restarted, never fatal."""
    while True:
        try:
            await client.run()
            return
        except Exception:
            client.stats.crashes += 1
            log.exception("%s: device task failed", client.device_id)
        if stop.is_set():
            return
        await trio.sleep(DEVICE_RESTART_S)


async def _run_producers(fleet: Fleet, scope: trio.CancelScope) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            for member in fleet.members:
                nursery.start_soon(_produce, fleet, member)


async def _produce(fleet: Fleet, member: Member) -> None:
    """Feed the van's fixes to its device on the van's schedule."""
    van, client = member.van, member.client
    try:
        while True:
            for fix in van.poll(time.time()):
                client.submit(fix)
            await trio.sleep(max(0.0, van.next_fix_at - time.time()))
    except Exception:
        # The van stays parked and silent; the rest of the fleet carries on.
        fleet.crashed_producers += 1
        client.stats.crashes += 1
        log.exception("%s: van simulation failed", client.device_id)


async def _report_status(fleet: Fleet, on_status: StatusCallback) -> None:
    interval = fleet.config.status_interval
    last_sent, last_t = 0, trio.current_time()
    while True:
        await trio.sleep(interval)
        report = fleet.report()
        now = trio.current_time()
        rate = (report.sent - last_sent) / (now - last_t) if now > last_t else 0.0
        last_sent, last_t = report.sent, now
        on_status(report, rate)
