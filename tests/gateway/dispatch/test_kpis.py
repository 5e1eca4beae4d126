from gateway.dispatch.kpis import compute_kpis


def ev(etype: str, ts: float, delivery: str | None = None, stop: str | None = None,
       **data: float) -> dict[str, object]:  # fmt: skip
    return {"type": etype, "ts": ts, "delivery": delivery, "stop": stop, "data": data}


def test_kpis_from_a_small_day() -> None:
    events = [
        ev("delivery.out_for_delivery", 0, "d1"),
        ev("delivery.out_for_delivery", 0, "d2"),
        ev("delivery.out_for_delivery", 0, "d3"),
        ev("delivery.eta_changed", 100, "d1", "s1", eta=1300),
        ev("delivery.eta_changed", 900, "d1", "s1", eta=1250),  # too close to the arrival
        ev("stop.arrived", 1200, stop="s1"),
        ev("delivery.delivered", 1300, "d1"),
        ev("delivery.delivered", 5000, "d2"),
        ev("delivery.failed", 3000, "d3"),
    ]
    k = compute_kpis(events, {"d1": 2000.0, "d2": 4000.0, "d3": 4000.0})
    assert (k["delivered"], k["failed"]) == (2, 1)
    assert k["on_time_rate"] == 0.5  # d2 came after its window
    assert k["avg_delivery_time_s"] == (1300 + 5000) / 2
    assert k["failure_rate"] == 1 / 3
    assert (k["eta_error_median_s"], k["eta_samples"]) == (100, 1)


def test_no_data_gives_no_rates() -> None:
    k = compute_kpis([], {})
    assert k["on_time_rate"] is None and k["avg_delivery_time_s"] is None
    assert k["eta_samples"] == 0
