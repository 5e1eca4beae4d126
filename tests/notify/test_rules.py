"""Rules from events to messages and alerts: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from notify.deliveries import Delivery, Recipient, Window
from notify.events import Event
from notify.rules import (
    RulesConfig,
    alert_for,
    customer_intents,
    in_quiet_hours,
    oncall_intents,
    quiet_hours_end,
    resolved_alert_keys,
)

PARIS = ZoneInfo("Europe/Paris")


def at(hour: int, minute: int = 0, day: int = 16) -> float:
    """Epoch seconds of a Paris wall time in June 2025 (UTC+2)."""
    return datetime(2025, 6, day, hour, minute, tzinfo=PARIS).timestamp()


def delivery(channels: tuple[str, ...] = ("sms", "email"), status: str = "out") -> Delivery:
    return Delivery(
        id="d1",
        route="r1",
        stop="s3",
        status=status,
        window=Window(at(14), at(16)),
        recipient=Recipient(
            name="Ana",
            phone="+33612345678",
            email="ana@example.com",
            language="fr",
            timezone="Europe/Paris",
            channels=channels,
        ),
    )


def event(kind: str, ts: float, **data: object) -> Event:
    return Event(type=kind, ts=ts, vehicle="v1", route="r1", stop="s3", delivery="d1", data=data)


CONFIG = RulesConfig()


def test_one_message_per_chosen_channel_with_stable_keys() -> None:
    ev = event("delivery.out_for_delivery", at(9))
    intents = customer_intents(ev, delivery(), at(9), CONFIG, "https://t/1")
    assert [(i.channel, i.to) for i in intents] == [
        ("sms", "+33612345678"),
        ("email", "ana@example.com"),
    ]
    assert intents[0].key == "dlv:d1:out_for_delivery:r1:s3:sms"
    assert intents[0].context["tracking_url"] == "https://t/1"
    assert intents[0].expires_at == at(16)  # useless after the window
    again = customer_intents(ev, delivery(), at(10), CONFIG, "https://t/1")
    assert [i.key for i in again] == [i.key for i in intents]


def test_no_channels_means_no_messages() -> None:
    ev = event("delivery.delivered", at(15))
    assert customer_intents(ev, delivery(channels=()), at(15), CONFIG) == []
    assert customer_intents(ev, None, at(15), CONFIG) == []


def test_small_eta_changes_do_not_notify_and_delays_are_bucketed() -> None:
    small = event("delivery.eta_changed", at(11), eta=at(15), window_end=at(16), delta_s=300)
    assert customer_intents(small, delivery(("sms",)), at(11), CONFIG) == []
    big = event("delivery.eta_changed", at(11), eta=at(17), window_end=at(16), delta_s=3600)
    later = event("delivery.eta_changed", at(11, 40), eta=at(18), window_end=at(16), delta_s=3600)
    next_hour = event("delivery.eta_changed", at(12, 5), eta=at(18), window_end=at(16), delta_s=900)
    keys = [
        customer_intents(e, delivery(("sms",)), e.ts, CONFIG)[0].key
        for e in (big, later, next_hour)
    ]
    assert keys[0] == keys[1] != keys[2]
    risk = event("delivery.late_risk", at(11, 10), eta=at(17), window_end=at(16), delta_s=3600)
    [intent] = customer_intents(risk, delivery(("sms",)), at(11, 10), CONFIG)
    assert intent.trigger == "delayed" and intent.key == keys[0]
    assert intent.expires_at == at(17)


def test_progress_messages_stop_once_the_delivery_is_finished() -> None:
    ev = event("delivery.arriving", at(15), eta=at(15, 5), distance_m=900)
    assert customer_intents(ev, delivery(status="delivered"), at(15), CONFIG) == []
    done = event("delivery.delivered", at(15), pod_url="https://pod/1")
    assert len(customer_intents(done, delivery(status="delivered"), at(15), CONFIG)) == 2


def test_arriving_counts_minutes() -> None:
    ev = event("delivery.arriving", at(15), eta=at(15, 7), distance_m=900)
    [intent] = customer_intents(ev, delivery(("sms",)), at(15), CONFIG)
    assert intent.context["minutes"] == 7 and intent.urgent


@pytest.mark.parametrize(
    ("local", "quiet"),
    [(time(20, 59), False), (time(21, 0), True), (time(23, 30), True), (time(0, 0), True),
     (time(7, 59), True), (time(8, 0), False), (time(12, 0), False)],
)  # fmt: skip
def test_quiet_window_wraps_midnight(local: time, quiet: bool) -> None:
    assert in_quiet_hours(local, time(21), time(8)) is quiet


def test_quiet_hours_hold_until_morning_in_the_recipient_zone() -> None:
    assert quiet_hours_end(at(12), "Europe/Paris", time(21), time(8)) is None
    assert quiet_hours_end(at(22), "Europe/Paris", time(21), time(8)) == at(8, day=17)
    assert quiet_hours_end(at(6), "Europe/Paris", time(21), time(8)) == at(8, day=16)
    # 22:00 in Paris is 16:00 in New York: not quiet there.
    assert quiet_hours_end(at(22), "America/New_York", time(21), time(8)) is None


def test_quiet_hours_across_a_dst_change() -> None:
    # Night of 29-30 March 2025: Paris goes from UTC+1 to UTC+2 at 02:00.
    evening = datetime(2025, 3, 29, 23, 0, tzinfo=PARIS).timestamp()
    release = quiet_hours_end(evening, "Europe/Paris", time(21), time(8))
    assert release == datetime(2025, 3, 30, 6, 0, tzinfo=UTC).timestamp()


def test_non_urgent_messages_are_held_and_urgent_ones_are_not() -> None:
    late = at(22)
    delivered = event("delivery.delivered", late)
    [held] = customer_intents(delivered, delivery(("sms",)), late, CONFIG)
    assert held.not_before == at(8, day=17)
    arriving = event("delivery.arriving", late, eta=late + 300, distance_m=500)
    [now] = customer_intents(arriving, delivery(("sms",)), late, CONFIG)
    assert now.not_before == 0.0


def test_rate_limit_key_is_per_recipient_and_window() -> None:
    ev = event("delivery.delivered", at(15))
    sms, email = customer_intents(ev, delivery(), at(15), CONFIG)
    assert sms.rate is not None and email.rate is not None
    assert sms.rate.key.startswith("sms:+33612345678:") and sms.rate.limit == CONFIG.rate_limit
    assert email.rate.key.startswith("email:ana@example.com:")


def test_notification_events_never_make_messages_or_alerts() -> None:
    ev = Event(type="notification.failed", ts=at(15), delivery="d1", data={"reason": "x"})
    assert customer_intents(ev, delivery(), at(15), CONFIG) == []
    assert alert_for(ev) is None


@pytest.mark.parametrize(
    ("kind", "data", "severity", "key"),
    [
        ("delivery.late_risk", {"eta": 7200.0, "window_end": 3600.0}, "warning", "late_risk:d1"),
        ("vehicle.stopped_too_long", {"duration_s": 1500}, "warning", "stopped:v1"),
        ("vehicle.off_route", {"distance_m": 420.0}, "warning", "off_route:v1"),
        ("vehicle.offline", {}, "warning", "offline:v1"),
        ("vehicle.temperature_excursion", {"temp_c": 9.5}, "critical", "temperature:v1"),
        ("delivery.failed", {"reason": "no_access", "note": "gate"}, "warning", "failed:d1:s3"),
        ("delivery.customer_message", {"from": "+1", "body": "hi"}, "info", "customer_message:d1"),
    ],
)
def test_alerts(kind: str, data: dict[str, object], severity: str, key: str) -> None:
    spec = alert_for(event(kind, at(12), **data))
    assert spec is not None
    assert (spec.severity, spec.key, spec.vehicle) == (severity, key, "v1")
    assert spec.detail


def test_alert_details_are_specific() -> None:
    late = alert_for(event("delivery.late_risk", 0, eta=7200.0, window_end=3600.0))
    assert late is not None and "60 min after the window" in late.detail
    temp = alert_for(event("vehicle.temperature_excursion", 0, temp_c=9.5))
    assert temp is not None and "9.5 °C" in temp.detail
    assert alert_for(event("delivery.arriving", 0)) is None


def test_resolutions() -> None:
    online = Event(type="vehicle.online", ts=0, vehicle="v1")
    assert resolved_alert_keys(online) == ["offline:v1"]
    assert resolved_alert_keys(event("delivery.delivered", 0)) == ["late_risk:d1"]


def test_oncall_only_at_or_above_the_configured_severity() -> None:
    config = RulesConfig(oncall_emails=("ops@example.com",), oncall_phones=("+15005550006",))
    critical = alert_for(event("vehicle.temperature_excursion", 0, temp_c=9.5))
    warning = alert_for(event("vehicle.offline", 0))
    assert critical is not None and warning is not None
    intents = oncall_intents("al_1", critical, 0, config)
    assert [(i.channel, i.to) for i in intents] == [
        ("email", "ops@example.com"),
        ("sms", "+15005550006"),
    ]
    assert all(i.urgent and i.trigger == "alert" for i in intents)
    assert oncall_intents("al_2", warning, 0, config) == []


def test_cleared_events_resolve_their_alerts() -> None:
    pairs = [
        ("vehicle.stopped_too_long", "vehicle.stopped_too_long_cleared", {"stopped_s": 900.0}),
        ("vehicle.off_route", "vehicle.off_route_cleared", {"distance_m": 400.0}),
        ("vehicle.temperature_excursion", "vehicle.temperature_excursion_cleared",
         {"temp_c": 11.0}),
        ("delivery.late_risk", "delivery.late_risk_cleared", {"eta": at(17), "window_end": at(16)}),
    ]  # fmt: skip
    for raised, cleared, data in pairs:
        spec = alert_for(event(raised, at(10), **data))
        assert spec is not None, raised
        assert resolved_alert_keys(event(cleared, at(11))) == [spec.key], cleared
    stopped = alert_for(event("vehicle.stopped_too_long", at(10), stopped_s=900.0))
    assert stopped is not None and "15 min" in stopped.detail


def test_a_proof_far_from_the_stop_raises_an_alert() -> None:
    spec = alert_for(event("delivery.pod_flagged", at(10), distance_m=812.4))
    assert spec is not None and spec.key == "pod:d1" and "812 m" in spec.detail


def test_delivered_and_failed_messages_link_to_the_tracking_page() -> None:
    done = customer_intents(event("delivery.delivered", at(10)), delivery(), at(10), CONFIG,
                            "https://t/1")  # fmt: skip
    assert done and all(i.context["pod_url"] == "https://t/1" for i in done)
    failed = customer_intents(event("delivery.failed", at(10), reason="nobody_home"),
                              delivery(), at(10), CONFIG, "https://t/1")  # fmt: skip
    assert failed and all(i.context["reschedule_url"] == "https://t/1" for i in failed)
    moving = customer_intents(event("delivery.out_for_delivery", at(10)), delivery(), at(10),
                              CONFIG, "https://t/1")  # fmt: skip
    assert all(i.context["pod_url"] is None for i in moving)
