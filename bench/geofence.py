"""Geofence throughput: 10,000 zones in a synthetic city, a few hundred thousand fixes.

Measures, in the same run and on the same zones and fixes:

(a) bare: ``shapely.points`` + one vectorised ``STRtree.query(points, predicate="intersects")``
    over the zone polygons, no transitions;
(b) loop: a per-point loop of ``STRtree.query(Point, predicate="intersects")`` (on a sample);
(c) engine: ``GeofenceEngine.process`` in time-ordered batches, with hysteresis, dwell and
    crossing detection, i.e. everything the gateway gets.

Prints positions/s for each and the ratios; the last line is one JSON object with the figures.
Run: ``.venv/bin/python bench/geofence.py [--fixes N] [--zones N] [--batch N] [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

# This script shares the package's name, so its own folder must not be on sys.path; the
# repository root goes first so the package is found even where an editable install recorded
# it as a namespace package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from geofence import EngineConfig, FixBatch, GeofenceEngine, LocalFrame, Zone  # noqa: E402

CENTER = (48.8566, 2.3522)
CITY_RADIUS_M = 20_000.0
BLOCK_M = 150.0


def build_zones(n: int, rng: np.random.Generator) -> list[Zone]:
    """A city's worth of zones: mostly small customer-stop circles, blocks and sites as
    polygons, some corridors, a few depots and district-sized service areas."""
    frame = LocalFrame(*CENTER)
    zones: list[Zone] = []
    n_service = 3
    n_depot = 10
    n_corridor = max(1, n // 100)
    n_poly = n * 25 // 100
    n_circle = n - n_service - n_depot - n_corridor - n_poly

    def place(sigma: float) -> tuple[float, float]:
        while True:
            x, y = rng.normal(0.0, sigma, 2)
            if math.hypot(x, y) < CITY_RADIUS_M:
                return frame.latlon(x, y)

    for i in range(n_service):
        cx, cy = rng.uniform(-3000, 3000, 2)
        r = rng.uniform(5000, 9000)
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        rr = r * (1 + 0.15 * np.sin(3 * theta + i))
        lat, lon = frame.to_latlon(cx + rr * np.cos(theta), cy + rr * np.sin(theta))
        ring = list(zip(lat.tolist(), lon.tolist(), strict=True))
        zones.append(Zone.polygon(f"area-{i}", ring, kind="service_area"))
    for i in range(n_depot):
        lat, lon = place(8000)
        zones.append(
            Zone.circle(f"depot-{i}", lat, lon, 150.0, kind="depot", dwell_threshold_s=600)
        )
    for i in range(n_circle):
        lat, lon = place(7000)
        r = float(rng.uniform(20, 80))
        zones.append(
            Zone.circle(f"stop-{i}", lat, lon, r, kind="customer_stop", dwell_threshold_s=120)
        )
    for i in range(n_poly):
        cx, cy = frame.xy(*place(7000))
        if i % 3:
            w, h = rng.uniform(30, 250, 2)
            a = rng.uniform(0, np.pi)
            corners = np.array([(-w, -h), (w, -h), (w, h), (-w, h)]) / 2
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = corners @ rot.T
        else:
            k = int(rng.integers(6, 20))
            theta = (np.arange(k) + rng.uniform(0, 0.8, k)) * (2 * np.pi / k)
            rr = rng.uniform(40, 250, k)
            pts = np.column_stack([rr * np.cos(theta), rr * np.sin(theta)])
        lat, lon = frame.to_latlon(cx + pts[:, 0], cy + pts[:, 1])
        ring = list(zip(lat.tolist(), lon.tolist(), strict=True))
        kind = "restricted" if i % 10 == 0 else "customer_stop"
        zones.append(Zone.polygon(f"poly-{i}", ring, kind=kind))
    for i in range(n_corridor):
        x0, y0 = frame.xy(*place(7000))
        steps = rng.choice([-1, 1], size=(6, 2)) * rng.uniform(100, 600, (6, 2))
        steps[::2, 1] = 0
        steps[1::2, 0] = 0
        xy = np.vstack([[x0, y0], np.array([x0, y0]) + np.cumsum(steps, axis=0)])
        lat, lon = frame.to_latlon(xy[:, 0], xy[:, 1])
        path = list(zip(lat.tolist(), lon.tolist(), strict=True))
        zones.append(
            Zone.corridor(f"corridor-{i}", path, float(rng.uniform(20, 40)), kind="restricted")
        )
    return zones


def build_fixes(
    n_fixes: int, n_vehicles: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Vehicles driving a street grid (blocks of BLOCK_M) at 5-14 m/s, one fix every 1-5 s
    with 4 m of GPS noise, in time order across the fleet."""
    frame = LocalFrame(*CENTER)
    per = n_fixes // n_vehicles
    xs = np.empty((n_vehicles, per))
    ys = np.empty((n_vehicles, per))
    ts = np.empty((n_vehicles, per))
    for v in range(n_vehicles):
        x, y = rng.normal(0, 6000, 2)
        x, y = round(x / BLOCK_M) * BLOCK_M, round(y / BLOCK_M) * BLOCK_M
        speed = rng.uniform(5, 14)
        period = float(rng.choice([1.0, 2.0, 5.0]))
        heading = int(rng.integers(4))
        t = 1_700_000_000.0 + rng.uniform(0, period)
        for k in range(per):
            xs[v, k], ys[v, k], ts[v, k] = x, y, t
            t += period
            step = speed * period
            if rng.random() < 0.15:
                step = 0.0
            dx, dy = ((1, 0), (0, 1), (-1, 0), (0, -1))[heading]
            before = (x // BLOCK_M, y // BLOCK_M)
            x += dx * step
            y += dy * step
            if (x // BLOCK_M, y // BLOCK_M) != before and rng.random() < 0.3:
                heading = (heading + int(rng.choice([1, 3]))) % 4
            if math.hypot(x, y) > CITY_RADIUS_M:
                heading = (heading + 2) % 4
    noise = rng.normal(0, 4.0, (2, n_vehicles, per))
    lat, lon = frame.to_latlon((xs + noise[0]).ravel(), (ys + noise[1]).ravel())
    vehicle = np.repeat(np.array([f"van-{v:05d}" for v in range(n_vehicles)], dtype=object), per)
    t = ts.ravel()
    order = np.argsort(t, kind="stable")
    return vehicle[order].tolist(), t[order], lat[order], lon[order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", type=int, default=10_000)
    ap.add_argument("--fixes", type=int, default=300_000)
    ap.add_argument("--vehicles", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--loop-sample", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    zones = build_zones(args.zones, rng)
    t_zones = time.perf_counter() - t0
    vehicle, ts, lat, lon = build_fixes(args.fixes, args.vehicles, rng)
    n = len(vehicle)
    print(f"built {len(zones)} zones in {t_zones:.1f} s; {n} fixes from {args.vehicles} vehicles")

    geoms = np.array([z.geometry for z in zones], dtype=object)
    tree = shapely.STRtree(geoms)
    t0 = time.perf_counter()
    pairs = tree.query(shapely.points(lon, lat), predicate="intersects")
    t_bare = time.perf_counter() - t0
    bare = n / t_bare

    prepared = geoms.copy()
    shapely.prepare(prepared)
    t0 = time.perf_counter()
    i, j = tree.query(shapely.points(lon, lat))
    inside = shapely.contains_xy(prepared[j], lon[i], lat[i])
    t_prep = time.perf_counter() - t0
    bare_prepared = n / t_prep

    sample = min(args.loop_sample, n)
    t0 = time.perf_counter()
    loop_pairs = 0
    for x, y in zip(lon[:sample].tolist(), lat[:sample].tolist(), strict=True):
        loop_pairs += len(tree.query(shapely.Point(x, y), predicate="intersects"))
    loop = sample / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    engine = GeofenceEngine(EngineConfig(enter_margin_m=5.0, exit_margin_m=10.0), zones)
    engine.index.rebuild()
    t_setup = time.perf_counter() - t0
    events = 0
    kinds: dict[str, int] = {}
    t0 = time.perf_counter()
    for a in range(0, n, args.batch):
        b = a + args.batch
        out = engine.process(FixBatch(vehicle[a:b], ts[a:b], lat[a:b], lon[a:b]))
        events += len(out)
        for e in out:
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    t_engine = time.perf_counter() - t0
    full = n / t_engine

    print(
        f"zone pairs: {pairs.shape[1]} ({pairs.shape[1] / n:.2f} per fix), a2 agrees: "
        f"{int(inside.sum()) == pairs.shape[1]}"
    )
    print(f"(a) bare vectorised STRtree query : {bare:12,.0f} positions/s")
    print(f"(a2) bbox query + prepared contains: {bare_prepared:11,.0f} positions/s")
    print(f"(b) per-point loop                : {loop:12,.0f} positions/s")
    print(f"(c) GeofenceEngine.process        : {full:12,.0f} positions/s")
    print(f"    engine setup (index, margins) : {t_setup:.2f} s")
    print(f"    events: {events} {kinds}")
    print(f"    slow-path fixes: {engine.stats.slow_path_fixes} of {engine.stats.fixes}")
    print(
        f"ratios: engine/bare {full / bare:.2f}, engine/loop {full / loop:.2f}, "
        f"bare/loop {bare / loop:.2f}"
    )
    print(
        json.dumps(
            {
                "zones": len(zones),
                "positions": n,
                "vehicles": args.vehicles,
                "batch": args.batch,
                "bare_pps": round(bare),
                "bare_prepared_pps": round(bare_prepared),
                "loop_pps": round(loop),
                "engine_pps": round(full),
                "engine_over_bare": round(full / bare, 3),
                "engine_over_loop": round(full / loop, 3),
                "engine_over_bare_prepared": round(full / bare_prepared, 3),
                "events": events,
                "slow_path_fixes": engine.stats.slow_path_fixes,
                "setup_s": round(t_setup, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
