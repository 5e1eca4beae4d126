"""Route import payloads built from van plans follow the gateway's import rules."""

import math
import random
import re
import zoneinfo
from collections import Counter

import pytest

from gateway.dispatch.validate import parse_import
from simulator.city import City
from simulator.fleet import DEFAULT_CENTER, FleetConfig
from simulator.manifest import (
    FAILURE_REASONS,
    MAX_PATH_POINTS,
    WINDOW_END_AFTER_PLAN_S,
    WINDOW_S,
    RouteManifest,
    build_manifest,
    default_timezone,
    stop_outcome,
    thin_path,
)
from simulator.vehicle import Van, VanConfig

CITY = City.generate(DEFAULT_CENTER, seed=3, size_m=4000)
EPOCH = 1_760_000_000.0
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
FICTITIOUS = re.compile(r"^(\+3361\d{7}|\+447700900\d{3})$")
GATEWAY_REASONS = {"nobody_home", "no_access", "refused", "damaged", "address_not_found", "other"}


def _manifests(
    vans: int = 30, *, time_scale: float = 1.0, run_id: str = "20251009-101500", **kw: object
) -> list[tuple[Van, RouteManifest]]:
    out = []
    for n in range(vans):
        van = Van(CITY, VanConfig(time_scale=time_scale, reefer=n % 3 == 0), seed=n, epoch=EPOCH)
        plan = van.upcoming
        assert plan is not None and plan.number == 1
        m = build_manifest(
            plan,
            vehicle=f"van-{n + 1:03d}",
            run_id=run_id,
            wall_time=van.wall_time,
            time_scale=time_scale,
            timezone="Europe/Amsterdam",
            seed=n,
            reefer=van.config.reefer,
            **kw,  # type: ignore[arg-type]
        )
        out.append((van, m))
    return out


def test_payloads_follow_the_import_rules() -> None:
    built = _manifests()
    routes = [m.payload for _, m in built]
    route_ids = [r["external_id"] for r in routes]
    assert len(set(route_ids)) == len(routes)
    delivery_ids = [d["external_id"] for r in routes for s in r["stops"] for d in s["deliveries"]]
    assert len(set(delivery_ids)) == len(delivery_ids)
    languages: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    per_stop: Counter[int] = Counter()
    for van, m in built:
        r = m.payload
        assert r["vehicle"] == m.vehicle and r["date"] == "2025-10-09"
        first, _, last = r["driver"]["name"].partition(" ")
        assert first and last and E164.match(r["driver"]["phone"])
        assert len(r["stops"]) == van.config.stops_per_route == len(m.stops)
        assert 2 <= len(r["path"]) <= MAX_PATH_POINTS
        assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in r["path"])
        stop_ids = [s["external_id"] for s in r["stops"]]
        assert len(set(stop_ids)) == len(stop_ids)
        for s, sm in zip(r["stops"], m.stops, strict=True):
            assert s["external_id"] == sm.external_id and s["kind"] == sm.kind
            assert [d["external_id"] for d in s["deliveries"]] == list(sm.deliveries)
            kinds[s["kind"]] += 1
            per_stop[len(s["deliveries"])] += 1
            loc = s["location"]
            assert math.dist((loc["lat"], loc["lon"]), DEFAULT_CENTER) < 0.05
            w = s["window"]
            assert w["start"] < s["planned_arrival"] < w["end"]
            assert w["end"] - w["start"] == pytest.approx(WINDOW_S)
            assert s["service_s"] > 0 and s["address"]
            for d in s["deliveries"]:
                rc = d["recipient"]
                assert E164.match(rc["phone"]) and FICTITIOUS.match(rc["phone"])
                assert rc["email"].endswith("@example.com") and rc["email"].isascii()
                assert rc["channels"] and set(rc["channels"]) <= {"sms", "email"}
                assert rc["timezone"] == "Europe/Amsterdam"
                languages[rc["language"]] += 1
                if "temp_min_c" in d:
                    assert van.config.reefer and d["temp_min_c"] < d["temp_max_c"]
        # Stops are in planned order: arrivals and windows move forward.
        arrivals = [s["planned_arrival"] for s in r["stops"]]
        assert arrivals == sorted(arrivals) and arrivals[0] > EPOCH
    assert languages["en"] > 2 * languages["fr"] > 0
    assert kinds["delivery"] > kinds["pickup"] > 0
    assert per_stop[1] > per_stop[2] > 0
    chilled = [d for _, m in built for s in m.payload["stops"] for d in s["deliveries"]
               if "temp_min_c" in d]  # fmt: skip
    assert chilled and all((d["temp_min_c"], d["temp_max_c"]) == (2.0, 8.0) for d in chilled)
    # The gateway's own validator takes the whole batch.
    assert len(parse_import({"routes": routes}, EPOCH)) == len(routes)


def test_windows_and_service_times_shrink_with_the_time_scale() -> None:
    (van, m), *_ = _manifests(1, time_scale=10.0)
    plan = van.upcoming
    assert plan is not None
    for stop, s in zip(plan.stops, m.payload["stops"], strict=True):
        planned = EPOCH + stop.planned_arrival_s / 10
        assert s["planned_arrival"] == pytest.approx(planned, abs=1e-3)
        assert s["window"]["end"] == pytest.approx(planned + WINDOW_END_AFTER_PLAN_S / 10, abs=1e-3)
        assert s["window"]["end"] - s["window"]["start"] == pytest.approx(WINDOW_S / 10, abs=1e-3)
        assert s["service_s"] == pytest.approx(stop.service_s / 10)


def test_the_same_plan_gives_the_same_manifest_and_runs_get_their_own_ids() -> None:
    a = [m for _, m in _manifests(3)]
    b = [m for _, m in _manifests(3)]
    c = [m for _, m in _manifests(3, run_id="20251009-111500")]
    assert [m.payload for m in a] == [m.payload for m in b]
    assert a[0].external_id == "van-001-20251009-101500-1"
    assert not {m.external_id for m in a} & {m.external_id for m in c}
    assert not set(a[0].delivery_ids) & set(c[0].delivery_ids)


def test_the_path_is_thinned_to_the_limit() -> None:
    (_, m), *_ = _manifests(1, max_path_points=10)
    path = m.payload["path"]
    assert 2 <= len(path) <= 10
    points = [(float(i), float(-i)) for i in range(5_001)]
    for limit in (2, 3, 10, 999, 5_000, 5_001, 6_000):
        thin = thin_path(points, limit)
        assert 2 <= len(thin) <= limit
        assert thin[0] == points[0] and thin[-1] == points[-1]
        assert thin == sorted(thin, key=lambda p: p[0])
    assert thin_path(points, 6_000) == points
    with pytest.raises(ValueError):
        thin_path(points, 1)


def test_most_stops_are_on_time_and_some_are_late() -> None:
    late = on_time = 0
    for seed in range(30):
        van = Van(CITY, VanConfig(), seed=seed, epoch=0.0)
        van.poll(3 * 3600.0)
        for visit in van.visits:
            end = visit.stop.planned_arrival_s + WINDOW_END_AFTER_PLAN_S
            start = end - WINDOW_S
            assert visit.arrived_s > start  # nobody is ever an hour early
            if visit.arrived_s > end:
                late += 1
            else:
                on_time += 1
    assert 0.03 < late / (late + on_time) < 0.25


def test_stop_outcomes_fail_at_the_rate_with_gateway_reason_codes() -> None:
    rng = random.Random(5)
    outcomes = [stop_outcome(rng, 0.1) for _ in range(20_000)]
    failed = [o for o in outcomes if o[0] == "failed"]
    assert 0.08 < len(failed) / len(outcomes) < 0.12
    assert {o[1] for o in failed} == GATEWAY_REASONS == {r for r, _, _ in FAILURE_REASONS}
    assert all(o[2] for o in failed)
    assert all(o == ("delivered", None, None) for o in outcomes if o[0] != "failed")
    assert all(stop_outcome(rng, 0.0)[0] == "delivered" for _ in range(1000))
    assert all(stop_outcome(rng, 1.0)[0] == "failed" for _ in range(1000))


def test_time_zone_follows_the_city() -> None:
    assert default_timezone(DEFAULT_CENTER) == "Europe/Amsterdam"
    assert FleetConfig().zone() == "Europe/Amsterdam"
    assert FleetConfig(center=(40.71, -74.0)).zone() == "Etc/GMT+5"
    assert FleetConfig(center=(35.68, 139.76)).zone() == "Etc/GMT-9"
    assert FleetConfig(center=(40.71, -74.0), timezone="America/New_York").zone() == (
        "America/New_York"
    )
    for center in ((51.5, -0.12), (-33.9, 151.2), (19.4, -99.1)):
        zoneinfo.ZoneInfo(default_timezone(center))
    with pytest.raises(ValueError, match="time zone"):
        FleetConfig(timezone="Mars/Olympus")
