"""Spatial index over zones, queried with whole batches of positions at once.

:class:`ZoneIndex` keeps every zone in a numbered *slot* (stable while the zone exists; a zone
replaced under the same id keeps its slot, a removed zone's slot may be reused later). For the
hysteresis of :mod:`geofence.transitions` each slot holds two shapes: the zone grown by the exit
margin (*outer*) and shrunk by the enter margin (*inner*). Margins are applied in metres in the
zone's local plane. A zone too small for its enter margin (shrinking it would leave less than a
quarter of its area) uses itself as the inner shape.

Queries are vectorised: one shapely ``STRtree`` bounding-box query over all positions (points,
or segments from the previous fix where crossings must be found), then the exact tests on the
candidate pairs as arrays:

* circles are tested against their exact radius by the chord length between earth-centred
  coordinates, a handful of numpy operations per pair and no shapely call;
* polygons and corridors use ``shapely.contains_xy`` on prepared geometries;
* crossings (the move from the previous fix passed through the inner shape, the fix itself not
  inside it) use a 3-D point-to-segment distance for circles and ``shapely.intersects`` with the
  segment for polygons. A fix outside the outer shape is at least the exit margin from the inner
  one, so a segment shorter than that cannot reach it from there: such segments are queried as
  points (with fixes every few seconds that is many of them) and tested as segments only
  against the zones whose band (outer but not inner) the fix is in.

:meth:`ZoneIndex.depth_m` measures how far a position is inside a zone (negative outside) and
:meth:`ZoneIndex.reaches` whether a segment goes deeper than a given depth, for the few fixes
whose reported accuracy decides a transition.

Changes are cheap: a set or remove marks the slot, and the next query rebuilds only a small
overlay tree of changed slots; entries of the main tree whose slot changed since are skipped.
The main tree is rebuilt when the overlay outgrows :attr:`ZoneIndex.overlay_limit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final, NamedTuple

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

from .geo import (
    ecef_array,
    gaussian_radius_m,
    haversine_m,
    normalize_lon_array,
    split_antimeridian,
)
from .transitions import CROSS, INNER, OUTER
from .zones import Circle, Polygonal, Zone, circle_polygon, polygonal_part

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

DEFAULT_OVERLAY_LIMIT: Final = 256
_SEGMENTIZE_DEG: Final = 0.002  # about 200 m: keeps lon/lat edges faithful through projection
_MIN_INNER_AREA_RATIO: Final = 0.25
_M_PER_DEG: Final = 111_195.0
_CROSS_SLACK: Final = 0.9


class Hits(NamedTuple):
    """Result of :meth:`ZoneIndex.query`: parallel arrays sorted by ``point``. ``flags`` holds
    the :data:`~geofence.transitions.OUTER` / ``INNER`` / ``CROSS`` bits of each pair; pairs
    with no bit set are not included."""

    point: IntArray
    slot: IntArray
    flags: NDArray[np.uint8]


def _segments(
    lat0: FloatArray, lon0: FloatArray, lat1: FloatArray, lon1: FloatArray
) -> NDArray[np.object_]:
    """Line strings from ``(lat0, lon0)`` to ``(lat1, lon1)``, in lon/lat."""
    coords = np.empty((lat0.size, 2, 2))
    coords[:, 0, 0] = lon0
    coords[:, 0, 1] = lat0
    coords[:, 1, 0] = lon1
    coords[:, 1, 1] = lat1
    return shapely.linestrings(coords)


Xyz = tuple[FloatArray, FloatArray, FloatArray]


def _gap2(a: Xyz, b: Xyz, c: Xyz) -> FloatArray:
    """Squared distance from each earth-centred point ``c`` to the segment from ``a`` to
    ``b`` (arrays of equal shape)."""
    dx, dy, dz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    dd = dx * dx + dy * dy + dz * dz
    t = ((c[0] - a[0]) * dx + (c[1] - a[1]) * dy + (c[2] - a[2]) * dz) / np.where(dd > 0, dd, 1.0)
    t = np.clip(t, 0.0, 1.0)
    ex, ey, ez = a[0] + t * dx - c[0], a[1] + t * dy - c[1], a[2] + t * dz - c[2]
    return ex * ex + ey * ey + ez * ez


def _chord(radius_m: float, lat: float) -> float:
    r = gaussian_radius_m(lat)
    return 2.0 * r * math.sin(min(radius_m, math.pi * r) / (2.0 * r))


def offset_geometry(zone: Zone, distance_m: float) -> Polygonal | None:
    """``zone``'s polygon grown (positive) or shrunk (negative) by ``distance_m`` metres, in
    lon/lat; None if shrinking leaves nothing."""
    frame = zone.frame
    planar = frame.project(shapely.segmentize(zone.geometry, _SEGMENTIZE_DEG))
    buffered = planar.buffer(distance_m, quad_segs=4)
    if buffered.is_empty:
        return None
    out = split_antimeridian(frame.unproject(shapely.segmentize(buffered, 200.0)))
    return polygonal_part(out)


class _Slot:
    __slots__ = ("inner", "inner_is_outer", "outer", "planar", "shrunk", "zone")

    def __init__(
        self, zone: Zone, outer: BaseGeometry, inner: BaseGeometry, inner_is_outer: bool
    ) -> None:
        self.zone = zone
        self.outer = outer
        self.inner = inner
        self.inner_is_outer = inner_is_outer
        self.planar: BaseGeometry | None = None  # the zone in its local plane, made on demand
        self.shrunk: dict[int, BaseGeometry | None] = {}  # by whole metres, made on demand


class ZoneIndex:
    """Zones by slot, with an STRtree for batch queries. Not thread-safe."""

    def __init__(
        self,
        enter_margin_m: float = 0.0,
        exit_margin_m: float = 0.0,
        *,
        overlay_limit: int = DEFAULT_OVERLAY_LIMIT,
    ) -> None:
        if not (enter_margin_m >= 0 and exit_margin_m >= 0):
            raise ValueError("margins must be >= 0 metres")
        self.enter_margin_m = float(enter_margin_m)
        self.exit_margin_m = float(exit_margin_m)
        self.overlay_limit = overlay_limit
        self._slots: list[_Slot | None] = []
        self.zone_by_slot: list[Zone | None] = []
        """The zone in each slot (None for free slots); read-only for callers."""
        self._free: list[int] = []
        self._by_id: dict[str, int] = {}
        cap = 16
        self._gen = np.zeros(cap, np.int64)
        self._circle = np.zeros(cap, bool)
        self._inner_same = np.ones(cap, bool)
        self._inner_first = np.zeros(cap, bool)
        self._cx = np.zeros(cap)
        self._cy = np.zeros(cap)
        self._cz = np.zeros(cap)
        self._c2_out = np.zeros(cap)
        self._c2_in = np.zeros(cap)
        self._c2_zone = np.zeros(cap)
        self._outer = np.empty(cap, object)
        self._inner = np.empty(cap, object)
        self._zone_geom = np.empty(cap, object)
        self._main: shapely.STRtree | None = None
        self._main_slot = np.zeros(0, np.int64)
        self._main_gen = np.zeros(0, np.int64)
        self._overlay: shapely.STRtree | None = None
        self._overlay_slot = np.zeros(0, np.int64)
        self._changed: set[int] = set()
        self._stale = True

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._by_id

    def __iter__(self) -> Iterator[Zone]:
        for slot in self._by_id.values():
            s = self._slots[slot]
            assert s is not None
            yield s.zone

    def slot_of(self, zone_id: str) -> int | None:
        """The slot of ``zone_id``, or None."""
        return self._by_id.get(zone_id)

    def zone_at(self, slot: int) -> Zone:
        """The zone in ``slot`` (KeyError if the slot is free)."""
        z = self.zone_by_slot[slot] if 0 <= slot < len(self.zone_by_slot) else None
        if z is None:
            raise KeyError(slot)
        return z

    def get(self, zone_id: str) -> Zone | None:
        """The zone with ``zone_id``, or None."""
        slot = self._by_id.get(zone_id)
        return None if slot is None else self.zone_at(slot)

    def _slot(self, slot: int) -> _Slot:
        s = self._slots[slot]
        if s is None:
            raise KeyError(slot)
        return s

    def outer_bounds(self, slot: int) -> tuple[float, float, float, float]:
        """Bounding box ``(min lon, min lat, max lon, max lat)`` of the slot's outer shape."""
        b = self._slot(slot).outer.bounds
        return (b[0], b[1], b[2], b[3])

    def set(self, zone: Zone) -> tuple[int, Zone | None]:
        """Add ``zone`` or replace the zone with the same id; returns its slot and the zone it
        replaced, if any."""
        prev_slot = self._by_id.get(zone.id)
        previous: Zone | None = None
        if prev_slot is not None:
            old = self._slots[prev_slot]
            assert old is not None
            previous = old.zone
            slot = prev_slot
        elif self._free:
            slot = self._free.pop()
        else:
            slot = len(self._slots)
            self._slots.append(None)
            self.zone_by_slot.append(None)
            self._grow(slot + 1)
        self._fill(slot, zone)
        self._by_id[zone.id] = slot
        self._gen[slot] += 1
        self._changed.add(slot)
        self._stale = True
        return slot, previous

    def remove(self, zone_id: str) -> tuple[int, Zone] | None:
        """Remove the zone ``zone_id``; returns its former slot and the zone, or None."""
        slot = self._by_id.pop(zone_id, None)
        if slot is None:
            return None
        s = self._slots[slot]
        assert s is not None
        self._slots[slot] = None
        self.zone_by_slot[slot] = None
        self._outer[slot] = self._inner[slot] = self._zone_geom[slot] = None
        self._gen[slot] += 1
        self._changed.discard(slot)
        self._free.append(slot)
        self._stale = True
        return slot, s.zone

    def _grow(self, need: int) -> None:
        cap = len(self._gen)
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name in (
            "_gen",
            "_circle",
            "_inner_same",
            "_inner_first",
            "_cx",
            "_cy",
            "_cz",
            "_c2_out",
            "_c2_in",
            "_c2_zone",
            "_outer",
            "_inner",
            "_zone_geom",
        ):
            arr = getattr(self, name)
            grown = np.empty(new, arr.dtype) if arr.dtype == object else np.zeros(new, arr.dtype)
            grown[:cap] = arr
            setattr(self, name, grown)

    def _fill(self, slot: int, zone: Zone) -> None:
        shape = zone.shape
        zone_geom = zone.geometry
        if isinstance(shape, Circle):
            r_out = shape.radius_m + self.exit_margin_m
            r_in = shape.radius_m - self.enter_margin_m
            if r_in < shape.radius_m / 2:
                r_in = shape.radius_m
            outer = circle_polygon(zone.frame, r_out, circumscribed=True)
            x, y, z = ecef_array(shape.lat, shape.lon)
            self._circle[slot] = True
            self._cx[slot], self._cy[slot], self._cz[slot] = float(x), float(y), float(z)
            self._c2_out[slot] = _chord(r_out, shape.lat) ** 2
            self._c2_in[slot] = _chord(r_in, shape.lat) ** 2
            self._c2_zone[slot] = _chord(shape.radius_m, shape.lat) ** 2
            inner: BaseGeometry = outer
            inner_same = r_in == r_out
        else:
            self._circle[slot] = False
            outer = zone_geom
            if self.exit_margin_m > 0:
                grown = offset_geometry(zone, self.exit_margin_m)
                outer = grown if grown is not None else zone_geom
            inner = zone_geom
            if self.enter_margin_m > 0:
                shrunk = offset_geometry(zone, -self.enter_margin_m)
                if shrunk is not None and (
                    zone.frame.project(shrunk).area
                    >= _MIN_INNER_AREA_RATIO * zone.frame.project(zone_geom).area
                ):
                    inner = shrunk
            inner_same = inner is outer
            if not inner_same:
                # A bounding-box candidate is inside a shape with probability about its share
                # of the box; when inner and outer shares add up to more than one, testing the
                # inner shape first saves tests on average.
                frame = zone.frame
                box = shapely.box(*frame.project(outer).bounds).area
                share = (frame.project(inner).area + frame.project(outer).area) / box
                self._inner_first[slot] = share > 1.0
        shapely.prepare(outer)
        shapely.prepare(inner)
        self._inner_same[slot] = inner_same
        self._outer[slot] = outer
        self._inner[slot] = inner
        self._zone_geom[slot] = zone_geom
        self._slots[slot] = _Slot(zone, outer, inner, inner_same)
        self.zone_by_slot[slot] = zone

    def _refresh(self) -> None:
        if not self._stale:
            return
        if self._main is None or len(self._changed) > self.overlay_limit:
            alive = np.fromiter(self._by_id.values(), np.int64, len(self._by_id))
            alive.sort()
            self._main = shapely.STRtree(self._outer[alive]) if len(alive) else None
            self._main_slot = alive
            self._main_gen = self._gen[alive].copy()
            self._changed.clear()
        if self._changed:
            ov = np.fromiter(self._changed, np.int64, len(self._changed))
            ov.sort()
            self._overlay = shapely.STRtree(self._outer[ov])
            self._overlay_slot = ov
        else:
            self._overlay = None
            self._overlay_slot = np.zeros(0, np.int64)
        self._stale = False

    def rebuild(self) -> None:
        """Rebuild the main tree now (otherwise done lazily by the next query)."""
        self._main = None
        self._stale = True
        self._refresh()

    def _candidates(self, geoms: NDArray[np.object_]) -> tuple[IntArray, IntArray]:
        """Bounding-box candidates ``(input index, slot)`` sorted by input index."""
        self._refresh()
        parts_i: list[IntArray] = []
        parts_s: list[IntArray] = []
        if self._main is not None:
            i, j = self._main.query(geoms)
            slot = self._main_slot[j]
            # Entries whose slot changed since the build are superseded by the overlay.
            ok = self._gen[slot] == self._main_gen[j]
            if not ok.all():
                i, slot = i[ok], slot[ok]
            parts_i.append(i)
            parts_s.append(slot)
        if self._overlay is not None:
            i, j = self._overlay.query(geoms)
            parts_i.append(i)
            parts_s.append(self._overlay_slot[j])
        if not parts_i:
            empty = np.zeros(0, np.int64)
            return empty, empty
        if len(parts_i) == 1:
            return parts_i[0].astype(np.int64, copy=False), parts_s[0]
        i = np.concatenate(parts_i)
        s = np.concatenate(parts_s)
        order = np.argsort(i, kind="stable")
        return i[order].astype(np.int64, copy=False), s[order]

    def query(
        self,
        lat: ArrayLike,
        lon: ArrayLike,
        prev_lat: ArrayLike | None = None,
        prev_lon: ArrayLike | None = None,
    ) -> Hits:
        """Observations of every position against every zone.

        ``prev_lat``/``prev_lon`` (NaN where unknown) give each position's previous fix: the
        segment between them is tested for crossings. Segments across the antimeridian are not
        (the fix is then tested as a point only).
        """
        la = np.asarray(lat, dtype=np.float64)
        if not self._by_id:  # nothing to test against: no geometry to build
            none = np.zeros(0, np.int64)
            return Hits(none, none, np.zeros(0, np.uint8))
        lo = normalize_lon_array(lon)
        n = la.size
        if prev_lat is None or prev_lon is None:
            seg = np.zeros(n, bool)
            pla = plo = np.full(n, np.nan)
        else:
            pla = np.asarray(prev_lat, dtype=np.float64)
            plo = normalize_lon_array(prev_lon)
            seg = np.isfinite(pla) & np.isfinite(plo) & (np.abs(plo - lo) <= 180.0)
            seg &= (pla != la) | (plo != lo)
        # Segments that could reach an inner shape from outside the outer one are queried as
        # segments; the others as points (see the module docstring). Equirectangular length
        # is within a few per cent here, hence the slack.
        long_ = seg.copy()
        if self.exit_margin_m > 0 and seg.any():
            dy = (la - pla) * _M_PER_DEG
            dx = (lo - plo) * (_M_PER_DEG * np.cos(np.radians(la)))
            with np.errstate(invalid="ignore"):
                long_ &= dx * dx + dy * dy >= (_CROSS_SLACK * self.exit_margin_m) ** 2
        geoms = np.empty(n, dtype=object)
        pts = ~long_
        if pts.all():
            geoms = shapely.points(lo, la)
        else:
            geoms[pts] = shapely.points(lo[pts], la[pts])
            geoms[long_] = _segments(pla[long_], plo[long_], la[long_], lo[long_])
        p, s = self._candidates(geoms)
        flags = np.zeros(p.size, np.uint8)
        if p.size == 0:
            return Hits(p, s, flags)
        x, y, z = ecef_array(la, lo)
        circ = self._circle[s]
        outer = np.zeros(p.size, bool)
        inner = np.zeros(p.size, bool)
        # Circles: exact radius through chord length, no shapely call.
        ci = np.flatnonzero(circ)
        if ci.size:
            pc, sc = p[ci], s[ci]
            d2 = (x[pc] - self._cx[sc]) ** 2 + (y[pc] - self._cy[sc]) ** 2
            d2 += (z[pc] - self._cz[sc]) ** 2
            outer[ci] = d2 <= self._c2_out[sc]
            inner[ci] = d2 <= self._c2_in[sc]
        pi = np.flatnonzero(~circ)
        if pi.size:
            outer[pi], inner[pi] = self._polygon_bits(p[pi], s[pi], la, lo)
        flags[outer] |= OUTER
        flags[inner] |= INNER
        if seg.any():
            self._crossings(p, s, outer, inner, seg, long_, la, lo, pla, plo, x, y, z, geoms, flags)
        keep = flags != 0
        return Hits(p[keep], s[keep], flags[keep])

    def _polygon_bits(
        self, pp: IntArray, sp: IntArray, la: FloatArray, lo: FloatArray
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Outer and inner containment for polygon pairs, with as few tests as possible: one
        test where both shapes are the same; otherwise the inner shape first for zones whose
        candidates are mostly inside (``inner_first``), the outer one first for the others."""
        outer = np.zeros(pp.size, bool)
        inner = np.zeros(pp.size, bool)
        same = self._inner_same[sp]
        first_in = self._inner_first[sp] & ~same
        a = np.flatnonzero(~first_in)
        if a.size:
            o = shapely.contains_xy(self._outer[sp[a]], lo[pp[a]], la[pp[a]])
            outer[a] = o
            inn = o & same[a]
            need = np.flatnonzero(o & ~same[a])
            if need.size:
                k = a[need]
                inn[need] = shapely.contains_xy(self._inner[sp[k]], lo[pp[k]], la[pp[k]])
            inner[a] = inn
        b = np.flatnonzero(first_in)
        if b.size:
            i = shapely.contains_xy(self._inner[sp[b]], lo[pp[b]], la[pp[b]])
            inner[b] = i
            o = i.copy()
            need = np.flatnonzero(~i)
            if need.size:
                k = b[need]
                o[need] = shapely.contains_xy(self._outer[sp[k]], lo[pp[k]], la[pp[k]])
            outer[b] = o
        return outer, inner

    def _crossings(
        self,
        p: IntArray,
        s: IntArray,
        outer: NDArray[np.bool_],
        inner: NDArray[np.bool_],
        seg: NDArray[np.bool_],
        long_: NDArray[np.bool_],
        la: FloatArray,
        lo: FloatArray,
        pla: FloatArray,
        plo: FloatArray,
        x: FloatArray,
        y: FloatArray,
        z: FloatArray,
        geoms: NDArray[np.object_],
        flags: NDArray[np.uint8],
    ) -> None:
        """Set CROSS where the segment to a fix not in the inner shape meets that shape."""
        cand = np.flatnonzero(seg[p] & ~inner & (outer | long_[p]))
        if cand.size == 0:
            return
        pc, sc = p[cand], s[cand]
        circ = self._circle[sc]
        crossed = np.zeros(cand.size, bool)
        ci = np.flatnonzero(circ)
        if ci.size:
            pp, ss = pc[ci], sc[ci]
            start = ecef_array(pla[pp], plo[pp])
            centre = (self._cx[ss], self._cy[ss], self._cz[ss])
            crossed[ci] = _gap2(start, (x[pp], y[pp], z[pp]), centre) <= self._c2_in[ss]
        pi = np.flatnonzero(~circ)
        if pi.size:
            pp, ss = pc[pi], sc[pi]
            lines = geoms[pp]
            short = np.flatnonzero(~long_[pp])
            if short.size:
                k = pp[short]
                lines[short] = _segments(pla[k], plo[k], la[k], lo[k])
            crossed[pi] = shapely.intersects(self._inner[ss], lines)
        flags[cand[crossed]] |= CROSS

    def reaches(
        self, slot: int, lat0: float, lon0: float, lat1: float, lon1: float, depth_m: float
    ) -> bool:
        """Whether the segment from ``(lat0, lon0)`` to ``(lat1, lon1)`` goes deeper than
        ``depth_m`` into the zone in ``slot`` (for polygons, the depth rounded up to whole
        metres)."""
        s = self._slot(slot)
        zone = s.zone
        if isinstance(zone.shape, Circle):
            r = zone.shape.radius_m - depth_m
            if r <= 0:
                return False
            one = slice(slot, slot + 1)
            centre = (self._cx[one], self._cy[one], self._cz[one])
            gap2 = _gap2(ecef_array([lat0], [lon0]), ecef_array([lat1], [lon1]), centre)
            return bool(gap2[0] <= _chord(r, zone.shape.lat) ** 2)
        metres = math.ceil(depth_m)
        if metres not in s.shrunk:
            shrunk = offset_geometry(zone, -metres) if metres > 0 else zone.geometry
            if shrunk is not None:
                shapely.prepare(shrunk)
            s.shrunk[metres] = shrunk
        target = s.shrunk[metres]
        if target is None:
            return False
        return bool(shapely.intersects(target, shapely.LineString([(lon0, lat0), (lon1, lat1)])))

    def depth_m(self, slot: int, lat: float, lon: float) -> float:
        """How far ``(lat, lon)`` is inside the zone in ``slot``, in metres (negative: how far
        outside)."""
        s = self._slot(slot)
        zone = s.zone
        if isinstance(zone.shape, Circle):
            return zone.shape.radius_m - haversine_m(zone.shape.lat, zone.shape.lon, lat, lon)
        if s.planar is None:
            s.planar = zone.frame.project(shapely.segmentize(zone.geometry, _SEGMENTIZE_DEG))
            shapely.prepare(s.planar)
        px, py = zone.frame.xy(lat, lon)
        point = shapely.Point(px, py)
        d = float(shapely.distance(s.planar.boundary, point))
        return d if s.planar.contains(point) else -d

    def observe_slot(self, slot: int, lat: ArrayLike, lon: ArrayLike) -> NDArray[np.uint8]:
        """OUTER/INNER bits of one zone for each position (used to reconcile membership when a
        zone changes)."""
        la = np.asarray(lat, dtype=np.float64)
        lo = normalize_lon_array(lon)
        flags = np.zeros(la.size, np.uint8)
        if la.size == 0:
            return flags
        if self._circle[slot]:
            x, y, z = ecef_array(la, lo)
            d2 = (x - self._cx[slot]) ** 2 + (y - self._cy[slot]) ** 2 + (z - self._cz[slot]) ** 2
            outer = d2 <= self._c2_out[slot]
            inner = d2 <= self._c2_in[slot]
        else:
            outer = shapely.contains_xy(self._outer[slot], lo, la)
            inner = (
                outer if self._inner_same[slot] else shapely.contains_xy(self._inner[slot], lo, la)
            )
        flags[outer] |= OUTER
        flags[inner & outer] |= INNER
        return flags

    def contains(self, lat: ArrayLike, lon: ArrayLike) -> tuple[IntArray, IntArray]:
        """``(point index, slot)`` pairs for positions inside zones proper (no margins), sorted
        by point index."""
        la = np.asarray(lat, dtype=np.float64)
        lo = normalize_lon_array(lon)
        p, s = self._candidates(shapely.points(lo, la))
        if p.size == 0:
            return p, s
        inside = np.zeros(p.size, bool)
        circ = self._circle[s]
        ci = np.flatnonzero(circ)
        if ci.size:
            x, y, z = ecef_array(la[p[ci]], lo[p[ci]])
            sc = s[ci]
            d2 = (x - self._cx[sc]) ** 2 + (y - self._cy[sc]) ** 2 + (z - self._cz[sc]) ** 2
            inside[ci] = d2 <= self._c2_zone[sc]
        pi = np.flatnonzero(~circ)
        if pi.size:
            inside[pi] = shapely.contains_xy(self._zone_geom[s[pi]], lo[p[pi]], la[p[pi]])
        return p[inside], s[inside]
