"""The geofence engine: zones, their index and every vehicle's membership, fed batches of fixes.

:class:`GeofenceEngine` is what the gateway calls from its ingest path::

    engine = GeofenceEngine(EngineConfig(enter_margin_m=5, exit_margin_m=10))
    engine.set_zone(Zone.circle("stop-17", 48.8566, 2.3522, 60, kind="customer_stop"))
    events = engine.process(FixBatch(vehicles, ts, lat, lon, accuracy, speed))  # or tuples
    events += engine.tick(now)                                   # dwell without new fixes

Contract:

* Fixes of one vehicle must be in time order across and within batches; a fix older than the
  vehicle's previous one is dropped and counted in :attr:`GeofenceEngine.stats`. Batches may mix
  vehicles in any order; events come back in the order of the fixes that caused them (for one
  fix: exits, then enters, crossings and dwells, each by zone id).
* A vehicle's first fix sets up its membership without events (unless
  ``first_fix_enters``), and zone changes never emit events by themselves: a zone created around a
  parked vehicle makes it a member silently. Membership is reconciled with each vehicle's last
  known position when a zone is set or removed.
* A fix's reported accuracy and speed (optional; NaN or None where not reported) decide how
  much it proves: a move is a path only if the vehicle drove it, and evidence within a fix's
  accuracy does not count (the rule is in :mod:`geofence.transitions`).
* A vehicle that comes back after being offline is compared with its last fix as usual, so it gets
  the exits and enters it owes; crossings are only inferred between fixes at most
  ``max_cross_gap_s`` apart.
* A zone with a :class:`~geofence.zones.Schedule` emits nothing while inactive, but membership
  is still tracked, so a vehicle already inside when the zone becomes active gets no enter (and
  its later exit is reported).
* Time only comes from fixes and from ``now`` arguments. The engine is not thread-safe: call it
  from one task.

How it stays fast: one vectorised index query covers the whole batch (see
:mod:`geofence.index`). Each fix's observations are summarised in a 64-bit Zobrist signature
(XOR of a hash per ``(zone slot, OUTER/INNER bits)``). Because a transition is idempotent in its
observation, a fix whose signature equals the previous fix's cannot change membership; only fixes
whose signature changed, that cross a zone, or that reach a dwell deadline get Python-level work,
and at those only the zones whose bits changed are looked at. Two different observation sets
share a signature with probability 2**-64. A fix whose accuracy is beyond a margin is the
exception: it may hold back a transition that a later fix with the same observations, but a
better accuracy, makes, so such fixes of vehicles near a zone, and the fix after each, take the
Python path in full. :attr:`GeofenceEngine.stats` counts the fixes that took the Python path.

State for persistence: :meth:`GeofenceEngine.export_state` returns plain JSON-ready dicts and
:meth:`GeofenceEngine.import_state` takes them back (set the zones first).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .events import GeofenceEvent, ZoneCross, ZoneDwell, ZoneEnter, ZoneExit
from .geo import haversine_m_array, normalize_lon, normalize_lon_array
from .index import Hits, ZoneIndex
from .transitions import (
    CROSS,
    INNER,
    OUTER,
    STILL_SPEED_MPS,
    UNSURE,
    FixPoint,
    Membership,
    check_dwell,
    dwell_due,
    transition,
)
from .zones import Zone

STATE_VERSION: Final = 1
_EVENT_RANK: Final = {ZoneExit: 0, ZoneEnter: 1, ZoneCross: 2, ZoneDwell: 3}
_INF: Final = math.inf


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tuning of :class:`GeofenceEngine`.

    ``enter_margin_m``: a vehicle enters only once inside by more than this. ``exit_margin_m``:
    it exits only once outside by more than this. ``max_cross_gap_s``: two fixes further apart
    in time are not joined to look for crossings (the vehicle may have gone anywhere).
    ``first_fix_enters``: treat a vehicle's very first fix inside a zone as an enter.
    """

    enter_margin_m: float = 5.0
    exit_margin_m: float = 10.0
    max_cross_gap_s: float = 300.0
    first_fix_enters: bool = False

    def __post_init__(self) -> None:
        for name in ("enter_margin_m", "exit_margin_m", "max_cross_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class FixBatch:
    """A batch of fixes as parallel arrays: vehicle ids, epoch seconds, latitude, longitude, and
    optionally each fix's reported accuracy (metres) and speed (m/s), NaN where not reported."""

    __slots__ = ("accuracy", "lat", "lon", "speed", "ts", "vehicle")

    def __init__(
        self,
        vehicle: Sequence[str],
        ts: ArrayLike,
        lat: ArrayLike,
        lon: ArrayLike,
        accuracy: ArrayLike | Sequence[float | None] | None = None,
        speed: ArrayLike | Sequence[float | None] | None = None,
    ) -> None:
        self.vehicle = vehicle
        self.ts = np.asarray(ts, dtype=np.float64)
        self.lat = np.asarray(lat, dtype=np.float64)
        self.lon = np.asarray(lon, dtype=np.float64)
        n = len(vehicle)
        self.accuracy = _optional(accuracy, n)
        self.speed = _optional(speed, n)
        if not (
            self.ts.shape
            == self.lat.shape
            == self.lon.shape
            == self.accuracy.shape
            == self.speed.shape
            == (n,)
        ):
            raise ValueError("vehicle, ts, lat, lon (and accuracy, speed) must be 1-D and equal")

    def __len__(self) -> int:
        return len(self.vehicle)

    @classmethod
    def from_fixes(cls, fixes: Iterable[tuple[str, float, float, float]]) -> FixBatch:
        """Build from ``(vehicle_id, ts, lat, lon)`` tuples."""
        rows = list(fixes)
        if not rows:
            return cls([], [], [], [])
        vehicle, ts, lat, lon = zip(*rows, strict=True)
        return cls(vehicle, ts, lat, lon)


def _optional(values: ArrayLike | Sequence[float | None] | None, n: int) -> NDArray[np.float64]:
    """A float array of ``values``, NaN for None (all NaN when ``values`` is None)."""
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray):
        return np.asarray(values, dtype=np.float64)
    return np.fromiter(
        (math.nan if v is None else v for v in values),  # type: ignore[union-attr]
        np.float64,
    )


@dataclass
class EngineStats:
    """Counters for the gateway's metrics."""

    fixes: int = 0
    out_of_order: int = 0
    slow_path_fixes: int = 0
    events: int = 0


def _mix(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64 finaliser: a well-spread 64-bit hash of each key."""
    z = keys + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_Pending = tuple[int, int, str, GeofenceEvent]


class _Accuracy(NamedTuple):
    """What a fix's evidence is worth: its reported accuracy (0: none), the larger of that and
    the previous fix's (the move's), and whether the move to it is a path the vehicle drove."""

    fix_m: float
    move_m: float
    drove: bool


class GeofenceEngine:
    """Zones, spatial index and per-vehicle membership; see the module docstring."""

    def __init__(self, config: EngineConfig | None = None, zones: Iterable[Zone] = ()) -> None:
        self.config = config if config is not None else EngineConfig()
        self.stats = EngineStats()
        self._index = ZoneIndex(self.config.enter_margin_m, self.config.exit_margin_m)
        self._vid: defaultdict[str, int] = defaultdict(lambda: len(self._vid))
        self._names: list[str] = []
        self._members: list[dict[int, Membership]] = []
        # Each vehicle's last observation (slot -> OUTER/INNER bits), valid unless dirty.
        self._obs: list[dict[int, int]] = []
        cap = 16
        self._last_ts = np.full(cap, np.nan)
        self._last_lat = np.full(cap, np.nan)
        self._last_lon = np.full(cap, np.nan)
        self._last_acc = np.full(cap, np.nan)
        # Whether the last fix stood still near a zone with an accuracy that may have held a
        # transition back: the next fix is then looked at whatever its observations.
        self._weak = np.zeros(cap, bool)
        self._sig = np.zeros(cap, np.uint64)
        self._dirty = np.zeros(cap, bool)
        self._due = np.full(cap, _INF)
        for zone in zones:
            self.set_zone(zone)

    @property
    def index(self) -> ZoneIndex:
        """The spatial index (read-only use)."""
        return self._index

    def zone(self, zone_id: str) -> Zone | None:
        """The zone with ``zone_id``, or None."""
        return self._index.get(zone_id)

    def zones(self) -> list[Zone]:
        """All zones."""
        return list(self._index)

    # -- zones ----------------------------------------------------------------------------------

    def set_zone(self, zone: Zone) -> None:
        """Add ``zone`` or replace the one with the same id. Vehicles whose last position is
        inside become members without an enter; members now outside stop being members without
        an exit."""
        old_slot = self._index.slot_of(zone.id)
        bounds = [self._index.outer_bounds(old_slot)] if old_slot is not None else []
        slot, previous = self._index.set(zone)
        bounds.append(self._index.outer_bounds(slot))
        nv = len(self._names)
        if nv == 0:
            return
        cand = self._vehicles_in(bounds, nv)
        if previous is not None:
            members_of = [vid for vid in range(nv) if slot in self._members[vid]]
            cand = np.union1d(cand, np.asarray(members_of, np.int64))
        if cand.size == 0:
            return
        flags = self._index.observe_slot(slot, self._last_lat[cand], self._last_lon[cand])
        for vid, f in zip(cand.tolist(), flags.tolist(), strict=True):
            members = self._members[vid]
            if f & INNER:
                if slot not in members:
                    members[slot] = Membership(float(self._last_ts[vid]))
            elif not f & OUTER:
                members.pop(slot, None)
            self._dirty[vid] = True
            self._due[vid] = self._next_due(members)

    def remove_zone(self, zone_id: str) -> bool:
        """Remove a zone; its members stop being members without an exit. Returns whether the
        zone existed."""
        slot = self._index.slot_of(zone_id)
        if slot is None:
            return False
        bounds = [self._index.outer_bounds(slot)]
        nv = len(self._names)
        cand = self._vehicles_in(bounds, nv)
        self._dirty[cand] = True
        self._index.remove(zone_id)
        for vid in range(nv):
            members = self._members[vid]
            if members.pop(slot, None) is not None:
                self._dirty[vid] = True
                self._due[vid] = self._next_due(members)
        return True

    def _vehicles_in(
        self, bounds: list[tuple[float, float, float, float]], nv: int
    ) -> NDArray[np.int64]:
        lat = self._last_lat[:nv]
        lon = self._last_lon[:nv]
        mask = np.zeros(nv, bool)
        for xmin, ymin, xmax, ymax in bounds:
            mask |= (lon >= xmin) & (lon <= xmax) & (lat >= ymin) & (lat <= ymax)
        return np.flatnonzero(mask).astype(np.int64)

    # -- vehicles -------------------------------------------------------------------------------

    def _vehicle_indices(self, vehicles: Sequence[str]) -> NDArray[np.int64]:
        before = len(self._vid)
        idx = np.fromiter(map(self._vid.__getitem__, vehicles), np.int64, count=len(vehicles))
        after = len(self._vid)
        if after > before:
            self._names.extend(str(name) for name in itertools.islice(self._vid, before, None))
            self._members.extend({} for _ in range(after - before))
            self._obs.extend({} for _ in range(after - before))
            self._grow(after)
        return idx

    def _grow(self, need: int) -> None:
        cap = len(self._last_ts)
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name, fill in (
            ("_last_ts", np.nan),
            ("_last_lat", np.nan),
            ("_last_lon", np.nan),
            ("_last_acc", np.nan),
            ("_weak", False),
            ("_sig", 0),
            ("_dirty", False),
            ("_due", _INF),
        ):
            arr = getattr(self, name)
            grown = np.full(new, fill, dtype=arr.dtype)
            grown[:cap] = arr
            setattr(self, name, grown)

    def _next_due(self, members: dict[int, Membership]) -> float:
        due = _INF
        zones = self._index.zone_by_slot
        for slot, m in members.items():
            zone = zones[slot]
            assert zone is not None
            d = dwell_due(m, zone.dwell_threshold_s)
            if d is not None and d < due:
                due = d
        return due

    def memberships(self, vehicle_id: str) -> dict[str, Membership]:
        """The zones ``vehicle_id`` is currently inside, by zone id."""
        vid = self._vid.get(vehicle_id)
        if vid is None:
            return {}
        return {self._index.zone_at(s).id: m for s, m in self._members[vid].items()}

    def last_fix(self, vehicle_id: str) -> FixPoint | None:
        """The last fix processed for ``vehicle_id``."""
        vid = self._vid.get(vehicle_id)
        if vid is None or math.isnan(self._last_ts[vid]):
            return None
        return FixPoint(
            float(self._last_ts[vid]), float(self._last_lat[vid]), float(self._last_lon[vid])
        )

    def forget_vehicle(self, vehicle_id: str) -> None:
        """Drop a vehicle's state; its next fix counts as its first."""
        vid = self._vid.get(vehicle_id)
        if vid is None:
            return
        self._members[vid] = {}
        self._obs[vid] = {}
        self._last_ts[vid] = self._last_lat[vid] = self._last_lon[vid] = np.nan
        self._last_acc[vid] = np.nan
        self._weak[vid] = False
        self._sig[vid] = 0
        self._dirty[vid] = True
        self._due[vid] = _INF

    # -- fixes ----------------------------------------------------------------------------------

    @property
    def has_zones(self) -> bool:
        """Whether any zone exists; without one, ``remember`` is all a fix needs."""
        return len(self._index) > 0

    def remember(
        self,
        vehicle_id: str,
        ts: float,
        lat: float,
        lon: float,
        fixes: int = 1,
        accuracy: float | None = None,
    ) -> None:
        """What ``process`` does with a vehicle's newest of ``fixes`` fixes while there are no
        zones (no membership, crossing or dwell can change): keep it as the vehicle's last fix
        unless an earlier one was newer (then it is counted as out of order, as ``process``
        counts it), so a zone created later sees where it is."""
        vid = int(self._vehicle_indices((vehicle_id,))[0])
        self.stats.fixes += fixes
        last = self._last_ts[vid]
        if ts < last:  # never while last is NaN, before a first fix
            self.stats.out_of_order += 1
        else:
            self._last_ts[vid] = ts
            self._last_lat[vid] = lat
            self._last_lon[vid] = normalize_lon(lon)
            self._last_acc[vid] = math.nan if accuracy is None else accuracy
            self._weak[vid] = False
            self._sig[vid] = 0
            self._dirty[vid] = False

    def process(
        self, batch: FixBatch | Iterable[tuple[str, float, float, float]]
    ) -> list[GeofenceEvent]:
        """Apply a batch of fixes; return the events they cause, in fix order."""
        b = batch if isinstance(batch, FixBatch) else FixBatch.from_fixes(batch)
        n = len(b)
        if n == 0:
            return []
        self.stats.fixes += n
        vi = self._vehicle_indices(b.vehicle)
        order = np.argsort(vi, kind="stable")
        v = vi[order]
        t = b.ts[order]
        la = b.lat[order]
        lo = normalize_lon_array(b.lon[order])
        acc = b.accuracy[order]
        spd = b.speed[order]
        first = self._group_starts(v)
        pt, pla, plo, pacc = self._previous(v, t, la, lo, acc, first)
        late = t < pt
        if late.any():
            keep = self._in_order(v, t, first, late)
            self.stats.out_of_order += int(n - keep.sum())
            order, v, t, la, lo = order[keep], v[keep], t[keep], la[keep], lo[keep]
            acc, spd = acc[keep], spd[keep]
            n = v.size
            if n == 0:
                return []
            first = self._group_starts(v)
            pt, pla, plo, pacc = self._previous(v, t, la, lo, acc, first)
        has_prev = ~np.isnan(pt)
        moved, acc0, pacc0 = self._motion(la, lo, acc, spd, pla, plo, pacc)
        joined = has_prev & (t - pt <= self.config.max_cross_gap_s) & moved
        hits = self._index.query(
            la, lo, np.where(joined, pla, np.nan), np.where(joined, plo, np.nan)
        )
        sig = self._signatures(hits, n)
        prev_sig = np.empty(n, np.uint64)
        prev_sig[1:] = sig[:-1]
        starts = np.flatnonzero(first)
        prev_sig[starts] = self._sig[v[starts]]
        changed = sig != prev_sig
        changed[hits.point[(hits.flags & CROSS) != 0]] = True
        full = self._dirty[v[starts]] | ~has_prev[starts]
        changed[starts] |= full
        ends = np.append(starts[1:], n)
        last = ends - 1
        recheck, weak_near = self._weak_fixes(v, first, starts, ends, sig, prev_sig, acc0)
        changed |= recheck
        group_changed = np.logical_or.reduceat(changed, starts)
        group_due = self._due[v[starts]] <= t[last]
        work = np.flatnonzero(group_changed | group_due)
        pending: list[_Pending] = []
        if work.size:
            self._slow_path(
                work,
                starts,
                ends,
                full,
                changed,
                recheck,
                hits,
                order,
                v,
                t,
                la,
                lo,
                pt,
                pla,
                plo,
                acc0,
                pacc0,
                joined,
                pending,
            )
        lv = v[last]
        self._last_ts[lv] = t[last]
        self._last_lat[lv] = la[last]
        self._last_lon[lv] = lo[last]
        self._last_acc[lv] = acc[last]
        self._weak[lv] = weak_near[last]
        self._sig[lv] = sig[last]
        self._dirty[lv] = False
        pending.sort(key=lambda e: e[:3])
        self.stats.events += len(pending)
        return [e[3] for e in pending]

    @staticmethod
    def _group_starts(v: NDArray[np.int64]) -> NDArray[np.bool_]:
        first = np.empty(v.size, bool)
        first[0] = True
        np.not_equal(v[1:], v[:-1], out=first[1:])
        return first

    def _previous(
        self,
        v: NDArray[np.int64],
        t: NDArray[np.float64],
        la: NDArray[np.float64],
        lo: NDArray[np.float64],
        acc: NDArray[np.float64],
        first: NDArray[np.bool_],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        out = []
        for arr, stored in (
            (t, self._last_ts),
            (la, self._last_lat),
            (lo, self._last_lon),
            (acc, self._last_acc),
        ):
            p = np.empty_like(arr)
            p[1:] = arr[:-1]
            p[first] = stored[v[first]]
            out.append(p)
        return out[0], out[1], out[2], out[3]

    def _motion(
        self,
        la: NDArray[np.float64],
        lo: NDArray[np.float64],
        acc: NDArray[np.float64],
        spd: NDArray[np.float64],
        pla: NDArray[np.float64],
        plo: NDArray[np.float64],
        pacc: NDArray[np.float64],
    ) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
        """Per fix: whether the straight line from the previous fix is a path it drove (it
        reports a speed of at least STILL_SPEED_MPS and is elsewhere, or it is further from
        the previous fix than the two fixes' uncertainty, each the larger of the enter margin
        and its accuracy), and its and the previous fix's accuracy, 0 where none was
        reported."""
        margin = self.config.enter_margin_m
        acc0 = np.nan_to_num(acc, nan=0.0)
        pacc0 = np.nan_to_num(pacc, nan=0.0)
        reach = np.maximum(acc0, margin) + np.maximum(pacc0, margin)
        with np.errstate(invalid="ignore"):
            dist = haversine_m_array(pla, plo, la, lo)  # NaN (no previous): never moved
            moved = (dist > reach) | ((spd >= STILL_SPEED_MPS) & (dist > 0))
        return moved, acc0, pacc0

    def _weak_fixes(
        self,
        v: NDArray[np.int64],
        first: NDArray[np.bool_],
        starts: NDArray[np.intp],
        ends: NDArray[np.intp],
        sig: NDArray[np.uint64],
        prev_sig: NDArray[np.uint64],
        acc0: NDArray[np.float64],
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """The fixes to look at in full whatever their observations, and the weak ones.

        A fix with an accuracy beyond a margin may hold a transition back (UNSURE), so the
        idempotence the fast path relies on does not hold for it: such a fix of a vehicle near a
        zone in the batch (or inside one) is weak, and it and the fix after it are looked at in
        full.
        """
        cfg = self.config
        weak = acc0 > min(cfg.enter_margin_m, cfg.exit_margin_m)
        recheck = np.zeros(v.size, bool)
        if weak.any():
            # A vehicle near no zone in the whole batch, and inside none, has nothing to hold.
            near = np.logical_or.reduceat((sig != 0) | (prev_sig != 0), starts)
            near |= np.fromiter(
                (bool(self._members[vid]) for vid in v[starts].tolist()), bool, starts.size
            )
            weak &= np.repeat(near, ends - starts)
            recheck |= weak
            recheck[1:] |= weak[:-1] & ~first[1:]
        recheck[starts] |= self._weak[v[starts]]
        return recheck, weak

    def _in_order(
        self,
        v: NDArray[np.int64],
        t: NDArray[np.float64],
        first: NDArray[np.bool_],
        late: NDArray[np.bool_],
    ) -> NDArray[np.bool_]:
        """Keep mask dropping every fix older than the newest kept fix of its vehicle."""
        keep = np.ones(v.size, bool)
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:], v.size)
        bad_groups = np.flatnonzero(np.logical_or.reduceat(late, starts))
        t_l = t.tolist()
        for g in bad_groups.tolist():
            a, b = int(starts[g]), int(ends[g])
            newest = float(self._last_ts[v[a]])
            if math.isnan(newest):
                newest = -_INF
            for k in range(a, b):
                if t_l[k] < newest:
                    keep[k] = False
                else:
                    newest = t_l[k]
        return keep

    @staticmethod
    def _signatures(hits: Hits, n: int) -> NDArray[np.uint64]:
        sig = np.zeros(n, np.uint64)
        state = hits.flags & (OUTER | INNER)
        km = state != 0
        if not km.any():
            return sig
        hp = hits.point[km]
        keys = (hits.slot[km].astype(np.uint64) << np.uint64(2)) | state[km].astype(np.uint64)
        h = _mix(keys)
        run = np.flatnonzero(np.concatenate(([True], hp[1:] != hp[:-1])))
        sig[hp[run]] = np.bitwise_xor.reduceat(h, run)
        return sig

    def _slow_path(
        self,
        work: NDArray[np.intp],
        starts: NDArray[np.intp],
        ends: NDArray[np.intp],
        full: NDArray[np.bool_],
        changed: NDArray[np.bool_],
        recheck: NDArray[np.bool_],
        hits: Hits,
        order: NDArray[np.intp],
        v: NDArray[np.int64],
        t: NDArray[np.float64],
        la: NDArray[np.float64],
        lo: NDArray[np.float64],
        pt: NDArray[np.float64],
        pla: NDArray[np.float64],
        plo: NDArray[np.float64],
        acc0: NDArray[np.float64],
        pacc0: NDArray[np.float64],
        joined: NDArray[np.bool_],
        out: list[_Pending],
    ) -> None:
        """Sequential transitions for the vehicles (groups) in ``work``: every changed fix, and
        the first fix reaching each dwell deadline in between.

        At a changed fix only the zones whose bits differ from the vehicle's previous
        observation, or that were crossed, are looked at: for the others the transition is
        idempotent. A vehicle's first fix, or its first after a zone change (``full``), and the
        fixes to ``recheck`` (see :meth:`_weak_fixes`) look at every zone it is in or observed.
        """
        changed_idx = np.flatnonzero(changed)
        sel = changed[hits.point]
        hp = hits.point[sel]
        hs_l = hits.slot[sel].tolist()
        hf_l = hits.flags[sel].tolist()
        h0_l = np.searchsorted(hp, changed_idx, side="left").tolist()
        h1_l = np.searchsorted(hp, changed_idx, side="right").tolist()
        # Lists are built for the changed fixes only, so this costs in proportion to the work.
        k_l = changed_idx.tolist()
        t_c, la_c, lo_c = (
            t[changed_idx].tolist(),
            la[changed_idx].tolist(),
            lo[changed_idx].tolist(),
        )
        pt_c, pla_c = pt[changed_idx].tolist(), pla[changed_idx].tolist()
        plo_c, order_c = plo[changed_idx].tolist(), order[changed_idx].tolist()
        acc_c, pacc_c = acc0[changed_idx].tolist(), pacc0[changed_idx].tolist()
        drove_c = joined[changed_idx].tolist()
        recheck_c = recheck[changed_idx].tolist()
        before_c = t[np.maximum(changed_idx - 1, 0)].tolist()
        ga, gb = starts[work], ends[work]
        c0_l = np.searchsorted(changed_idx, ga).tolist()
        c1_l = np.searchsorted(changed_idx, gb).tolist()
        vid_l = v[ga].tolist()
        full_l = full[work].tolist()
        t_end_l = t[gb - 1].tolist()
        due_l = self._due[v[ga]].tolist()
        slow = 0
        for g, a in enumerate(ga.tolist()):
            due = due_l[g]
            vid = vid_l[g]
            name = self._names[vid]
            members = self._members[vid]
            last_obs = self._obs[vid]
            c0, c1 = c0_l[g], c1_l[g]
            slow += c1 - c0
            cur = a
            for c in range(c0, c1 + 1):
                k, t_before = (k_l[c], before_c[c]) if c < c1 else (int(gb[g]), t_end_l[g])
                while cur < k and due <= t_before:
                    j = cur + int(np.searchsorted(t[cur:k], due))
                    fix = FixPoint(float(t[j]), float(la[j]), float(lo[j]))
                    due = self._dwells(name, members, fix, int(order[j]), out)
                    cur = j + 1
                if c == c1:
                    break
                obs = dict(zip(hs_l[h0_l[c] : h1_l[c]], hf_l[h0_l[c] : h1_l[c]], strict=True))
                crossed = [s for s, f in obs.items() if f & CROSS]
                for s in crossed:
                    obs[s] &= OUTER | INNER
                    if not obs[s]:
                        del obs[s]
                if (k == a and full_l[g]) or recheck_c[c]:
                    slots = members.keys() | obs.keys()
                else:
                    slots = {s for s, _ in obs.items() ^ last_obs.items()}
                slots.update(crossed)
                fix = FixPoint(t_c[c], la_c[c], lo_c[c])
                if slots:
                    ptk = pt_c[c]
                    prev = None if ptk != ptk else FixPoint(ptk, pla_c[c], plo_c[c])  # NaN: none
                    acc = _Accuracy(acc_c[c], max(acc_c[c], pacc_c[c]), drove_c[c])
                    if self._apply(
                        name, members, slots, obs, crossed, fix, prev, acc, order_c[c], out
                    ):
                        due = self._next_due(members)
                if due <= fix.ts:
                    due = self._dwells(name, members, fix, order_c[c], out)
                last_obs = obs
                cur = k + 1
            self._obs[vid] = last_obs
            self._due[vid] = due
        self.stats.slow_path_fixes += slow

    def _apply(
        self,
        name: str,
        members: dict[int, Membership],
        slots: Iterable[int],
        obs: dict[int, int],
        crossed: list[int],
        fix: FixPoint,
        prev: FixPoint | None,
        accuracy: _Accuracy,
        pos: int,
        out: list[_Pending],
    ) -> bool:
        """Run :func:`transition` for ``slots``; return whether membership changed."""
        loose = accuracy.move_m > min(self.config.enter_margin_m, self.config.exit_margin_m)
        zones = self._index.zone_by_slot
        initial = prev is None and not self.config.first_fix_enters
        touched = False
        for slot in slots:
            zone = zones[slot]
            assert zone is not None
            m = members.get(slot)
            f = obs.get(slot, 0)
            if slot in crossed:
                f |= CROSS
            if loose:
                f |= self._accuracy_bits(slot, m is not None, f, fix, prev, accuracy)
            new, ev = transition(
                name,
                zone.id,
                m,
                f,
                fix,
                prev,
                zone.dwell_threshold_s,
                initial=initial,
                active=zone.schedule is None or zone.schedule.is_active(fix.ts),
            )
            if new is not m:
                touched = True
                if new is None:
                    del members[slot]
                else:
                    members[slot] = new
            if ev is not None:
                out.append((pos, _EVENT_RANK[type(ev)], zone.id, ev))
        return touched

    def _accuracy_bits(
        self,
        slot: int,
        member: bool,
        f: int,
        fix: FixPoint,
        prev: FixPoint | None,
        accuracy: _Accuracy,
    ) -> int:
        """The bits a fix's accuracy adds to its observation of the zone in ``slot``: OUTER
        while the fix is within its accuracy of the zone, so it neither exits nor crosses;
        UNSURE when it would enter without it, or the move to it if the vehicle drove it, being
        deeper inside than their accuracy."""
        index = self._index
        cfg = self.config
        acc, seg_acc, drove = accuracy
        bits = 0
        near_out = acc > cfg.exit_margin_m and not f & OUTER and (member or f & CROSS)
        if near_out and -index.depth_m(slot, fix.lat, fix.lon) <= acc:
            bits |= OUTER
        if member:
            return bits
        if f & INNER:
            if (
                acc > cfg.enter_margin_m
                and index.depth_m(slot, fix.lat, fix.lon) <= acc
                and not (
                    drove
                    and prev is not None
                    and index.reaches(slot, prev.lat, prev.lon, fix.lat, fix.lon, seg_acc)
                )
            ):
                bits |= UNSURE
        elif (
            f & CROSS
            and prev is not None
            and seg_acc > cfg.enter_margin_m
            and not index.reaches(slot, prev.lat, prev.lon, fix.lat, fix.lon, seg_acc)
        ):
            bits |= UNSURE
        return bits

    def _dwells(
        self,
        name: str,
        members: dict[int, Membership],
        fix: FixPoint,
        pos: int,
        out: list[_Pending],
    ) -> float:
        """Emit the dwell events due at ``fix``; return the next deadline."""
        for slot, m in list(members.items()):
            zone = self._index.zone_at(slot)
            due = dwell_due(m, zone.dwell_threshold_s)
            if due is None or due > fix.ts:
                continue
            new, ev = check_dwell(
                name, zone.id, m, fix, zone.dwell_threshold_s, active=zone.is_active(fix.ts)
            )
            members[slot] = new
            if ev is not None:
                out.append((pos, _EVENT_RANK[ZoneDwell], zone.id, ev))
        return self._next_due(members)

    def tick(self, now: float) -> list[GeofenceEvent]:
        """Dwell events due by ``now`` for vehicles that sent no fix since; each is placed at the
        vehicle's last position."""
        nv = len(self._names)
        due = np.flatnonzero(self._due[:nv] <= now)
        out: list[_Pending] = []
        for vid in due.tolist():
            fix = FixPoint(float(now), float(self._last_lat[vid]), float(self._last_lon[vid]))
            self._due[vid] = self._dwells(self._names[vid], self._members[vid], fix, vid, out)
        out.sort(key=lambda e: e[:3])
        self.stats.events += len(out)
        return [e[3] for e in out]

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self, only: Iterable[str] | None = None) -> dict[str, Any]:
        """Every vehicle's (or those of ``only``'s) last fix and memberships as JSON-ready
        dicts::

        {"version": 1, "vehicles": {"van-1": {"ts": ..., "lat": ..., "lon": ...,
            "zones": {"depot": {"since": ..., "dwell_done": false}}}}}
        """
        vehicles: dict[str, Any] = {}
        if only is None:
            chosen: Iterable[tuple[int, str]] = enumerate(self._names)
        else:
            chosen = ((self._vid[n], n) for n in only if n in self._vid)
        for vid, name in chosen:
            members = self._members[vid]
            ts = float(self._last_ts[vid])
            if math.isnan(ts) and not members:
                continue
            vehicles[name] = {
                "ts": None if math.isnan(ts) else ts,
                "lat": None if math.isnan(ts) else float(self._last_lat[vid]),
                "lon": None if math.isnan(ts) else float(self._last_lon[vid]),
                "zones": {
                    self._index.zone_at(s).id: {"since": m.since, "dwell_done": m.dwell_done}
                    for s, m in members.items()
                },
            }
        return {"version": STATE_VERSION, "vehicles": vehicles}

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`export_state` returned. Memberships of zones not present are
        dropped, so set the zones first. Replaces the state of the vehicles it names."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {state.get('version')!r}")
        vehicles = state.get("vehicles")
        if not isinstance(vehicles, Mapping):
            raise ValueError("state.vehicles must be a mapping")
        names = list(vehicles)
        idx = self._vehicle_indices(names).tolist()
        for vid, name in zip(idx, names, strict=True):
            entry = vehicles[name]
            ts = entry.get("ts")
            if ts is None:
                self._last_ts[vid] = self._last_lat[vid] = self._last_lon[vid] = np.nan
            else:
                self._last_ts[vid] = float(ts)
                self._last_lat[vid] = float(entry["lat"])
                self._last_lon[vid] = float(entry["lon"])
            members: dict[int, Membership] = {}
            for zone_id, m in (entry.get("zones") or {}).items():
                slot = self._index.slot_of(zone_id)
                if slot is not None:
                    members[slot] = Membership(float(m["since"]), bool(m.get("dwell_done")))
            self._members[vid] = members
            self._obs[vid] = {}
            self._last_acc[vid] = np.nan
            self._weak[vid] = False
            self._sig[vid] = 0
            self._dirty[vid] = True
            self._due[vid] = self._next_due(members)
