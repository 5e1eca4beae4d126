"""Operations KPIs computed from the event log and the delivery records (pure functions).

- on-time rate: delivered deliveries whose ``delivery.delivered`` came by the end of the
  promised window;
- average delivery time: from ``delivery.out_for_delivery`` to ``delivery.delivered``;
- ETA accuracy: for each ``stop.arrived``, the absolute error of the latest ETA announced
  for that stop at least ``ETA_HORIZON_S`` before the arrival (median and p90);
- failure rate: failed attempts over completed (delivered + failed);
- exceptions: open alerts and the average time to resolve the resolved ones (given by the
  caller from the alert store).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any, Final

ETA_HORIZON_S: Final = 600.0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def compute_kpis(
    events: Iterable[Mapping[str, Any]], window_end: Mapping[str, float]
) -> dict[str, Any]:
    """KPIs from events (oldest first) and each delivery's promised window end."""
    out_at: dict[str, float] = {}
    delivered_at: dict[str, float] = {}
    failed: set[str] = set()
    etas: dict[str, list[tuple[float, float]]] = {}  # stop -> [(announced at, eta)]
    eta_errors: list[float] = []
    for ev in events:
        etype = ev.get("type")
        d = ev.get("delivery")
        ts = float(ev.get("ts") or 0.0)
        if etype == "delivery.out_for_delivery" and d:
            out_at.setdefault(d, ts)
        elif etype == "delivery.delivered" and d:
            delivered_at[d] = ts
            failed.discard(d)
        elif etype == "delivery.failed" and d:
            failed.add(d)
        elif etype in ("delivery.eta_changed", "stop.eta_changed") and ev.get("stop"):
            eta = (ev.get("data") or {}).get("eta")
            if eta is not None:
                etas.setdefault(str(ev["stop"]), []).append((ts, float(eta)))
        elif etype == "stop.arrived" and ev.get("stop"):
            before = [e for at, e in etas.get(str(ev["stop"]), []) if at <= ts - ETA_HORIZON_S]
            if before:
                eta_errors.append(abs(before[-1] - ts))
    on_time = [d for d, t in delivered_at.items() if d in window_end and t <= window_end[d]]
    with_window = [d for d in delivered_at if d in window_end]
    durations = [delivered_at[d] - out_at[d] for d in delivered_at if d in out_at]
    completed = len(delivered_at) + len(failed)
    return {
        "delivered": len(delivered_at),
        "failed": len(failed),
        "on_time_rate": len(on_time) / len(with_window) if with_window else None,
        "avg_delivery_time_s": statistics.fmean(durations) if durations else None,
        "failure_rate": len(failed) / completed if completed else None,
        "eta_error_median_s": statistics.median(eta_errors) if eta_errors else None,
        "eta_error_p90_s": _pct(eta_errors, 0.9),
        "eta_samples": len(eta_errors),
    }
