"""Counters and gauges, exposed in the Prometheus text format at ``/metrics``, and the
latency histograms (``Latencies``, prometheus-client).

Counters are deliberately small: a float in a dict keyed by (name, labels), cheap enough to
bump on the ingest hot path. Histograms are prometheus-client's, observed once per write
batch, page send or loop check, not per position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest

HELP: Final[dict[str, tuple[str, str]]] = {
    "gateway_frames_total": ("counter", "Device frames received, by protocol and encoding"),
    "gateway_positions_accepted_total": ("counter", "Positions accepted"),
    "gateway_positions_rejected_total": ("counter", "Positions rejected, by reason"),
    "gateway_frames_rejected_total": ("counter", "Whole frames rejected, by reason"),
    "gateway_handshakes_refused_total": ("counter", "Device handshakes refused, by reason"),
    "gateway_connections_closed_total": ("counter", "Device connections closed by the gateway"),
    "gateway_device_throttled_total": ("counter", "Times a device was slowed by its rate limit"),
    "gateway_device_connections": ("gauge", "Open device WebSocket connections"),
    "gateway_device_http_connections": ("gauge", "Open connections to the device HTTP server"),
    "gateway_device_http_requests_total": ("counter", "Requests to the device HTTP server"),
    "gateway_device_http_refused_total": (
        "counter",
        "Device HTTP connections refused and closed, by status or reason",
    ),
    "gateway_requests_without_fix_total": (
        "counter",
        "Device requests with no coordinates (the device kept online), by protocol",
    ),
    "gateway_mqtt_reconnects_total": ("counter", "MQTT reconnects, by cause"),
    "gateway_mqtt_retained_total": (
        "counter",
        "Retained MQTT messages replayed on subscribe, by outcome",
    ),
    "gateway_writer_bugs_total": ("counter", "Writer failures that were not Redis outages"),
    "gateway_loop_errors_total": ("counter", "Failures of a background loop, by loop"),
    "gateway_writer_batches_total": ("counter", "Redis write batches"),
    "gateway_writer_positions_total": ("counter", "Positions written to Redis"),
    "gateway_writer_errors_total": ("counter", "Redis write failures (retried)"),
    "gateway_writer_already_stored_total": (
        "counter",
        "Accepted positions Redis already had (written by another process or a retried "
        "batch), not stored again",
    ),
    "gateway_writer_queue_depth": ("gauge", "Positions waiting for the Redis writer"),
    "gateway_writer_overloads_total": (
        "counter",
        "Episodes of a full writer queue (devices slowed until it is back under half); each "
        "logged once, with the depth",
    ),
    "gateway_browsers": ("gauge", "Connected browser live streams"),
    "gateway_browser_messages_total": ("counter", "Messages sent to browsers"),
    "gateway_browser_coalesced_total": (
        "counter",
        "Position updates replaced by a newer one before a browser received them (a customer "
        "page's vehicle; for ops pages, frames merged from the ticks a browser missed)",
    ),
    "gateway_browser_snapshots_total": (
        "counter",
        "Ops browsers too far behind the fleet's ticks, sent the whole picture again",
    ),
    "gateway_events_total": ("counter", "Events appended to the event log, by type"),
    "gateway_route_takeovers_total": (
        "counter",
        "Route trackers reloaded from Redis because the vehicle's device moved to this process",
    ),
    "gateway_peer_publish_skipped_total": (
        "counter",
        "Vehicle state batches not published: no other process listened a moment ago",
    ),
    "gateway_peer_publish_errors_total": (
        "counter",
        "Vehicle state batches that could not be published to other processes",
    ),
    "gateway_peer_states_caught_up_total": (
        "counter",
        "Vehicle states read back from Redis after this process's subscription had a gap",
    ),
    "gateway_alerts_caught_up_total": (
        "counter",
        "Alert changes read back from Redis and pushed to ops browsers after this process's "
        "subscription had a gap",
    ),
    "gateway_api_redis_retries_total": (
        "counter",
        "HTTP requests (GET, HEAD, OPTIONS) run again because Redis did not answer",
    ),
    "gateway_api_unavailable_total": (
        "counter",
        "HTTP requests answered 503 because Redis did not answer (after a short retry)",
    ),
    "gateway_eta_routes": ("gauge", "Routes the ETA model's fleet prior is learnt from"),
    "gateway_eta_sites": ("gauge", "Stop locations whose dwells the ETA model remembers"),
    "gateway_eta_observations_read_total": (
        "counter",
        "Dwells and legs read from the ETA observations stream (every process's routes)",
    ),
    "gateway_geofence_out_of_order_total": (
        "counter",
        "Fixes the geofence engine left out because the vehicle had a newer one",
    ),
    "notify_redis_outages_total": (
        "counter",
        "Times a notification loop lost Redis and waited for it, by service",
    ),
}

Labels = tuple[tuple[str, str], ...]


# Latency buckets (seconds): from a millisecond to a minute, finer where the targets are.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)  # fmt: skip


class Latencies:
    """The latency histograms, in prometheus-client's own registry and exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def histogram(name: str, text: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, text, labels, registry=self.registry, buckets=LATENCY_BUCKETS)

        self.ack = histogram(
            "gateway_ack_latency_seconds",
            "From a device's positions being queued to their being durable in Redis (their "
            "ack follows at once), by protocol",
            ("proto",),
        )
        self.write = histogram(
            "gateway_writer_round_trip_seconds", "One write batch's Redis round trip"
        )
        self.page = histogram(
            "gateway_page_latency_seconds",
            "From a position's fix time to its being sent to a page, by kind of page (for ops "
            "pages: the oldest update of the frame, from when it reached the feed)",
            ("page",),
        )
        self.loop_lag = histogram(
            "gateway_event_loop_lag_seconds",
            "How late a 0.1 s sleep of the event loop wakes: time the loop was busy elsewhere",
        )

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class Metrics:
    def __init__(self) -> None:
        self._values: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self.latency = Latencies()

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self._values[key] = self._values.get(key, 0.0) + amount

    def key(self, name: str, **labels: str) -> tuple[str, Labels]:
        """A series key for ``add``, built once so the hot path skips building it per call."""
        k = (name, tuple(sorted(labels.items())))
        self._values.setdefault(k, 0.0)
        return k

    def add(self, key: tuple[str, Labels], amount: float = 1.0) -> None:
        self._values[key] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[(name, tuple(sorted(labels.items())))] = value

    def gauge_fn(self, name: str, fn: Callable[[], float]) -> None:
        """Read ``fn()`` whenever the metrics are rendered."""
        self._gauges[name] = fn

    def get(self, name: str, **labels: str) -> float:
        return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self._values.items() if n == name)

    def render(self) -> str:
        by_name: dict[str, list[tuple[Labels, float]]] = {}
        for (name, labels), value in self._values.items():
            by_name.setdefault(name, []).append((labels, value))
        for name, fn in self._gauges.items():
            by_name.setdefault(name, []).append(((), float(fn())))
        lines: list[str] = []
        for name in sorted(by_name):
            kind, text = HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(by_name[name]):
                if labels:
                    inner = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{name}{{{inner}}} {value:g}")
                else:
                    lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n" + self.latency.render()
