"""A fleet of vans, each with its own device client, driven in one trio nursery.

:func:`run_fleet` registers the devices, imports and starts each van's first route through the
routes API (unless ``routes`` is off), starts one producer task (the van emitting fixes on
schedule) and one device task per vehicle, and runs until the duration elapses or ``stop`` is
set; then it stops the producers, lets every device flush and drain its acks for a moment, and
returns the fleet totals.

While the vans drive, each later route is imported and started when the van is back at the
depot with its next plan, and each stop the van leaves is reported delivered (or, at
``fail_rate``, failed) as a driver app would: a delivery with a proof of delivery uploaded
with the van's device token, taken where the van stood; these calls run beside the vans and
never hold them up. Tracking links for the first few deliveries are printed once the first
routes are started, for opening the customer page.
"""

from __future__ import annotations

import logging
import math
import random
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import msgspec
import trio

from .city import City
from .device import DeviceClient, DeviceConfig
from .dispatch import DispatchClient, Dispatcher, DispatchError, ImportRoute, ReportStop
from .manifest import RouteManifest, build_manifest, default_timezone
from .osmand import OsmAndClient, OwnTracksClient
from .registry import RegistrationError, Registry
from .stats import FleetReport
from .vehicle import Van, VanConfig
from .wire import Encoding

log = logging.getLogger(__name__)

PROTOCOLS: Final = ("ws", "osmand", "owntracks-http", "mix")
# In a mix: the share of devices that are Traccar Clients, and OwnTracks apps; the rest are
# on the WebSocket.
OSMAND_SHARE: Final = 0.2
OWNTRACKS_SHARE: Final = 0.1

DEFAULT_CENTER: Final = (52.3731, 4.8932)  # Amsterdam, Dam square
SHUTDOWN_GRACE_S: Final = 2.0  # beyond the devices' drain time, before cancelling them
DEVICE_RESTART_S: Final = 1.0
SHOWN_DELIVERIES: Final = 3  # delivery ids printed at start, for looking them up
TRACKING_LINKS: Final = 3  # customer tracking links printed at start


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything a fleet run needs; the CLI options map onto these fields one to one."""

    api: str = "http://127.0.0.1:8080"
    ingest: str = "ws://127.0.0.1:8081/v1/ingest"
    # The device HTTP server (OsmAnd), for devices on the Traccar Client's protocol
    device_http: str = "http://127.0.0.1:5055"
    # ws: every device on the WebSocket; osmand: every device a Traccar Client;
    # owntracks-http: every device an OwnTracks app; mix: OSMAND_SHARE Traccar Clients,
    # OWNTRACKS_SHARE OwnTracks apps, the rest on the WebSocket
    protocol: str = "ws"
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
    routes: bool = True  # import routes and report stops; off for pure load tests
    fail_rate: float = 0.05  # share of stops reported failed
    run_id: str = ""  # part of every route's external id; empty: the start time
    timezone: str = ""  # IANA zone of the recipients; empty: guessed from the centre

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise ValueError("vehicles must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        for name in ("reefer_share", "outlier_rate", "dropout_rate", "disconnect_rate",
                     "fail_rate"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.timezone:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.timezone!r}") from None

    def zone(self) -> str:
        """The recipients' time zone."""
        return self.timezone or default_timezone(self.center)

    def make_run_id(self, now: float) -> str:
        """``run_id``, or the local date and time of ``now`` in the city's zone."""
        if self.run_id:
            return self.run_id
        return datetime.fromtimestamp(now, zoneinfo.ZoneInfo(self.zone())).strftime("%Y%m%d-%H%M%S")

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
    client: DeviceClient | OsmAndClient
    seed: int = 0
    announced: int = 0  # highest route number handed to the dispatcher
    reported: int = 0  # visits whose stop was handed to the dispatcher
    manifests: dict[int, RouteManifest] = field(default_factory=dict)  # by route number
    parked: tuple[int, tuple[float, float]] | None = None  # (visit index, position) at a stop

    @property
    def vehicle(self) -> str:
        return self.client.device_id


@dataclass(slots=True)
class Fleet:
    """A running fleet; :func:`run_fleet` hands it to ``task_status.started``."""

    config: FleetConfig
    city: City
    members: list[Member]
    started_at: float = field(default_factory=trio.current_time)
    crashed_producers: int = 0
    run_id: str = ""
    dispatcher: Dispatcher | None = None

    def report(self) -> FleetReport:
        """Totals so far."""
        elapsed = trio.current_time() - self.started_at
        report = FleetReport.collect((m.client.stats for m in self.members), elapsed)
        if self.dispatcher is None:
            return report
        return msgspec.structs.replace(report, dispatch=self.dispatcher.stats.as_dict())

    def device_token(self, vehicle: str) -> str | None:
        """The current token of ``vehicle``'s device (it changes when the device rotates it)."""
        for member in self.members:
            if member.vehicle == vehicle:
                return member.client.token
        return None

    def manifest(self, member: Member, number: int) -> RouteManifest:
        """The import payload of ``member``'s route ``number``, built once and kept."""
        found = member.manifests.get(number)
        if found is not None:
            return found
        van = member.van
        plan = van.upcoming if van.upcoming and van.upcoming.number == number else van.route
        if plan is None or plan.number != number:
            raise LookupError(f"{member.vehicle} has no route {number} in view")
        made = build_manifest(
            plan,
            vehicle=member.vehicle,
            run_id=self.run_id,
            wall_time=van.wall_time,
            time_scale=self.config.time_scale,
            timezone=self.config.zone(),
            seed=member.seed,
            reefer=van.config.reefer,
        )
        # Only the route being driven and the next one are ever looked up.
        for old in [n for n in member.manifests if n < number - 1]:
            del member.manifests[old]
        member.manifests[number] = made
        return made


StatusCallback = Callable[[FleetReport, float], None]
NoticeCallback = Callable[[str], None]


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
    on_notice: NoticeCallback | None = None,
    task_status: trio.TaskStatus[Fleet] = trio.TASK_STATUS_IGNORED,
) -> FleetReport:
    """Register the devices, import their routes, run the fleet until ``config.duration`` or
    ``stop``, report.

    ``on_notice`` is given one-line messages for people: the routes imported, conflicts.
    Raises :class:`~simulator.registry.RegistrationError` if the devices cannot be registered,
    :class:`ValueError` if the city is too small for the routes asked for.
    Setting ``stop`` during registration or the first import abandons the run and returns the
    report so far.
    """
    notice: NoticeCallback = on_notice if on_notice is not None else _log_notice
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
        if not config.routes:
            await _run(fleet, stop, on_status, task_status)
            return fleet.report()
        async with DispatchClient(config.api, config.api_key) as client:
            fleet.dispatcher = Dispatcher(
                client, config.fail_rate, config.seed, notice, device_token=fleet.device_token
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on, stop, nursery.cancel_scope)
                await _import_first_routes(fleet, notice)
                nursery.cancel_scope.cancel()
            if not stop.is_set():
                await _run(fleet, stop, on_status, task_status)
    return fleet.report()


def _log_notice(line: str) -> None:
    log.info("%s", line)


async def _import_first_routes(fleet: Fleet, notice: NoticeCallback) -> None:
    dispatcher = fleet.dispatcher
    assert dispatcher is not None
    manifests = []
    for member in fleet.members:
        dispatcher.add_van(member.vehicle)
        plan = member.van.upcoming
        if plan is not None:
            manifests.append(fleet.manifest(member, plan.number))
            member.announced = plan.number
    await dispatcher.import_routes(manifests)
    stats = dispatcher.stats
    shown = [d for m in manifests if m.external_id in dispatcher.started for d in m.delivery_ids]
    notice(
        f"routes (run {fleet.run_id}): {stats.routes_imported} imported, "
        f"{stats.routes_started} started, {sum(len(m.delivery_ids) for m in manifests)} "
        f"deliveries; look one up at GET {fleet.config.api.rstrip('/')}/v1/deliveries/ID: "
        + ", ".join(shown[:SHOWN_DELIVERIES])
    )
    await _print_tracking_links(dispatcher, shown[:TRACKING_LINKS], notice)


async def _print_tracking_links(
    dispatcher: Dispatcher, deliveries: list[str], notice: NoticeCallback
) -> None:
    """Issue customer tracking links for ``deliveries`` and print them on one line."""
    if not deliveries:
        return
    urls: list[str] = []
    try:
        for delivery in deliveries:
            urls.append(await dispatcher.client.issue_link(delivery))
    except DispatchError as exc:
        notice(f"tracking links not issued: {exc}")
    if urls:
        notice("tracking links: " + " ".join(urls))


def _build(
    config: FleetConfig, city: City, ids: list[str], tokens: dict[str, str], reg: Registry
) -> Fleet:
    rng = random.Random(config.seed)
    wall = time.time()
    members = []
    for n, device_id in enumerate(ids):
        seed = config.seed * 1_000_003 + n
        van = Van(
            city,
            config.van_config(reefer=rng.random() < config.reefer_share),
            seed=seed,
            # Spread the fixes of the fleet over the interval instead of sending in bursts.
            epoch=wall + rng.uniform(0, config.interval),
        )
        client: DeviceClient | OsmAndClient
        kind = config.protocol
        if kind == "mix":
            draw = rng.random()
            kind = (
                "osmand" if draw < OSMAND_SHARE
                else "owntracks-http" if draw < OSMAND_SHARE + OWNTRACKS_SHARE
                else "ws"
            )  # fmt: skip
        if kind in ("osmand", "owntracks-http"):
            http_client = OsmAndClient if kind == "osmand" else OwnTracksClient
            client = http_client(
                device_id,
                tokens[device_id],
                config.device_http,
                max_backlog=config.max_backlog,
                seed=config.seed * 2_000_003 + n,
                refresh_token=reg.rotate,
                drain_s=config.drain,
            )
        else:
            client = DeviceClient(
                device_id,
                tokens[device_id],
                config.device_config(),
                seed=config.seed * 2_000_003 + n,
                refresh_token=reg.rotate,
            )
        members.append(Member(van, client, seed))
    return Fleet(config, city, members, run_id=config.make_run_id(wall))


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
        dispatch_done = trio.Event()
        if fleet.dispatcher is not None:
            nursery.start_soon(_run_dispatcher, fleet.dispatcher, dispatch_done)
        else:
            dispatch_done.set()
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
        if fleet.dispatcher is not None:
            fleet.dispatcher.close()
        with trio.move_on_after(config.drain + SHUTDOWN_GRACE_S):
            await devices_done.wait()
            # The last stop reports get the same grace as the last acks.
            await dispatch_done.wait()
        nursery.cancel_scope.cancel()


async def _run_dispatcher(dispatcher: Dispatcher, done: trio.Event) -> None:
    await dispatcher.run()
    done.set()


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _run_devices(fleet: Fleet, stop: trio.Event, done: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        for member in fleet.members:
            nursery.start_soon(_guard_device, member.client, stop)
    done.set()


async def _guard_device(client: DeviceClient | OsmAndClient, stop: trio.Event) -> None:
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
            if fleet.dispatcher is not None:
                _dispatch(fleet, fleet.dispatcher, member)
            await trio.sleep(max(0.0, van.next_fix_at - time.time()))
    except Exception:
        # The van stays parked and silent; the rest of the fleet carries on.
        fleet.crashed_producers += 1
        client.stats.crashes += 1
        log.exception("%s: van simulation failed", client.device_id)


def _dispatch(fleet: Fleet, dispatcher: Dispatcher, member: Member) -> None:
    """Hand the dispatcher the stops the van has left and its next route, once each."""
    van = member.van
    visits = van.visits
    if visits and visits[-1].departed_s is None:  # standing at a stop: where the driver is
        member.parked = (len(visits) - 1, van.position)
    while member.reported < len(visits) and visits[member.reported].departed_s is not None:
        visit = visits[member.reported]
        stop = visit.stop
        if member.parked is not None and member.parked[0] == member.reported:
            position = member.parked[1]
        else:  # arrived and left between two looks: it stood at the address
            position = (stop.address.lat, stop.address.lon)
        member.reported += 1
        manifest = member.manifests.get(stop.route)
        if manifest is not None:
            departed = visit.departed_s
            assert departed is not None
            report = ReportStop(manifest.external_id, manifest.stops[stop.index], position,
                                van.wall_time(departed))  # fmt: skip
            dispatcher.submit(member.vehicle, report)
    plan = van.upcoming
    if plan is not None and plan.number > member.announced:
        member.announced = plan.number
        dispatcher.submit(member.vehicle, ImportRoute(fleet.manifest(member, plan.number)))


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
