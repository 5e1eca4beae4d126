"""Which events become which messages and alerts: pure functions, no I/O.

Customer messages
    ``delivery.out_for_delivery`` -> out_for_delivery, once per route stop;
    ``delivery.arriving`` -> arriving, once per route stop;
    ``delivery.eta_changed`` (ETA later by at least ``delayed_min_delta_s``) and
    ``delivery.late_risk`` -> delayed, at most once per ``delayed_interval_s`` bucket;
    ``delivery.delivered`` -> delivered, once; ``delivery.failed`` -> failed, once per stop.
    One message per channel the recipient chose (``recipient.channels``) and has an address
    for. The idempotency key names the delivery, trigger, occasion and channel, so the outbox
    queues each at most once however often the event is replayed.

Quiet hours
    Non-urgent messages falling in the recipient's quiet hours (local time, default
    21:00-08:00) get ``not_before`` at the end of the quiet period. "arriving" is urgent:
    the van is at the door whatever the hour. Messages that would be stale when released
    carry ``expires_at`` (an out-for-delivery text after the window has closed, a delay
    notice after the new ETA).

Rate limit
    At most ``rate_limit`` messages per recipient address per ``rate_window_s``; the outbox
    counts them (see ``RateLimit``).

Agent alerts
    late_risk, stopped_too_long, off_route, offline, temperature_excursion, failed
    attempts and customers' text replies (``delivery.customer_message``) raise alerts,
    deduplicated while open by a key (the vehicle or delivery);
    ``vehicle.online`` resolves an offline alert and ``delivery.delivered`` a late-risk one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Final, Literal

from .deliveries import CUSTOMER_CHANNELS, Delivery
from .events import Event
from .outbox import RateLimit
from .templates import zone

Trigger = Literal["out_for_delivery", "arriving", "delayed", "delivered", "failed"]
Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: Final = {"info": 0, "warning": 1, "critical": 2}

URGENT_TRIGGERS: Final = frozenset({"arriving"})
# A delivery in one of these states gets no more "on its way" messages.
FINISHED_STATUSES: Final = frozenset({"delivered", "failed", "returned", "cancelled"})
_PROGRESS_TRIGGERS: Final = frozenset({"out_for_delivery", "arriving", "delayed"})
ARRIVING_VALID_S: Final = 30 * 60.0  # an "arriving" text is useless this long after the event
OUT_FOR_DELIVERY_VALID_S: Final = 12 * 3600.0  # when the delivery has no window


@dataclass(frozen=True, slots=True)
class RulesConfig:
    delayed_min_delta_s: float = 600.0  # an ETA slipping less than this is not worth a text
    delayed_interval_s: int = 3600  # at most one delay notice per delivery per interval
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    rate_limit: int = 6
    rate_window_s: int = 3600
    oncall_min_severity: Severity = "critical"
    oncall_emails: tuple[str, ...] = ()
    oncall_phones: tuple[str, ...] = ()
    oncall_timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Intent:
    """A customer (or on-call) message to write: what, to whom, when, and its key."""

    trigger: str
    channel: str
    to: str
    key: str
    delivery: str | None
    brand: str
    language: str
    timezone: str
    context: Mapping[str, Any]
    not_before: float = 0.0
    expires_at: float | None = None
    urgent: bool = False
    rate: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert to raise; ``key`` deduplicates it while an alert with that key is open."""

    kind: str
    key: str
    severity: Severity
    title: str
    detail: str
    vehicle: str | None = None
    route: str | None = None
    stop: str | None = None
    delivery: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


# ----- quiet hours


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """Whether local wall time ``local`` falls in [start, end), which may wrap midnight."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(now: float, timezone: str, start: time, end: time) -> float | None:
    """Epoch seconds when the quiet period around ``now`` ends, or ``None`` if not quiet."""
    tz = zone(timezone)
    local = datetime.fromtimestamp(now, tz)
    if not in_quiet_hours(local.time(), start, end):
        return None
    release = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if release <= local:
        release = (local + timedelta(days=1)).replace(
            hour=end.hour, minute=end.minute, second=0, microsecond=0
        )
    # zoneinfo datetimes add in wall time, so a DST change overnight is honoured here.
    return release.timestamp()


# ----- customer messages


def customer_trigger(event: Event, config: RulesConfig) -> Trigger | None:
    """The customer message an event calls for, if any."""
    kind = event.type
    if kind == "delivery.out_for_delivery":
        return "out_for_delivery"
    if kind == "delivery.arriving":
        return "arriving"
    if kind == "delivery.late_risk":
        return "delayed"
    if kind == "delivery.eta_changed":
        delta = _num(event.data.get("delta_s"))
        return "delayed" if delta is not None and delta >= config.delayed_min_delta_s else None
    if kind == "delivery.delivered":
        return "delivered"
    if kind == "delivery.failed":
        return "failed"
    return None


def _occasion(trigger: str, event: Event, delivery: Delivery, config: RulesConfig) -> str:
    route = event.route or delivery.route or "-"
    stop = event.stop or delivery.stop or "-"
    if trigger == "delayed":
        return f"b{int(event.ts // config.delayed_interval_s)}"
    if trigger == "delivered":
        return "-"
    return f"{route}:{stop}"


def _context(
    trigger: str, event: Event, delivery: Delivery, tracking_url: str | None
) -> dict[str, Any]:
    data = event.data
    window = delivery.window
    eta = _num(data.get("eta"))
    minutes = None
    if trigger == "arriving" and eta is not None:
        minutes = max(1, round((eta - event.ts) / 60))
    return {
        "recipient_name": delivery.recipient.name,
        "delivery_id": delivery.id,
        "external_id": delivery.external_id,
        "tracking_url": tracking_url or "",
        # The tracking page shows the proof once delivered and offers new windows after a
        # failed attempt, so the link serves both when the event names no other.
        "reschedule_url": data.get("reschedule_url")
        or (tracking_url if trigger == "failed" else None),
        "ts": event.ts,
        "eta": eta,
        "eta_day_differs": bool(
            eta is not None and window is not None and eta - window.end > 12 * 3600
        ),
        "window_start": window.start if window else None,
        "window_end": _num(data.get("window_end")) or (window.end if window else None),
        "minutes": minutes,
        "distance_m": _num(data.get("distance_m")) or 0.0,
        "delta_s": _num(data.get("delta_s")),
        "pod_url": data.get("pod_url") or (tracking_url if trigger == "delivered" else None),
        "reason": data.get("reason", "other"),
        "note": data.get("note", ""),
    }


def _expiry(trigger: str, event: Event, delivery: Delivery) -> float | None:
    if trigger == "arriving":
        return event.ts + ARRIVING_VALID_S
    if trigger == "out_for_delivery":
        return delivery.window.end if delivery.window else event.ts + OUT_FOR_DELIVERY_VALID_S
    if trigger == "delayed":
        eta = _num(event.data.get("eta"))
        return eta if eta is not None else None
    return None


def customer_intents(
    event: Event,
    delivery: Delivery | None,
    now: float,
    config: RulesConfig,
    tracking_url: str | None = None,
) -> list[Intent]:
    """The customer messages ``event`` calls for, one per chosen channel.

    ``tracking_url`` is the delivery's signed tracking link (used by out_for_delivery,
    arriving, delayed and failed).
    """
    if delivery is None or event.is_notification:
        return []
    trigger = customer_trigger(event, config)
    if trigger is None:
        return []
    if trigger in _PROGRESS_TRIGGERS and delivery.status in FINISHED_STATUSES:
        return []
    recipient = delivery.recipient
    urgent = trigger in URGENT_TRIGGERS
    not_before = 0.0
    if not urgent:
        release = quiet_hours_end(now, recipient.timezone, config.quiet_start, config.quiet_end)
        not_before = release or 0.0
    occasion = _occasion(trigger, event, delivery, config)
    context = _context(trigger, event, delivery, tracking_url)
    expires_at = _expiry(trigger, event, delivery)
    intents = []
    for channel in dict.fromkeys(recipient.channels):
        if channel not in CUSTOMER_CHANNELS:
            continue
        to = recipient.phone if channel == "sms" else recipient.email
        if not to:
            continue
        bucket = int(now // config.rate_window_s)
        intents.append(
            Intent(
                trigger=trigger,
                channel=channel,
                to=to,
                key=f"dlv:{delivery.id}:{trigger}:{occasion}:{channel}",
                delivery=delivery.id,
                brand=delivery.brand,
                language=recipient.language,
                timezone=recipient.timezone,
                context=context,
                not_before=not_before,
                expires_at=expires_at,
                urgent=urgent,
                rate=RateLimit(
                    key=f"{channel}:{to}:{bucket}",
                    limit=config.rate_limit,
                    window_s=config.rate_window_s,
                ),
            )
        )
    return intents


# ----- agent alerts


def alert_for(event: Event) -> AlertSpec | None:
    """The alert ``event`` raises, if any."""
    described = _describe_alert(event)
    if described is None:
        return None
    key, severity, title, detail = described
    return AlertSpec(
        kind=event.type,
        key=key,
        severity=severity,
        title=title,
        detail=detail,
        vehicle=event.vehicle,
        route=event.route,
        stop=event.stop,
        delivery=event.delivery,
        data=dict(event.data),
    )


def _describe_alert(event: Event) -> tuple[str, Severity, str, str] | None:
    d = event.data
    kind = event.type
    if kind == "delivery.late_risk":
        eta, end = _num(d.get("eta")), _num(d.get("window_end"))
        late = f"{round((eta - end) / 60)} min after the window" if eta and end else "late"
        return (
            f"late_risk:{event.delivery}",
            "warning",
            "Delivery at risk of missing its window",
            f"Estimated arrival {late}.",
        )
    if kind == "vehicle.stopped_too_long":
        minutes = round((_num(d.get("stopped_s", d.get("duration_s"))) or 0) / 60)
        detail = f"Stopped for {minutes} min." if minutes else "Stopped longer than allowed."
        return f"stopped:{event.vehicle}", "warning", "Vehicle stopped too long", detail
    if kind == "vehicle.off_route":
        metres = _num(d.get("distance_m"))
        detail = f"{round(metres)} m from the planned route." if metres else "Left its corridor."
        return f"off_route:{event.vehicle}", "warning", "Vehicle off its route", detail
    if kind == "vehicle.offline":
        detail = "No position received from the vehicle's device."
        return f"offline:{event.vehicle}", "warning", "Vehicle device offline", detail
    if kind == "vehicle.temperature_excursion":
        temp = _num(d.get("temp_c"))
        detail = (
            f"Load temperature {temp:g} °C outside its range."
            if temp is not None
            else "Load temperature outside its range."
        )
        return f"temperature:{event.vehicle}", "critical", "Temperature excursion", detail
    if kind == "delivery.failed":
        reason = str(d.get("reason", "other")).replace("_", " ")
        note = d.get("note")
        detail = f"Reason: {reason}." + (f" Driver's note: {note}" if note else "")
        key = f"failed:{event.delivery}:{event.stop}"
        return key, "warning", "Delivery attempt failed", detail
    if kind == "delivery.pod_flagged":
        metres = _num(d.get("distance_m"))
        detail = (
            f"Proof of delivery taken {round(metres)} m from the stop."
            if metres is not None
            else "Proof of delivery taken away from the stop."
        )
        return f"pod:{event.delivery}", "warning", "Proof of delivery away from the stop", detail
    if kind == "delivery.customer_message":
        # Replies about one delivery bump one alert; the latest text is its detail.
        key = f"customer_message:{event.delivery or d.get('from')}"
        detail = f"{d.get('from', 'A customer')} wrote: {d.get('body', '')}"
        return key, "info", "Customer sent a message", detail
    return None


def resolved_alert_keys(event: Event) -> list[str]:
    """Keys of open alerts that ``event`` shows are over."""
    if event.type == "vehicle.online" and event.vehicle:
        return [f"offline:{event.vehicle}"]
    if event.type in ("delivery.delivered", "delivery.late_risk_cleared") and event.delivery:
        return [f"late_risk:{event.delivery}"]
    cleared = {
        "vehicle.stopped_too_long_cleared": "stopped",
        "vehicle.off_route_cleared": "off_route",
        "vehicle.temperature_excursion_cleared": "temperature",
    }.get(event.type)
    if cleared and event.vehicle:
        return [f"{cleared}:{event.vehicle}"]
    return []


def oncall_intents(alert_id: str, spec: AlertSpec, now: float, config: RulesConfig) -> list[Intent]:
    """Messages to the on-call addresses for a new alert at or above the configured severity."""
    if SEVERITY_RANK[spec.severity] < SEVERITY_RANK[config.oncall_min_severity]:
        return []
    context = {
        "alert_id": alert_id,
        "severity": spec.severity,
        "title": spec.title,
        "detail": spec.detail,
        "vehicle": spec.vehicle,
        "route": spec.route,
        "delivery": spec.delivery,
        "ts": now,
    }
    targets = [("email", a) for a in config.oncall_emails] + [
        ("sms", p) for p in config.oncall_phones
    ]
    return [
        Intent(
            trigger="alert",
            channel=channel,
            to=to,
            key=f"alert:{alert_id}:{channel}:{to}",
            delivery=None,
            brand="default",
            language="en",
            timezone=config.oncall_timezone,
            context=context,
            urgent=True,
        )
        for channel, to in targets
    ]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
