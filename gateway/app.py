"""The gateway process: every service in one nursery, started in order, stopped on a deadline."""

from __future__ import annotations

import collections
import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from gateway.config import Settings
from gateway.core.connect import connect_redis
from gateway.core.events import EventLog
from gateway.core.failures import log_once
from gateway.core.listen import bind_listening, listening
from gateway.core.metrics import Metrics
from gateway.core.redisproc import RedisProcess, start_redis, stop_stale
from gateway.core.runfile import RunInfo, remove_run_file, write_run_file
from gateway.core.secrets import ApiKeys, persistent_secret
from gateway.customer.claims import ClaimsService
from gateway.customer.links import Links, LinkSigner
from gateway.customer.pod import Proofs
from gateway.customer.view import CustomerViews
from gateway.demo import DemoFleet
from gateway.dispatch.service import Dispatch
from gateway.dispatch.store import DispatchStore
from gateway.fleet.devices import Devices
from gateway.fleet.hub import Hub
from gateway.fleet.peers import Peers
from gateway.fleet.state import Fleet, encode_state, live_json
from gateway.fleet.store import Store
from gateway.http.app import HttpServices, create_app
from gateway.http.common import AgentAuth
from gateway.ingest.auth import DeviceAuth
from gateway.ingest.device_http import DeviceRequests
from gateway.ingest.http_server import DeviceHttpServer
from gateway.ingest.mqtt import MqttIngest
from gateway.ingest.validation import Limits
from gateway.ingest.websocket import CLOSE_REVOKED, WebSocketIngest
from gateway.ingest.writer import Ingest
from gateway.live.tracking import LiveTracking
from gateway.notifications import Notifications
from gateway.zones.store import ZoneStore
from notify import Notifier
from notify.redis_client import RedisClient, RedisOutage

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S: Final = 1.0
LOOP_LAG_EVERY_S: Final = 0.1  # the event-loop lag is sampled this often
RECENT_EVENTS: Final = 100  # shown to a browser that connects
TAIL_BATCH: Final = 500
TAIL_BLOCK_MS: Final = 1000
GC_THRESHOLD_0: Final = 50_000  # allocations between young-generation collections (700)
SHUTDOWN_GRACE_S: Final = 5.0  # for open HTTP requests when stopping
DRAIN_GRACE_S: Final = 10.0  # for queued positions when stopping

_json: Final = msgspec.json.Encoder()
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    http_url: str
    ingest_url: str
    api_key: str
    redis_url: str
    device_http_url: str = ""  # the lean device HTTP server (OsmAnd at its root)

    @property
    def ops_url(self) -> str:
        return f"{self.http_url}/ops#key={self.api_key}"


class Gateway:
    """Every service of one gateway process, built in one place and in one order (each from
    the ones before it); ``run`` serves until cancelled."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient[bytes],
        data_dir: Path,
        fleet: DemoFleet | None = None,
    ) -> None:
        """``fleet``: the demo's simulated fleet, whose status the ops page shows."""
        s = settings
        self.settings = settings
        self.redis = redis
        self.data_dir = data_dir
        self.demo_fleet = fleet
        # The port is fixed before anything starts: links and provider callbacks name it.
        # Bound at once, so that the port (the one set, or a free one) is known to everything
        # built below (links and provider callbacks name it) and no other server of this
        # process can be handed it meanwhile; hypercorn serves on this very socket.
        self._http_socket = bind_listening(s.host, s.http_port, "HTTP_PORT")
        self.http_port = int(self._http_socket.getsockname()[1])
        self.public_url = s.resolved_public_url(self.http_port)
        self.recent_events: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=RECENT_EVENTS
        )
        # ----- shared parts
        self.metrics = Metrics()
        self.events = EventLog(redis, s.events_max_len)
        keys = s.api_key_list() or [persistent_secret(data_dir, "api_key")]
        self.api_key = keys[0]
        self.agent = AgentAuth(ApiKeys(keys))
        # ----- vehicles and devices
        self.store = Store(
            redis,
            s.track_retention_s,
            wait_replicas=s.redis_wait_replicas,
            wait_timeout_ms=s.redis_wait_timeout_ms,
        )
        self.fleet = Fleet(s.stopped_speed_mps, s.offline_after_s)
        self.hub = Hub(self.metrics, s.ops_tick_s)
        self.devices = Devices(redis)
        self.device_auth = DeviceAuth(self.devices)
        # ----- routes, deliveries, zones, the live stage
        self.dispatch = Dispatch(DispatchStore(redis, self.events), metrics=self.metrics)
        self.zone_store = ZoneStore(redis)
        self.live = LiveTracking(
            self.store,
            self.zone_store,
            self.dispatch,
            self.metrics,
            event_log=self.events,
            is_local=self.fleet.local.__contains__,
            on_tracked=self.hub.tracked,
        )
        self.peers = Peers(self.store, self.fleet, self.hub, self.metrics, self.live.release)
        # ----- ingest
        self.ingest = Ingest(
            self.store,
            self.fleet,
            self.hub,
            self.metrics,
            Limits(
                future_tolerance_s=s.future_tolerance_s,
                max_age_s=s.max_age_s,
                max_speed_mps=s.max_speed_mps,
                max_accuracy_m=s.max_accuracy_m,
            ),
            queue_size=s.writer_queue_size,
            max_batch=s.writer_max_batch,
            linger_s=s.writer_linger_s,
            event_log=self.events,
            after_write=self.live.offer,
            after_states=self.peers.announce,
            rate_per_s=s.device_rate_per_s,
            burst=s.device_burst,
        )
        self.ws_ingest = WebSocketIngest(
            self.ingest,
            self.device_auth,
            self.metrics,
            max_frame_bytes=s.max_frame_bytes,
            max_batch_positions=s.max_batch_positions,
            flood_close_after_s=s.flood_close_after_s,
            max_connections_per_device=s.max_connections_per_device,
            ack_interval_s=s.ack_interval_s,
            max_connections_per_ip=s.max_connections_per_ip,
            bad_auth_burst=s.bad_auth_burst,
        )
        self.device_requests = DeviceRequests(
            self.ingest,
            self.device_auth,
            self.devices,
            self.metrics,
            max_frame_bytes=s.max_frame_bytes,
            max_batch_positions=s.max_batch_positions,
        )
        self.device_http = DeviceHttpServer(
            self.device_requests, self.metrics, max_body_bytes=s.max_frame_bytes
        )
        self.mqtt = MqttIngest(s, self.ingest, self.devices, self.metrics) if s.mqtt_url else None
        # ----- customers
        self.links = Links(
            redis,
            LinkSigner(s.link_secret or persistent_secret(data_dir, "link_secret")),
            s.link_ttl_s,
        )
        self.proofs = Proofs(data_dir, redis, self.dispatch)
        self.views = CustomerViews(self.dispatch.store, self.fleet, self.live, self.proofs)
        self.claims = ClaimsService(redis, self.dispatch.store, self.events)
        self.notifications = (
            Notifications(
                s,
                redis,
                self.hub,
                self.metrics,
                public_url=self.public_url,
                link_for=lambda delivery: self.link_url(self.links.issue(delivery)),
            )
            if s.notify
            else None
        )

    def close(self) -> None:
        """Close what ``run`` did not take over (the HTTP socket, when it did not start)."""
        self._http_socket.close()  # a no-op once hypercorn has it (detached)

    def http_services(self, notifier: Notifier | None) -> HttpServices:
        """What the HTTP side is given (``notifier``: once notifications run)."""
        return HttpServices(
            settings=self.settings,
            public_url=self.public_url,
            redis=self.redis,
            metrics=self.metrics,
            agent=self.agent,
            devices=self.devices,
            store=self.store,
            events=self.events,
            fleet=self.fleet,
            hub=self.hub,
            device_auth=self.device_auth,
            device_requests=self.device_requests,
            dispatch=self.dispatch,
            zones=self.zone_store,
            live=self.live,
            links=self.links,
            views=self.views,
            proofs=self.proofs,
            claims=self.claims,
            notifications=self.notifications,
            notifier=notifier,
            on_new_token=self.device_auth.forget_device,
            on_revoked=self.device_revoked,
            mqtt_state=self.mqtt_state,
            ops_snapshot=self.ops_snapshot,
        )

    def mqtt_state(self) -> str | None:
        if self.mqtt is None:
            return None
        return "connected" if self.mqtt.connected else "reconnecting"

    # ----- services

    async def _write(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self.ingest.run_writer(task_status=task_status)
        finally:
            self.live.close()  # the live stage finishes what the writer handed it

    def link_url(self, token: str) -> str:
        """The customer page URL for a tracking token."""
        return f"{self.public_url}/t/{token}"

    def device_revoked(self, device_id: str) -> None:
        self.device_auth.forget_device(device_id)
        if self.mqtt is not None:
            self.mqtt.forget(device_id)
        self.ws_ingest.kick_device(device_id, CLOSE_REVOKED, "device revoked")

    async def _tail_events(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every event in the log, whichever process wrote it, to the ops browsers."""
        last = "0-0"
        for ev in reversed(await self.events.read_reverse(RECENT_EVENTS)):
            self.recent_events.append(ev)
            last = ev["id"]
        task_status.started()
        outage = RedisOutage("event tail", self._redis_outage)
        while True:
            try:
                events = await outage.call(self.events.read_after, last, TAIL_BATCH, TAIL_BLOCK_MS)
            except Exception as exc:  # a bug, not an outage (that is waited out): loud
                self.metrics.inc("gateway_loop_errors_total", loop="event_tail")
                log_once(log, "the ops event tail failed", exc)
                await trio.sleep(1.0)
                continue
            for ev in events:
                last = ev["id"]
                self.recent_events.append(ev)
                self.hub.broadcast(_json.encode({"type": "event", "event": ev}))
                delivery = ev.get("delivery")
                if delivery:
                    self.hub.delivery_changed(delivery)

    def ops_snapshot(self) -> str:
        vehicles = b",".join(live_json(s) for s in self.fleet.vehicles.values())
        extra = _json.encode(
            {
                "tile_url": self.settings.tile_url,
                "events": list(self.recent_events),
                "fleet": self.demo_fleet.status if self.demo_fleet is not None else None,
            }
        )
        return (b'{"type":"snapshot","config":%s,"vehicles":[%s]}' % (extra, vehicles)).decode()

    # ----- services

    async def _announce_fleet(self, fleet: DemoFleet) -> None:
        """Each change of the simulated fleet's status to the ops browsers."""
        while True:
            status = await fleet.wait_changed()
            self.hub.broadcast(_json.encode({"type": "fleet", "fleet": status}))

    async def _sweep_offline(self) -> None:
        """Vehicles silent for ``OFFLINE_AFTER_S`` become offline: their state and events are
        recorded (waiting out a lost Redis, like positions) and shared with the peers."""
        outage = RedisOutage("offline sweep", self._redis_outage)
        while True:
            await trio.sleep(SWEEP_INTERVAL_S)
            changed = self.fleet.sweep(time.time())
            if not changed:
                continue
            events = []
            for s, ev in changed:
                self.hub.publish_state(s)
                events.append(ev)
                self.metrics.inc("gateway_events_total", type=ev.type)
            try:
                blobs = [(s.vehicle, encode_state(s)) for s, _ in changed]
                for vehicle, blob in blobs:
                    await outage.call(self.store.save_state, vehicle, blob)
                await outage.call(self.events.append, events)
                await outage.call(self.peers.announce, blobs)
            except Exception as exc:  # a bug, not an outage: loud
                self.metrics.inc("gateway_loop_errors_total", loop="offline_sweep")
                log_once(log, "could not record offline vehicles", exc)

    async def _watch_loop_lag(self) -> None:
        """How late the event loop wakes a sleeper: time it was busy with other work."""
        lag = self.metrics.latency.loop_lag
        while True:
            start = trio.current_time()
            await trio.sleep(LOOP_LAG_EVERY_S)
            lag.observe(max(0.0, trio.current_time() - start - LOOP_LAG_EVERY_S))

    def _redis_outage(self, service: str) -> None:
        self.metrics.inc("gateway_redis_outages_total", service=service)

    async def run(
        self,
        stop: trio.Event | None = None,
        *,
        task_status: trio.TaskStatus[Endpoints] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until ``stop`` is set (then stop gracefully) or until cancelled."""
        s = self.settings
        self.fleet.load(await self.store.load_states())
        await self.live.load_state(list(self.fleet.vehicles))
        await self.proofs.sweep()
        settle_garbage_collector()
        hc = HypercornConfig()
        hc.bind = [f"fd://{self._http_socket.detach()}"]  # hypercorn owns it from here
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")
        hc.graceful_timeout = SHUTDOWN_GRACE_S
        live_done = trio.Event()
        notify_scope = trio.CancelScope()

        async def live(task_status: trio.TaskStatus[None]) -> None:
            try:
                await self.live.run(task_status=task_status)
            finally:
                live_done.set()

        async def notifications(task_status: trio.TaskStatus[Notifier]) -> None:
            assert self.notifications is not None
            with notify_scope:
                await self.notifications.run(task_status=task_status)

        async with trio.open_nursery() as core:
            notifier = None
            if self.notifications is not None:
                notifier = await core.start(notifications)
            app = create_app(self.http_services(notifier))
            await core.start(live)
            await core.start(self._write)
            if self.mqtt is not None:
                # In core, not front: on a stop it acknowledges what the writer drains.
                await core.start(self.mqtt.run)
            async with trio.open_nursery() as front:
                ingest_port = await listening(
                    front.start(self.ws_ingest.serve, s.host, s.ingest_port),
                    s.host, s.ingest_port, "INGEST_PORT",
                )  # fmt: skip
                device_http_port = await listening(
                    front.start(self.device_http.serve, s.host, s.device_http_port),
                    s.host, s.device_http_port, "DEVICE_HTTP_PORT",
                )  # fmt: skip
                binds = await listening(
                    front.start(
                        lambda task_status: hypercorn_serve(app, hc, task_status=task_status)
                    ),
                    s.host, self.http_port, "HTTP_PORT",
                )  # fmt: skip
                http_url = binds[0]
                self.http_port = int(http_url.rsplit(":", 1)[1])
                front.start_soon(self.hub.feed.run)
                front.start_soon(self._watch_loop_lag)
                front.start_soon(self._sweep_offline)
                front.start_soon(self.links.follow_revocations)
                await front.start(self.peers.follow)
                await front.start(self._tail_events)
                if self.demo_fleet is not None:
                    front.start_soon(self._announce_fleet, self.demo_fleet)
                ep = Endpoints(
                    http_url=http_url,
                    ingest_url=f"ws://{s.host}:{ingest_port}/v1/ingest",
                    api_key=self.api_key,
                    redis_url=s.redis_url,
                    device_http_url=f"http://{s.host}:{device_http_port}",
                )
                # Where the command line finds this gateway, while it serves.
                pid = os.getpid()
                write_run_file(
                    self.data_dir,
                    RunInfo(
                        pid=pid,
                        http_url=http_url,
                        ingest_url=ep.ingest_url,
                        device_http_url=ep.device_http_url,
                    ),
                )
                try:
                    task_status.started(ep)
                    await (stop if stop is not None else trio.Event()).wait()
                finally:
                    remove_run_file(self.data_dir, pid)
                if self.mqtt is not None:
                    self.mqtt.stop_taking()
                front.cancel_scope.cancel()
            # Devices are gone; write what they sent before stopping, within a deadline
            # (MQTT acknowledges it as it is written, then disconnects), and let the
            # notifier run until the events of those positions are logged.
            core.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S
            if self.mqtt is not None:
                await self.mqtt.handed_over.wait()
            self.ingest.close()
            await live_done.wait()
            notify_scope.cancel()


async def run_gateway(
    settings: Settings,
    stop: trio.Event | None = None,
    *,
    fleet: DemoFleet | None = None,
    task_status: trio.TaskStatus[Endpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a gateway; with no ``redis_url``, also a private redis-server in the data folder.

    Setting ``stop`` stops it gracefully: ingest closes, queued positions are written
    (within ``DRAIN_GRACE_S``) and MQTT messages acknowledged as they are, then it returns.
    ``fleet``: the demo's simulated fleet, shown on the ops page. A server that cannot
    listen on its address raises ListenError.
    """
    data_dir = _data_dir(settings.data_dir)
    proc: RedisProcess | None = None
    url = settings.redis_url
    if not url:
        proc = start_private_redis(data_dir / "redis")
        url = proc.url
        settings = msgspec.structs.replace(settings, redis_url=url)
    try:
        async with connect_redis(url) as redis:
            gw = Gateway(settings, redis, data_dir, fleet)
            try:
                await gw.run(stop, task_status=task_status)
            finally:
                gw.close()
    finally:
        if proc is not None:
            proc.stop()


def _data_dir(path: str) -> Path:
    d = Path(path).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


def settle_garbage_collector() -> None:
    """Collect once, then leave what exists (modules, the loaded fleet, zones, routes) out of
    every later collection (``gc.freeze``), and collect the young generation less often.

    A full collection walks every object the process holds; with thousands of devices it
    paused the whole process for up to 0.6 s (device HTTP requests' p99 at 2,000 devices
    reporting once a second: 650 ms with the defaults, 77 ms with this;
    ``bench/http_ingest.py``). Cycles are still collected, less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, 50, 100)


def start_private_redis(folder: Path) -> RedisProcess:
    """Start the data folder's own redis-server, first stopping one a crashed run left behind."""
    stop_stale(folder)
    return start_redis(folder, appendonly=True)
