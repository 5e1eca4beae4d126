"""The ops page and its live stream, and the operations endpoints: KPIs from the event log,
the routes this process tracks, what the local capture servers received, and a CSV export
of deliveries.

Browsers cannot set headers on a WebSocket, so the ops stream takes the key as ``?key=``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
import trio
from quart import Blueprint, Response, jsonify, send_from_directory, websocket

from gateway.core.events import EventLog
from gateway.core.metrics import Metrics
from gateway.dispatch.kpis import compute_kpis
from gateway.dispatch.store import DispatchStore
from gateway.fleet.hub import Hub
from gateway.http.common import STATIC_DIR, AgentAuth, drain_browser
from gateway.http.errors import ApiError
from gateway.http.ops_models import Captured, DeliveriesCsvQuery, Kpis, KpisQuery, Live
from gateway.http.spec import Content, Op, read_query
from gateway.live.tracking import LiveTracking
from gateway.notifications import Notifications
from notify import Notifier

MAX_KPI_EVENTS: Final = 500_000
MAX_ALERTS: Final = 100_000
CAPTURE_SHOWN: Final = 200
CSV_COLUMNS: Final = (
    "id", "external_id", "status", "route", "stop", "kind", "address", "window_start",
    "window_end", "recipient_name", "reason", "note", "updated",
)  # fmt: skip

_CSV: Final = Content("text/csv", {"type": "string"}, "one row per delivery, with a header")

# The operations of this module, for /openapi.json.
OPS: Final = [
    Op("GET", "/v1/kpis", "KPIs from the event log", {200: Kpis}, query=KpisQuery),
    Op("GET", "/v1/live", "Routes tracked by this process, with ETAs", {200: Live}),
    Op("GET", "/v1/capture/messages", "What the local capture servers received (demo)",
       {200: Captured, 404: None}),
    Op("GET", "/v1/deliveries.csv", "Deliveries as CSV, by window start",
       {200: _CSV, 404: None}, query=DeliveriesCsvQuery),
]  # fmt: skip


def ops_blueprint(
    agent: AgentAuth,
    *,
    event_log: EventLog,
    dispatch: DispatchStore,
    tracking: LiveTracking,
    hub: Hub,
    metrics: Metrics,
    snapshot: Callable[[], str],
    notifier: Notifier | None,
    notifications: Notifications | None,
) -> Blueprint:
    """``snapshot``: the whole picture a browser starts from (and gets again when it fell
    behind)."""
    bp = Blueprint("ops", __name__)

    @bp.get("/")
    async def index() -> Any:
        return Response("", status=302, headers={"Location": "/ops"})

    @bp.get("/ops")
    async def ops_page() -> Any:
        return await send_from_directory(STATIC_DIR, "ops.html")

    @bp.get("/static/<path:name>")
    async def static_file(name: str) -> Any:
        return await send_from_directory(STATIC_DIR, name)

    @bp.websocket("/v1/ops/live")
    async def ops_live() -> Any:
        if not agent.check(websocket.args.get("key")):
            return Response("missing or invalid API key", status=401)
        await websocket.accept()
        feed = hub.feed
        feed.watchers += 1
        try:
            # Frames and snapshots are built once a tick for every browser (FleetFeed).
            tick, first = feed.snapshot(snapshot)
            await websocket.send(first)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_browser)
                page_latency = metrics.latency.page.labels("ops")
                while True:
                    after = tick
                    tick, frames = await feed.next(after)
                    if frames is None:  # too far behind: start again from the picture
                        metrics.inc("gateway_browser_snapshots_total")
                        tick, first = feed.snapshot(snapshot)
                        frames = [first]
                    for frame in frames:
                        await websocket.send(frame)
                    oldest = feed.oldest_update(after)
                    if oldest is not None:
                        page_latency.observe(max(0.0, time.time() - oldest))
                    metrics.inc("gateway_browser_messages_total", len(frames))
        finally:
            feed.watchers -= 1

    @bp.get("/v1/kpis")
    @agent
    async def kpis() -> Any:
        q = read_query(KpisQuery)
        since = time.time() - 86_400 if isinstance(q.since, msgspec.UnsetType) else q.since
        events: list[dict[str, Any]] = []
        cursor = f"{int(since * 1000)}-0"
        while len(events) < MAX_KPI_EVENTS:
            page = await event_log.read(cursor, 5000)
            if not page:
                break
            events.extend(page)
            ms, seq = page[-1]["id"].split("-")
            cursor = f"{ms}-{int(seq) + 1}"
        deliveries = await dispatch.list_deliveries()
        body = compute_kpis(events, {d.id: d.window.end for d in deliveries})
        body["since"] = since
        body["events"] = len(events)
        if notifier is not None:
            alerts = await notifier.alerts.list_alerts(None, limit=MAX_ALERTS)
            open_alerts = [a for a in alerts if a.status != "resolved"]
            solved = [a.time_to_resolve_s for a in alerts if a.time_to_resolve_s is not None]
            body["open_exceptions"] = len(open_alerts)
            body["avg_resolution_s"] = sum(solved) / len(solved) if solved else None
        return jsonify(body)

    @bp.get("/v1/live")
    @agent
    async def live() -> Any:
        """The routes this process tracks, with each pending stop's ETA."""
        routes = {
            vehicle: {
                "route": t.route.id,
                "etas": t.tracker.etas(),
                "stops": {s.id: t.tracker.stop_status(s.id) for s in t.route.stops},
            }
            for vehicle, t in tracking.routes.items()
        }
        return jsonify({"routes": routes, "zones": len(tracking.engine.zones())})

    @bp.get("/v1/capture/messages")
    @agent
    async def captured() -> Any:
        """What the local capture servers received (only when they stand in for Twilio and
        SMTP), newest first: lets a demo user read the texts and open their links."""
        n = notifications
        if n is None or (n.sms_capture is None and n.email_capture is None):
            raise ApiError(404, "no capture servers run: SMS and email go to real providers")
        sms = [] if n.sms_capture is None else n.sms_capture.messages[-CAPTURE_SHOWN:]
        mail = [] if n.email_capture is None else n.email_capture.messages[-CAPTURE_SHOWN:]
        return jsonify(
            {
                "sms": [
                    {"to": m.to, "from": m.from_, "body": m.body, "ts": m.received_at}
                    for m in reversed(sms)
                ],
                "email": [
                    {
                        "to": list(m.rcpt_tos),
                        "subject": m.subject,
                        "text": m.part("text/plain"),
                        "ts": m.received_at,
                    }
                    for m in reversed(mail)
                ],
            }
        )

    @bp.get("/v1/deliveries.csv")
    @agent
    async def deliveries_csv() -> Any:
        q = read_query(DeliveriesCsvQuery)
        status = None if isinstance(q.status, msgspec.UnsetType) else q.status
        route = None if isinstance(q.route, msgspec.UnsetType) else q.route
        rid = await dispatch.resolve_route(route) if route else None
        if route and rid is None:
            raise ApiError(404, "no such route", "route")
        rows = await dispatch.list_deliveries(rid)
        rows.sort(key=lambda d: (d.window.start, d.external_id))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_COLUMNS)
        for d in rows:
            if status and d.status != status:
                continue
            w.writerow([d.id, d.external_id, d.status, d.route or "", d.stop or "", d.kind,
                        d.address, d.window.start, d.window.end, d.recipient.name,
                        d.reason or "", d.note or "", d.updated])  # fmt: skip
        return Response(
            buf.getvalue(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="deliveries.csv"'},
        )

    return bp
