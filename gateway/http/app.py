"""The HTTP side (quart-trio on hypercorn): the REST API, the ops and customer pages, the
browsers' live WebSockets and ``/openapi.json``.

``create_app`` takes the services the gateway built (``HttpServices``) and hands each route
module exactly the ones it uses. Everything under ``/v1`` needs an agent API key
(``Authorization: Bearer <key>`` or ``X-API-Key``), except what devices and customers use
with their own tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from gateway.config import Settings
from gateway.core.events import EventLog
from gateway.core.metrics import Metrics
from gateway.customer.claims import ClaimsService
from gateway.customer.links import Links
from gateway.customer.pod import Proofs
from gateway.customer.view import CustomerViews
from gateway.dispatch.service import Dispatch
from gateway.fleet.devices import Devices
from gateway.fleet.hub import Hub
from gateway.fleet.state import Fleet
from gateway.fleet.store import Store
from gateway.http import claims, customer, devices, dispatch, fleet, notify_ops, ops, pod, zones
from gateway.http.common import AgentAuth
from gateway.http.errors import install_error_handlers
from gateway.http.guard import GuardedQuartTrio, RedisGuard
from gateway.http.models import Health
from gateway.http.openapi import openapi_spec
from gateway.http.spec import Content, Op, merged
from gateway.ingest.auth import DeviceAuth
from gateway.ingest.device_http import DeviceRequests
from gateway.live.tracking import LiveTracking
from gateway.notifications import Notifications
from gateway.zones.store import ZoneStore
from notify import Notifier
from notify import create_blueprint as notify_blueprint
from notify.redis_client import RedisClient

MAX_CONTENT_LENGTH: Final = 16 * 2**20

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("GET", "/healthz", "Liveness and Redis reachability",
       {200: Health, 503: Health}, public=True),
    Op("GET", "/metrics", "Prometheus metrics",
       {200: Content("text/plain", {"type": "string"}, "text exposition format")}, public=True),
    Op("GET", "/openapi.json", "This description",
       {200: Content("application/json", {"type": "object"}, "OpenAPI 3.1")}, public=True),
]  # fmt: skip

ALL_OPS: Final = merged(
    OPS, fleet.OPS, dispatch.OPS, zones.OPS, claims.OPS, customer.OPS, pod.OPS, devices.OPS,
    ops.OPS, notify_ops.OPS,
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class HttpServices:
    """What the HTTP side is given: the gateway's services, built before it."""

    settings: Settings
    public_url: str
    redis: RedisClient[bytes]
    metrics: Metrics
    agent: AgentAuth
    devices: Devices
    store: Store
    events: EventLog
    fleet: Fleet
    hub: Hub
    device_auth: DeviceAuth
    device_requests: DeviceRequests
    dispatch: Dispatch
    zones: ZoneStore
    live: LiveTracking
    links: Links
    views: CustomerViews
    proofs: Proofs
    claims: ClaimsService
    notifications: Notifications | None
    notifier: Notifier | None
    # Called with a device id once its token changed, or once it was revoked.
    on_new_token: Callable[[str], None]
    on_revoked: Callable[[str], None]
    # The MQTT link's state for /healthz (None: no MQTT), and the ops browsers' snapshot.
    mqtt_state: Callable[[], str | None]
    ops_snapshot: Callable[[], str]


def create_app(svc: HttpServices) -> QuartTrio:
    s = svc.settings
    app = GuardedQuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.guard = RedisGuard(svc.redis, svc.metrics, s.api_redis_retry_s, app.add_background_task)
    install_error_handlers(app, svc.metrics)
    agent = svc.agent

    @app.get("/healthz")
    async def healthz() -> Any:
        try:
            with trio.fail_after(2):
                await svc.redis.ping()
        except Exception as exc:
            return jsonify({"status": "degraded", "redis": str(exc)}), 503
        body: dict[str, Any] = {"status": "ok"}
        mqtt = svc.mqtt_state()
        if mqtt is not None:
            body["mqtt"] = mqtt
        if svc.notifications is not None and svc.notifications.channels:
            body["notify"] = svc.notifications.channels
        return jsonify(body)

    @app.get("/metrics")
    async def metrics() -> Any:
        return Response(svc.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    async def openapi() -> Any:
        return jsonify(openapi_spec(svc.public_url, ALL_OPS))

    app.register_blueprint(
        fleet.fleet_blueprint(
            svc.devices,
            svc.store,
            svc.fleet,
            svc.events,
            agent,
            svc.live.engine,
            on_new_token=svc.on_new_token,
            on_revoked=svc.on_revoked,
            future_tolerance_s=s.future_tolerance_s,
        )
    )
    app.register_blueprint(zones.zones_blueprint(svc.zones, svc.live, agent))
    app.register_blueprint(devices.http_ingest_blueprint(svc.device_requests))
    app.register_blueprint(dispatch.dispatch_blueprint(svc.dispatch, agent))
    app.register_blueprint(
        customer.customer_blueprint(
            svc.links,
            svc.views,
            svc.dispatch,
            svc.proofs,
            svc.hub,
            agent,
            public_url=svc.public_url,
            tile_url=s.tile_url,
        )
    )
    app.register_blueprint(
        pod.pod_blueprint(
            svc.proofs,
            svc.dispatch.store,
            agent,
            svc.device_auth,
            future_tolerance_s=s.future_tolerance_s,
        )
    )
    app.register_blueprint(
        ops.ops_blueprint(
            agent,
            event_log=svc.events,
            dispatch=svc.dispatch.store,
            tracking=svc.live,
            hub=svc.hub,
            metrics=svc.metrics,
            snapshot=svc.ops_snapshot,
            notifier=svc.notifier,
            notifications=svc.notifications,
        )
    )
    app.register_blueprint(claims.claims_blueprint(svc.claims, agent))
    if svc.notifier is not None and svc.notifications is not None:
        app.register_blueprint(
            notify_blueprint(
                svc.notifier,
                twilio_auth_token=svc.notifications.twilio_auth_token,
                auth=agent,
                public_url=svc.public_url,
            )
        )
    return app


__all__ = ["HttpServices", "create_app"]
