import itertools
import json
import math
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence import (
    EngineConfig,
    FixBatch,
    FixPoint,
    GeofenceEngine,
    LocalFrame,
    Membership,
    Zone,
    ZoneCross,
    ZoneDwell,
    ZoneEnter,
    ZoneExit,
    ZoneIndex,
    haversine_m,
    transition,
)
from geofence.events import GeofenceEvent
from geofence.transitions import CROSS, INNER, OUTER, STILL_SPEED_MPS, UNSURE

ORIGIN = (48.85, 2.35)
FRAME = LocalFrame(*ORIGIN)
Fix = tuple[str, float, float, float]


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of the point x metres east and y metres north of ORIGIN."""
    return FRAME.latlon(x, y)


def fix(v: str, ts: float, x: float, y: float) -> Fix:
    return (v, ts, *at(x, y))


def circle(zid: str, x: float, y: float, r: float, **kw: object) -> Zone:
    return Zone.circle(zid, *at(x, y), r, **kw)  # type: ignore[arg-type]


def rect(zid: str, x: float, y: float, w: float, h: float, **kw: object) -> Zone:
    ring = [at(x, y), at(x + w, y), at(x + w, y + h), at(x, y + h)]
    return Zone.polygon(zid, ring, **kw)  # type: ignore[arg-type]


def kinds(events: Sequence[GeofenceEvent]) -> list[tuple[str, str, float]]:
    return [(type(e).__name__, e.zone_id, e.ts) for e in events]


def engine(*zones: Zone, **cfg: object) -> GeofenceEngine:
    return GeofenceEngine(EngineConfig(**cfg), zones)  # type: ignore[arg-type]


# -- exact scenarios ------------------------------------------------------------------------


def test_enter_and_exit_with_hysteresis_margins() -> None:
    e = engine(circle("c", 0, 0, 100), enter_margin_m=5, exit_margin_m=10)
    assert e.process([fix("v", 0, 200, 0)]) == []
    assert e.process([fix("v", 1, 96, 0)]) == []  # inside by 4 m: not yet
    assert kinds(e.process([fix("v", 2, 94, 0)])) == [("ZoneEnter", "c", 2)]
    assert e.process([fix("v", 3, 109, 0)]) == []  # outside by 9 m: not yet
    out = e.process([fix("v", 4, 111, 0)])
    assert kinds(out) == [("ZoneExit", "c", 4)]
    assert isinstance(out[0], ZoneExit)
    assert out[0].entered_ts == 2 and out[0].last_inside_ts == 3


def test_boundary_jitter_does_not_flap() -> None:
    e = engine(rect("r", 0, 0, 300, 300), enter_margin_m=5, exit_margin_m=10)
    fixes = [fix("v", 0, -50, 150)]
    # GPS noise across the west edge: 6 m inside to 8 m outside, 60 times.
    fixes += [fix("v", 1 + k, 6 if k % 2 else -8, 150) for k in range(60)]
    out = e.process(fixes)
    assert kinds(out) == [("ZoneEnter", "r", 2)]
    assert e.memberships("v").keys() == {"r"}


def test_without_margins_jitter_flaps() -> None:
    # The same jitter with zero margins produces an event per change of side: the margins matter.
    e = engine(rect("r", 0, 0, 300, 300), enter_margin_m=0, exit_margin_m=0)
    fixes = [fix("v", 0, -50, 150)] + [fix("v", 1 + k, 6 if k % 2 else -8, 150) for k in range(10)]
    assert len(e.process(fixes)) == 9


def test_dwell_emitted_once_per_visit_at_the_exact_fix() -> None:
    e = engine(circle("c", 0, 0, 100, dwell_threshold_s=60), enter_margin_m=0, exit_margin_m=0)
    fixes = [fix("v", 0, 500, 0)] + [fix("v", t, 0, 0) for t in range(10, 200)]
    out = e.process(fixes)
    assert kinds(out) == [("ZoneEnter", "c", 10), ("ZoneDwell", "c", 70)]
    dwell = out[1]
    assert isinstance(dwell, ZoneDwell) and dwell.entered_ts == 10 and dwell.dwell_s == 60
    # Leave and come back: a new visit gets its own dwell.
    out = e.process([fix("v", 300, 500, 0)] + [fix("v", t, 0, 0) for t in range(400, 470, 5)])
    assert kinds(out) == [("ZoneExit", "c", 300), ("ZoneEnter", "c", 400), ("ZoneDwell", "c", 460)]


def test_dwell_across_batches_and_by_tick() -> None:
    e = engine(circle("c", 0, 0, 100, dwell_threshold_s=60), enter_margin_m=0, exit_margin_m=0)
    e.process([fix("v", 0, 500, 0), fix("v", 10, 0, 0)])
    assert e.process([fix("v", 69, 1, 0)]) == []
    assert e.tick(69.5) == []
    out = e.tick(70.0)
    assert kinds(out) == [("ZoneDwell", "c", 70.0)]
    assert (out[0].lat, out[0].lon) == pytest.approx(at(1, 0))
    assert e.tick(500.0) == []
    assert e.process([fix("v", 80, 0, 0)]) == []


def test_sparse_fixes_cross_a_zone() -> None:
    e = engine(circle("c", 0, 0, 30), rect("r", 200, -20, 20, 40), max_cross_gap_s=120)
    out = e.process([fix("v", 0, -100, 0), fix("v", 20, 100, 0), fix("v", 40, 300, 0)])
    assert kinds(out) == [("ZoneCross", "c", 20), ("ZoneCross", "r", 40)]
    cross = out[0]
    assert isinstance(cross, ZoneCross)
    assert (cross.from_ts, cross.from_lat, cross.from_lon) == (0, *at(-100, 0))
    # Passing beside the zone is not a crossing.
    assert e.process([fix("v", 60, 100, 50), fix("v", 80, -100, 50)]) == []
    # Too long between fixes: nothing is inferred.
    assert e.process([fix("v", 300, 100, 0)]) == []


def test_zone_created_around_a_parked_vehicle() -> None:
    e = engine()
    e.process([fix("v", 0, 0, 0)])
    e.set_zone(circle("depot", 0, 0, 50, dwell_threshold_s=100))
    assert e.memberships("v") == {"depot": Membership(0.0)}
    assert e.process([fix("v", 10, 1, 0)]) == []
    assert kinds(e.process([fix("v", 100, 2, 0)])) == [("ZoneDwell", "depot", 100)]
    assert kinds(e.process([fix("v", 110, 300, 0)])) == [("ZoneExit", "depot", 110)]


@pytest.mark.parametrize("way", ["process", "remember"])
def test_zone_created_where_a_vehicle_stood_before_any_zone(way: str) -> None:
    """Without zones the live stage only ``remember``s each vehicle's newest fix; a zone
    created afterwards must see the vehicle exactly as if ``process`` had seen the fixes,
    an older fix arriving late included."""
    e = engine()
    for ts, x in ((0, 0.0), (5, 1.0), (3, 900.0)):  # the last one is late: ignored
        if way == "process":
            e.process([fix("v", ts, x, 0)])
        else:
            e.remember("v", *fix("v", ts, x, 0)[1:])
    assert e.last_fix("v") == FixPoint(5.0, *at(1.0, 0))
    e.set_zone(circle("depot", 0, 0, 50, dwell_threshold_s=100))
    assert e.memberships("v") == {"depot": Membership(5.0)}
    assert e.process([fix("v", 10, 2, 0)]) == []
    assert kinds(e.process([fix("v", 20, 300, 0)])) == [("ZoneExit", "depot", 20)]


def test_zone_replaced_or_removed_drops_membership_silently() -> None:
    e = engine(circle("z", 0, 0, 50), circle("y", 500, 0, 50))
    e.process([fix("a", 0, 0, 0), fix("b", 0, 500, 0)])
    assert e.memberships("a").keys() == {"z"}
    e.set_zone(circle("z", 1000, 0, 50))  # moved away from the parked vehicle
    assert e.memberships("a") == {}
    e.remove_zone("y")
    assert e.memberships("b") == {}
    assert e.process([fix("a", 10, 300, 0), fix("b", 10, 800, 0)]) == []
    # The moved zone works at its new place.
    assert kinds(e.process([fix("a", 20, 1000, 0)])) == [("ZoneEnter", "z", 20)]


def test_vehicle_back_from_offline_elsewhere() -> None:
    e = engine(circle("a", 0, 0, 50), circle("b", 5000, 0, 50), circle("mid", 2500, 0, 50))
    e.process([fix("v", 0, 0, 0)])
    out = e.process([fix("v", 3600, 5000, 0)])
    assert kinds(out) == [("ZoneExit", "a", 3600), ("ZoneEnter", "b", 3600)]
    assert isinstance(out[0], ZoneExit) and out[0].last_inside_ts == 0


def test_first_fix_inside_is_not_an_enter_unless_configured() -> None:
    assert engine(circle("c", 0, 0, 50)).process([fix("v", 0, 0, 0)]) == []
    e = engine(circle("c", 0, 0, 50), first_fix_enters=True)
    assert kinds(e.process([fix("v", 0, 0, 0)])) == [("ZoneEnter", "c", 0)]


def test_out_of_order_fixes_are_dropped() -> None:
    e = engine(circle("c", 0, 0, 50), enter_margin_m=0, exit_margin_m=0)
    e.process([fix("v", 10, 500, 0)])
    out = e.process([fix("v", 5, 0, 0), fix("v", 20, 500, 0), fix("v", 15, 0, 0)])
    assert out == []
    assert e.stats.out_of_order == 2
    assert e.last_fix("v") == FixPoint(20, *at(500, 0))


def test_a_stale_fix_remembered_without_zones_is_counted_and_kept_out() -> None:
    e = engine()
    e.remember("v", 20.0, *at(500, 0))
    e.remember("v", 10.0, *at(0, 0))
    assert e.stats.out_of_order == 1 and e.stats.fixes == 2
    assert e.last_fix("v") == FixPoint(20.0, *at(500, 0))
    e.remember("v", 20.0, *at(600, 0))  # the same time again is not out of order
    assert e.stats.out_of_order == 1 and e.last_fix("v") == FixPoint(20.0, *at(600, 0))


def test_events_follow_input_order_across_vehicles() -> None:
    e = engine(circle("c", 0, 0, 50), rect("r", 100, -50, 100, 100), enter_margin_m=0)
    e.process([fix("x", 0, -200, 0), fix("y", 0, -200, 0)])
    out = e.process(
        [fix("y", 1, 0, 0), fix("x", 1, 150, 0), fix("x", 2, 0, 0), fix("y", 2, 150, 0)]
    )
    assert [(ev.vehicle_id, type(ev).__name__, ev.zone_id) for ev in out] == [
        ("y", "ZoneEnter", "c"),
        ("x", "ZoneEnter", "r"),
        ("x", "ZoneCross", "c"),
        ("x", "ZoneExit", "r"),
        ("x", "ZoneEnter", "c"),
        ("y", "ZoneExit", "c"),
        ("y", "ZoneEnter", "r"),
    ]


def test_schedule_suppresses_events_outside_active_hours() -> None:
    # 1970-01-01 was a Thursday; active Thursdays 00:00-00:10 UTC.
    sched = {"tz": "UTC", "days": ["thu"], "hours": [["00:00", "00:10"]]}
    zone = Zone.from_geojson(
        {
            "type": "Feature",
            "id": "s",
            "geometry": {"type": "Point", "coordinates": [at(0, 0)[1], at(0, 0)[0]]},
            "properties": {"radius_m": 50, "schedule": sched},
        }
    )
    e = engine(zone, enter_margin_m=0, exit_margin_m=0)
    out = e.process([fix("v", 0, 200, 0), fix("v", 60, 0, 0), fix("v", 120, 200, 0)])
    assert kinds(out) == [("ZoneEnter", "s", 60), ("ZoneExit", "s", 120)]
    out = e.process([fix("v", 700, 0, 0), fix("v", 760, 200, 0)])  # after 00:10
    assert out == []


def test_state_export_import_continues_identically() -> None:
    zones = [circle("c", 0, 0, 80, dwell_threshold_s=30), rect("r", 200, -50, 100, 100)]
    first = [fix("v", t, -200 + 10 * t, 0) for t in range(0, 25)]
    rest = [fix("v", t, -200 + 10 * t, 0) for t in range(25, 60)]
    a = engine(*zones)
    a.process(first)
    state = json.loads(json.dumps(a.export_state()))
    b = engine(*zones)
    b.import_state(state)
    assert b.memberships("v") == a.memberships("v")
    assert kinds(b.process(rest)) == kinds(a.process(rest))
    assert len(kinds(b.process([]))) == 0


def test_state_export_of_chosen_vehicles_is_theirs_of_the_whole() -> None:
    e = engine(circle("c", 0, 0, 80))
    e.process([fix(v, t, -200 + 10 * t + i, 0) for t in range(30) for i, v in enumerate("abc")])
    whole = e.export_state()["vehicles"]
    assert set(whole) == {"a", "b", "c"}
    chosen = e.export_state(["a", "c", "unknown"])
    assert chosen == {"version": e.export_state()["version"], "vehicles": {
        "a": whole["a"], "c": whole["c"]}}  # fmt: skip
    assert "unknown" not in e.export_state()["vehicles"]  # asking did not make it known


def test_fix_batch_arrays_and_tuples_agree() -> None:
    fixes = [fix("v", t, -200 + 10 * t, 0) for t in range(40)]
    a = engine(circle("c", 0, 0, 80)).process(fixes)
    vehicle, ts, lat, lon = zip(*fixes, strict=True)
    b = engine(circle("c", 0, 0, 80)).process(FixBatch(list(vehicle), ts, lat, lon))
    assert a == b and len(a) == 2


def test_index_contains_matches_brute_force() -> None:
    zones = [circle(f"c{i}", 37 * i, -23 * i, 40 + i) for i in range(10)]
    zones += [rect(f"r{i}", -200 + 41 * i, 30 * i, 60, 45) for i in range(10)]
    index = ZoneIndex()
    for z in zones:
        index.set(z)
    index.remove("c3")
    index.set(circle("c4", 500, 500, 30))
    pts = [at(x, y) for x in range(-250, 450, 23) for y in range(-250, 350, 19)]
    lat = [p[0] for p in pts]
    lon = [p[1] for p in pts]
    p, s = index.contains(lat, lon)
    got = {(int(i), index.zone_at(int(j)).id) for i, j in zip(p, s, strict=True)}
    import shapely

    want = set()
    for z in index:
        for i, (la, lo) in enumerate(pts):
            if z.geometry.contains(shapely.Point(lo, la)):
                want.add((i, z.id))
    # Circles are exact, their polygons are within 0.5 m: allow disagreement only there.
    diff = got ^ want
    for i, zid in diff:
        found = index.get(zid)
        assert (
            found is not None
            and found.geometry.exterior.distance(shapely.Point(lon[i], lat[i])) < 1e-5
        )
    assert len(got) > 20


def test_index_overlay_and_compaction_agree() -> None:
    small = ZoneIndex(overlay_limit=2)
    big = ZoneIndex(overlay_limit=1000)
    pts = [at(x, 0) for x in range(-100, 1100, 10)]
    lat, lon = [p[0] for p in pts], [p[1] for p in pts]
    for k in range(12):
        for idx in (small, big):
            idx.set(circle(f"c{k % 5}", 90 * k, 0, 40))
            if k % 4 == 3:
                idx.remove(f"c{(k + 2) % 5}")
        a = small.query(lat, lon)
        b = big.query(lat, lon)
        ids_a = sorted(
            (int(p), small.zone_at(int(s)).id) for p, s in zip(a.point, a.slot, strict=True)
        )
        ids_b = sorted(
            (int(p), big.zone_at(int(s)).id) for p, s in zip(b.point, b.slot, strict=True)
        )
        assert ids_a == ids_b


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="enter_margin_m"):
        EngineConfig(enter_margin_m=-1)
    with pytest.raises(ValueError, match="max_cross_gap_s"):
        EngineConfig(max_cross_gap_s=math.nan)


# -- properties -----------------------------------------------------------------------------


def reference(
    zones: Sequence[Zone],
    fixes: Sequence[Fix],
    cfg: EngineConfig,
    reported: Sequence[tuple[float | None, float | None]] = (),
) -> list:
    """One fix at a time, every zone, straight through :func:`transition`. ``reported``: each
    fix's accuracy and speed (none where it is shorter)."""
    index = ZoneIndex(cfg.enter_margin_m, cfg.exit_margin_m)
    for z in zones:
        index.set(z)
    members: dict[tuple[str, str], Membership] = {}
    last: dict[str, tuple[FixPoint, float]] = {}
    out = []
    rank = {ZoneExit: 0, ZoneEnter: 1, ZoneCross: 2, ZoneDwell: 3}
    e_m, x_m = cfg.enter_margin_m, cfg.exit_margin_m
    for k, (v, ts, lat, lon) in enumerate(fixes):
        acc, speed = reported[k] if k < len(reported) else (None, None)
        acc = acc or 0.0
        prev, prev_acc = last.get(v, (None, 0.0))
        if prev is not None and ts < prev.ts:
            continue
        dist = haversine_m(prev.lat, prev.lon, lat, lon) if prev is not None else 0.0
        moved = dist > max(e_m, acc) + max(e_m, prev_acc) or (
            speed is not None and speed >= STILL_SPEED_MPS and dist > 0
        )
        joined = prev is not None and ts - prev.ts <= cfg.max_cross_gap_s and moved
        plat = prev.lat if prev is not None and joined else math.nan
        plon = prev.lon if prev is not None and joined else math.nan
        hits = index.query([lat], [lon], [plat], [plon])
        obs = {index.zone_at(int(s)).id: int(f) for s, f in zip(hits.slot, hits.flags, strict=True)}
        cur = FixPoint(ts, lat, lon)
        here = []
        for z in zones:
            m = members.get((v, z.id))
            f = obs.get(z.id, 0)
            slot = index.slot_of(z.id)
            assert slot is not None
            if acc > x_m and not f & OUTER and (m is not None or f & CROSS):
                f |= OUTER if -index.depth_m(slot, lat, lon) <= acc else 0
            if m is None and f & INNER and acc > e_m and index.depth_m(slot, lat, lon) <= acc:
                deep = (
                    joined
                    and prev is not None
                    and index.reaches(slot, prev.lat, prev.lon, lat, lon, max(acc, prev_acc))
                )
                f |= 0 if deep else UNSURE
            if m is None and f & CROSS and prev is not None and max(acc, prev_acc) > e_m:
                deep = index.reaches(slot, prev.lat, prev.lon, lat, lon, max(acc, prev_acc))
                f |= 0 if deep else UNSURE
            m, ev = transition(
                v,
                z.id,
                m,
                f,
                cur,
                prev,
                z.dwell_threshold_s,
                initial=prev is None,
                active=z.is_active(ts),
            )
            if m is None:
                members.pop((v, z.id), None)
            else:
                members[(v, z.id)] = m
            if ev is not None:
                here.append(ev)
        here.sort(key=lambda e: (rank[type(e)], e.zone_id))
        out.extend(here)
        last[v] = (cur, acc)
    return out


@st.composite
def zone_sets(draw: st.DrawFn) -> list[Zone]:
    zones = []
    for i in range(draw(st.integers(1, 5))):
        x, y = draw(st.floats(-400, 400)), draw(st.floats(-400, 400))
        dwell = draw(st.one_of(st.none(), st.floats(5, 120)))
        if draw(st.booleans()):
            zones.append(circle(f"z{i}", x, y, draw(st.floats(15, 200)), dwell_threshold_s=dwell))
        else:
            w, h = draw(st.floats(20, 300)), draw(st.floats(20, 300))
            zones.append(rect(f"z{i}", x, y, w, h, dwell_threshold_s=dwell))
    return zones


@st.composite
def walks(draw: st.DrawFn) -> list[Fix]:
    fixes: list[Fix] = []
    for v in range(draw(st.integers(1, 3))):
        t = draw(st.floats(0, 10))
        x, y = draw(st.floats(-500, 500)), draw(st.floats(-500, 500))
        for _ in range(draw(st.integers(1, 40))):
            fixes.append(fix(f"v{v}", t, x, y))
            t += draw(st.sampled_from([1.0, 3.0, 10.0, 30.0, 400.0]))
            x = min(700.0, max(-700.0, x + draw(st.floats(-150, 150))))
            y = min(700.0, max(-700.0, y + draw(st.floats(-150, 150))))
    fixes.sort(key=lambda f: f[1])
    return fixes


configs = st.builds(
    EngineConfig,
    enter_margin_m=st.sampled_from([0.0, 5.0, 20.0]),
    exit_margin_m=st.sampled_from([0.0, 10.0, 30.0]),
    max_cross_gap_s=st.sampled_from([60.0, 300.0]),
)
settings_ = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def run_batches(e: GeofenceEngine, fixes: Sequence[Fix], cuts: Sequence[int]) -> list:
    out = []
    bounds = sorted({0, len(fixes), *[c % (len(fixes) + 1) for c in cuts]})
    for a, b in itertools.pairwise(bounds):
        out.extend(e.process(fixes[a:b]))
    return out


@settings_
@given(zone_sets(), walks(), configs, st.lists(st.integers(0, 200), max_size=6))
def test_engine_matches_fix_by_fix_reference(
    zones: list[Zone], fixes: list[Fix], cfg: EngineConfig, cuts: list[int]
) -> None:
    got = run_batches(GeofenceEngine(cfg, zones), fixes, cuts)
    assert got == reference(zones, fixes, cfg)


reports = st.tuples(
    st.one_of(st.none(), st.sampled_from([3.0, 8.0, 15.0, 40.0])),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 8.0])),
)


@settings_
@given(
    zone_sets(),
    walks(),
    configs,
    st.lists(st.integers(0, 200), max_size=6),
    st.lists(reports, min_size=1, max_size=120),
)
def test_engine_with_accuracy_and_speed_matches_the_reference(
    zones: list[Zone],
    fixes: list[Fix],
    cfg: EngineConfig,
    cuts: list[int],
    reported: list[tuple[float | None, float | None]],
) -> None:
    """The fast path's skipping of fixes holds when fixes with a poor accuracy hold
    transitions back."""
    reported = (reported * (len(fixes) // max(1, len(reported)) + 1))[: len(fixes)]
    e = GeofenceEngine(cfg, zones)
    got = []
    bounds = sorted({0, len(fixes), *[c % (len(fixes) + 1) for c in cuts]})
    for a, b in itertools.pairwise(bounds):
        part = fixes[a:b]
        if not part:
            continue
        vehicle, ts, lat, lon = zip(*part, strict=True)
        acc = [r[0] for r in reported[a:b]]
        speed = [r[1] for r in reported[a:b]]
        got.extend(e.process(FixBatch(vehicle, ts, lat, lon, acc, speed)))
    assert got == reference(zones, fixes, cfg, reported)


@settings_
@given(zone_sets(), walks(), configs, st.lists(st.integers(0, 200), max_size=6))
def test_enter_and_exit_alternate(
    zones: list[Zone], fixes: list[Fix], cfg: EngineConfig, cuts: list[int]
) -> None:
    e = GeofenceEngine(cfg, zones)
    events = run_batches(e, fixes, cuts)
    for v in {f[0] for f in fixes}:
        for z in zones:
            seq = [type(ev) for ev in events if ev.vehicle_id == v and ev.zone_id == z.id]
            seq = [k for k in seq if k in (ZoneEnter, ZoneExit)]
            assert all(a is not b for a, b in itertools.pairwise(seq))
            if seq:
                # The last transition agrees with the final membership.
                assert (seq[-1] is ZoneEnter) == (z.id in e.memberships(v))


@settings_
@given(zone_sets(), walks(), configs, st.randoms(use_true_random=False))
def test_same_events_whatever_the_zone_creation_order(
    zones: list[Zone], fixes: list[Fix], cfg: EngineConfig, rnd: object
) -> None:
    shuffled = list(zones)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = GeofenceEngine(cfg, zones).process(fixes)
    b = GeofenceEngine(cfg)
    for z in shuffled:
        b.set_zone(z)
    assert b.process(fixes) == a


@settings_
@given(
    st.floats(20, 300),
    st.floats(0, 1000),
    st.floats(0, 359),
    st.lists(st.tuples(st.floats(-1, 1), st.floats(0.02, 0.98)), min_size=1, max_size=40),
)
def test_no_event_while_staying_within_the_boundary_band(
    radius: float, start: float, spot: float, band: list[tuple[float, float]]
) -> None:
    """After a first fix anywhere on the ray through a spot on the boundary, fixes that stay
    between r - enter and r + exit margins (the band where GPS jitter lives) never produce an
    enter or exit. The fixes keep within the enter margin of that spot: a vehicle standing
    there. (Fixes jumping from one side of the zone to the other are a path through it, and
    enter it.)"""
    enter, exit_ = 8.0, 12.0
    e = engine(circle("c", 0, 0, radius), enter_margin_m=enter, exit_margin_m=exit_)
    out = math.radians(spot)
    e.process([fix("v", 0, start * math.sin(out), start * math.cos(out))])
    fixes = []
    for k, (along, f) in enumerate(band):
        d = radius - enter + f * (enter + exit_)
        a = math.radians(spot) + along * (enter / 2) / radius
        fixes.append(fix("v", 1 + k, d * math.sin(a), d * math.cos(a)))
    assert e.process(fixes) == []


def test_events_round_trip_through_json_as_one_union() -> None:
    import msgspec

    from geofence import Event

    e = engine(circle("c", 0, 0, 50, dwell_threshold_s=5), enter_margin_m=0, exit_margin_m=0)
    out = e.process([fix("v", 0, -300, 0), fix("v", 1, 0, 0), fix("v", 9, 0, 0)])
    out += e.process([fix("v", 10, 300, 0), fix("v", 20, -300, 0)])
    assert {type(ev) for ev in out} == {ZoneEnter, ZoneDwell, ZoneExit, ZoneCross}
    data = msgspec.json.encode(out)
    assert b'"type":"geofence.enter"' in data
    assert msgspec.json.decode(data, type=list[Event]) == out
